"""``dgsim check``: latency budgets as a CI gate.

A scenario's ``slo`` section becomes a list of budgets (``budgets``); each
is judged on the replications' confidence interval, adding replications
while noise leaves it undecided (``verdict``); an optional baseline turns
"worse than last time" into more budgets (``baseline``); failing variants
get plain-language explanations (``diagnose``); ``gate`` ties these
together per variant, and ``junit`` and ``report`` write what CI shows.
``command`` is the command-line entry point.
"""
