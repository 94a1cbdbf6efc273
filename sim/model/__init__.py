"""The SimPy model: requests flow source -> stages -> devices/links -> metrics.

- ``request``: a request and the jobs it puts in device queues.
- ``device``: a device instance: servers (cores, streams) fed by per-stage
  queues and batchers.
- ``link``: one direction of a link: FIFO serialisation or a fair share of
  bandwidth, plus per-message latency.
- ``system``: builds devices and links from a plan and moves each request
  through the stage DAG.
"""
