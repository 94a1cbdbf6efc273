"""The simulator against queueing theory, through scenario files.

Each scenario in tests/scenarios/ is a textbook queue. Its simulated mean
sojourn time (eight independent replications, 95% Student-t interval) is
compared with the closed form under three seeds. A correct simulator's 95%
interval misses the truth for about one seed in twenty (it did for one of
seven seeds tried on M/M/3), so the test asks that at least two of the three
intervals contain the closed form (a correct model fails this about 0.7% of
the time, and the seeds are fixed, so the verdict is reproducible), that the
pooled mean is within 2.5% of it, and that the intervals are tight enough
(half-width under 8% of the mean) for the comparison to mean something.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sim.experiment import run_variant
from sim.scenario.load import load_scenario_file

SCENARIOS = Path(__file__).parent / "scenarios"


def erlang_c_sojourn(arrival_rate: float, service_rate: float, servers: int) -> float:
    """Mean time in an M/M/c system (Erlang C)."""
    a = arrival_rate / service_rate
    rho = a / servers
    head = sum(a**k / math.factorial(k) for k in range(servers))
    tail = a**servers / math.factorial(servers) / (1 - rho)
    wait_probability = tail / (head + tail)
    return wait_probability / (servers * service_rate - arrival_rate) + 1 / service_rate


def pollaczek_khinchine_md1(arrival_rate: float, service_time: float) -> float:
    rho = arrival_rate * service_time
    return service_time + rho * service_time / (2 * (1 - rho))


CASES = {
    "mm1": 1 / (1000 - 500),
    "mmc": erlang_c_sojourn(2400, 1000, 3),
    "md1": pollaczek_khinchine_md1(600, 1e-3),
    "tandem": 1 / (1000 - 400) + 1 / (800 - 400),
}


SEEDS = (1, 2, 3)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.slow
def test_mean_sojourn_matches_theory(name):
    theory = CASES[name]
    estimates = [
        run_variant(load_scenario_file(SCENARIOS / f"{name}.yaml", [f"run.seed={seed}"]), "base").estimates[
            "latency.mean"
        ]
        for seed in SEEDS
    ]
    described = ", ".join(f"[{e.low * 1e3:.4f}, {e.high * 1e3:.4f}]" for e in estimates)
    assert all(e.half_width < 0.08 * e.mean for e in estimates), f"intervals too wide: {described}"
    covering = sum(e.low <= theory <= e.high for e in estimates)
    assert covering >= 2, f"{name}: theory {theory * 1e3:.4f} ms outside the 95% CIs {described} ms"
    pooled = sum(e.mean for e in estimates) / len(estimates)
    assert pooled == pytest.approx(theory, rel=0.025)


@pytest.mark.slow
def test_utilisation_matches_offered_load():
    result = run_variant(load_scenario_file(SCENARIOS / "mmc.yaml"), "base")
    utilisation = result.estimates["utilisation.pool.server"]
    assert utilisation.low - 0.01 <= 0.8 <= utilisation.high + 0.01


def test_erlang_c_reduces_to_mm1():
    assert erlang_c_sojourn(500, 1000, 1) == pytest.approx(1 / 500)
