"""Exploring the design space: capacity at the SLO, sweeps, cost and Pareto fronts.

- ``load``: what "more load" means for a workload, in its own units;
- ``bound``: the analytic bottleneck bound that brackets a capacity search;
- ``capacity``: the largest load meeting every budget, bisected on verdicts;
- ``grid`` and ``sweep``: every variant at every point of a parameter grid;
- ``executors``: where the simulations run (this process, local processes, Dask);
- ``cost`` and ``pareto``: what a design costs per hour, and the front of best trade-offs;
- ``pages``: plots and one self-contained HTML page per run;
- ``commands``: the ``dgsim capacity`` and ``dgsim sweep`` command functions.
"""
