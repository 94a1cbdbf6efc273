"""The harness's runner: a scenario's pipeline executed for real, measured like a simulation.

``dgsim hil run`` lays a scenario variant out on two worker processes, the
front (the DPU's side: parse, preprocess, prefilter, postprocess) and the
GPU side (the detector), pinned to disjoint cores and joined by the
transports of ``hil.transports``. Load comes in as MLPerf LoadGen issues
it; queues, batching, admission and transport choice are decided by the
scenario's ``sim.policies`` objects; every request's per-stage timestamps
come from the one monotonic clock both processes read. The results folder
has the simulator's format, so tables, reports and ``dgsim check`` work on
measured data as on simulated data.

- ``layout``: which process runs which stage, with which op, model and cores.
- ``load``: the LoadGen modes, and the scenario as it will be measured.
- ``ops``: the real work of each stage (and the one emulated op).
- ``station``: queues, batchers and admission of one process.
- ``worker``: the two processes' loop.
- ``stream``: events written as the run goes; the results built from them.
- ``live``: the Prometheus endpoint.
- ``run``: channels, processes, supervision, shutdown, results.
"""
