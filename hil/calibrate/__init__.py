"""``dgsim hil calibrate``: measure this host, so the simulator can sample from it.

The simulator's costs are guesses until someone measures them. This
package times the pipeline's real stages and transports on this machine
and writes a calibration file (``sim.calibration`` defines the format;
docs/calibration.md documents it), which scenarios then reference:

- ``measure``: warm-up, then windows until 3 consecutive window means agree
  within 10% (perf_analyzer's rule), or an honest "never stabilised";
  pinning to cores;
- ``fit``: affine fits in batch size or bytes (relative least squares),
  R^2, MAPE, residual-ratio quantiles; latency distributions;
- ``stages``: every real stage of the pipeline, timed with the runner's own
  ops (``hil.runner.ops``) on their side's cores;
- ``transport``: ping-pong latency against message size over the harness's
  transports;
- ``host_cost``: the CPU time (not wall time) each end of a transport
  spends per message and per byte, for a link's ``send_cost`` and
  ``receive_cost``;
- ``harness``: the runner's own per-request overhead (a zero-cost pipeline
  through ``dgsim hil run``);
- ``scenario``: ``calibrate_scenario``, which runs all of it for one scenario;
- ``command``: the ``dgsim hil calibrate`` command.

Import from the submodules: this package imports nothing when loaded, so
the ``dgsim`` command stays quick to start.
"""
