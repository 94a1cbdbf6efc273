"""Decisions shared by the simulator and the hardware harness.

Every policy here is plain Python: no SimPy, no clock of its own, no I/O.
A policy receives a read-only view of the system (the time now, queue
contents, device or link state) and returns a decision. The simulator calls
these objects from its event loop and the harness calls the very same
objects from its real processes, so a design choice means the same thing in
both worlds.

- ``batching``: when to launch a batch and how big (none, fixed, dynamic,
  deadline-aware).
- ``queueing``: the order in which waiting jobs are served (FIFO, priority,
  EDF), and the queue that keeps that order.
- ``routing``: which device instance serves a job (round robin, shortest
  queue, power of two choices, random, local-first with fallback).
- ``admission``: whether a job may join a queue at all.
- ``channel``: which link kind carries a message of a given size.
- ``placement``: which device pools run each pipeline stage.
- ``build``: turns a scenario's policy section into these objects.
"""
