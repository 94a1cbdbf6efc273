"""dgsim's simulator: a SimPy model of DPU/GPU/CPU inference pipelines.

A request flows source -> stages -> devices/links -> metrics:

- ``scenario``: the scenario file (schema, loading, variants, errors);
- ``plan``: a scenario resolved into pools, links and a placed stage DAG;
- ``workload``: the arrivals, drawn up front from seeded streams;
- ``model``: the SimPy model (devices, links, the request's path);
- ``policies``: batching, routing, queueing, admission, channel and
  placement decisions, plain Python shared with the hardware harness;
- ``metrics``: per-request records, usage and summaries with CIs;
- ``experiment`` and ``results``: variants x replications, and the results folder;
- ``profiles``: cited hardware defaults; ``costs``: service-time models.
"""

__version__ = "0.1.0"
