"""``dgsim validate``: does the simulator predict the harness on this host?

For each load, the hardware harness (``dgsim hil run``, server mode) and
the simulator run the identical arrival sequence; the simulator runs the
scenario's *harness twin*, the scenario rewritten to describe what the
harness really is here (two single-threaded processes, this host's
calibrated costs and transports), plus the run conditions a calibration
cannot see. Predicted and measured metrics are compared, with errors,
a report and plots.

- ``twin``: the twin scenario, from the scenario, the layout and a calibration file;
- ``conditions``: in-run service, the loop's turn between batches, polling: measured in probe runs;
- ``sweep``: the probes, then each load: measure, simulate, check the arrivals are the same;
- ``compare``: metrics, errors, the goal, where the latency goes;
- ``report``: the markdown report, the plots, the table as JSON;
- ``command``: ``dgsim validate``.

Import from the submodules: this package imports nothing when loaded.
"""
