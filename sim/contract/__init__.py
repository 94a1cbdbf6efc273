"""The contract between the simulator and the hardware harness.

Everything both sides must agree on lives here, once, as code: how a
request can end (``outcomes``), how a metric is named (``metric_keys``),
and which random stream pairs a simulated decision with a measured one
(``streams``). ``sim`` and ``hil`` import these modules; neither spells a
name of its own.
"""
