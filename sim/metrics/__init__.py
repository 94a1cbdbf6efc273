"""What a run measured: per-request records and their summary.

- ``records``: the per-request table (one row per request, per-stage
  columns), the common format of simulated and measured runs.
- ``usage``: device, link and batcher usage over the measurement window.
- ``summary``: one run's metrics, and estimates with 95% confidence
  intervals across replications.
"""
