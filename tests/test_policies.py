"""The policy objects on their own, driven by small hand-made views.

Every policy is plain Python: the tests below build jobs, queues and
instances as tiny dataclasses (satisfying ``JobView`` / ``InstanceView``)
and check each decision against what the policy promises.
"""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from sim.policies.admission import AdmitAll, DeadlineFeasible, QueueCap
from sim.policies.batching import DeadlineAwareBatch, Dispatch, DynamicBatch, FixedBatch, NoBatching, WaitUntil
from sim.policies.channel import SEED_BANDS, BySize, FixedChannel, SizeBand
from sim.policies.placement import SKIP, Placement, PlacementError
from sim.policies.queueing import EarliestDeadlineFirst, Fifo, PolicyQueue, Priority
from sim.policies.routing import (
    JoinShortestQueue,
    LocalFirst,
    PowerOfTwoChoices,
    RandomRouting,
    RoundRobin,
)

POLICIES = Path(__file__).resolve().parents[1] / "sim" / "policies"


@dataclass
class J:
    """A job as a policy sees it."""

    seq: int
    enqueued: float = 0.0
    deadline: float = math.inf
    priority: int = 0
    name: str = ""
    stage: int = 0


@dataclass
class S:
    """A device's queue state as admission sees it (``QueueStateView``), the same for every stage."""

    length: int = 0
    wait: float = 0.0
    remaining: float = 0.0

    def queue_length(self, stage: int) -> int:
        return self.length

    def expected_wait(self, stage: int) -> float:
        return self.wait

    def remaining_service(self, stage: int) -> float:
        return self.remaining


@dataclass
class Q:
    """A batch queue view with fixed contents."""

    length: int
    oldest_enqueued: float = 0.0
    earliest_deadline: float = math.inf

    def __len__(self) -> int:
        return self.length


@dataclass
class I:
    """A device instance as a router sees it."""

    queue_length: int = 0
    busy: int = 0
    servers: int = 1
    tier: int = 0


JOB = J(seq=0)


# --- batching ---------------------------------------------------------------


def test_no_batching_dispatches_one_at_once():
    policy = NoBatching()
    assert policy.max_batch == 1
    for waiting in (1, 5, 100):
        assert policy.decide(now=3.0, queue=Q(waiting, oldest_enqueued=0.0)) == Dispatch(1)


def test_fixed_batch_waits_for_its_size_without_timeout():
    policy = FixedBatch(size=4)
    assert policy.max_batch == 4
    for waiting in (1, 2, 3):
        decision = policy.decide(now=1e6, queue=Q(waiting, oldest_enqueued=0.0))
        # with no timeout it never flushes: the next look is at infinity
        assert decision == WaitUntil(math.inf)
    assert policy.decide(now=0.0, queue=Q(4)) == Dispatch(4)
    assert policy.decide(now=0.0, queue=Q(9)) == Dispatch(4)  # never more than size


def test_fixed_batch_flushes_a_partial_batch_after_timeout():
    policy = FixedBatch(size=8, timeout=2**-6)
    queue = Q(3, oldest_enqueued=1.0)
    assert policy.decide(now=1.0 + 2**-8, queue=queue) == WaitUntil(1.0 + 2**-6)
    assert policy.decide(now=1.0 + 2**-6, queue=queue) == Dispatch(3)  # exactly at the timeout
    assert policy.decide(now=1.500, queue=queue) == Dispatch(3)


def test_dynamic_batch_dispatches_at_max_batch():
    policy = DynamicBatch(max_batch=16, max_delay=0.002)
    assert policy.decide(now=0.0, queue=Q(16, oldest_enqueued=0.0)) == Dispatch(16)
    assert policy.decide(now=0.0, queue=Q(40, oldest_enqueued=0.0)) == Dispatch(16)


def test_dynamic_batch_waits_until_oldest_plus_max_delay_then_takes_all():
    # binary fractions, so that oldest + max_delay is exact
    policy = DynamicBatch(max_batch=16, max_delay=2**-9)
    queue = Q(5, oldest_enqueued=0.125)
    decision = policy.decide(now=0.125 + 2**-10, queue=queue)
    assert decision == WaitUntil(0.125 + 2**-9)
    assert policy.decide(now=0.125 + 2**-9, queue=queue) == Dispatch(5)
    assert policy.decide(now=0.250, queue=queue) == Dispatch(5)


def test_dynamic_batch_with_zero_delay_never_waits():
    policy = DynamicBatch(max_batch=8, max_delay=0.0)
    assert policy.decide(now=1.0, queue=Q(1, oldest_enqueued=1.0)) == Dispatch(1)


def test_deadline_aware_batch_behaves_like_dynamic_when_deadlines_are_far():
    service = lambda n: 0.001 + 0.0002 * n  # noqa: E731
    policy = DeadlineAwareBatch(max_batch=8, max_delay=0.002, service_time=service)
    queue = Q(3, oldest_enqueued=0.0, earliest_deadline=10.0)
    assert policy.decide(now=0.0005, queue=queue) == WaitUntil(pytest.approx(0.002))
    assert policy.decide(now=0.0020, queue=queue) == Dispatch(3)
    assert policy.decide(now=0.0, queue=Q(8, earliest_deadline=10.0)) == Dispatch(8)
    # no deadline at all (inf): the delay rule alone
    assert policy.decide(now=0.0005, queue=Q(3)) == WaitUntil(pytest.approx(0.002))


def test_deadline_aware_batch_launches_early_to_keep_the_earliest_deadline():
    # A batch of n takes 1 + n/2 time units (binary fractions, so sums are
    # exact). Three wait; one more would make 4 -> 3 units of service. The
    # earliest deadline is at 10, so the latest start that keeps it with one
    # more job is 7, earlier than oldest + max_delay = 50.
    service = lambda n: 1.0 + 0.5 * n  # noqa: E731
    policy = DeadlineAwareBatch(max_batch=16, max_delay=50.0, service_time=service)
    queue = Q(3, oldest_enqueued=0.0, earliest_deadline=10.0)
    assert policy.decide(now=5.0, queue=queue) == WaitUntil(7.0)
    assert policy.decide(now=6.999, queue=queue) == WaitUntil(7.0)
    assert policy.decide(now=7.0, queue=queue) == Dispatch(3)
    # a deadline already out of reach: launch at once
    late = Q(2, oldest_enqueued=0.0, earliest_deadline=1.0)
    assert policy.decide(now=0.0, queue=late) == Dispatch(2)


def test_deadline_aware_batch_never_waits_past_max_delay_either():
    service = lambda n: 0.0001 * n  # noqa: E731
    policy = DeadlineAwareBatch(max_batch=16, max_delay=0.002, service_time=service)
    queue = Q(2, oldest_enqueued=0.0, earliest_deadline=1.0)
    assert policy.decide(now=0.0, queue=queue) == WaitUntil(pytest.approx(0.002))


# --- queue disciplines ------------------------------------------------------


def _drain(queue: PolicyQueue) -> list[str]:
    out = []
    while len(queue):
        out.append(queue.pop().name)
    return out


def test_fifo_serves_in_order_of_arrival_whatever_else_differs():
    queue = PolicyQueue(Fifo())
    jobs = [J(seq=s, enqueued=s * 0.1, deadline=10 - s, priority=s, name=f"j{s}") for s in (3, 1, 4, 0, 2)]
    for job in jobs:
        queue.push(job)
    assert _drain(queue) == ["j0", "j1", "j2", "j3", "j4"]


def test_priority_serves_highest_first_with_fifo_ties():
    queue = PolicyQueue(Priority())
    for seq, prio in [(0, 0), (1, 2), (2, 1), (3, 2), (4, 0), (5, 1)]:
        queue.push(J(seq=seq, priority=prio, name=f"p{prio}s{seq}"))
    assert _drain(queue) == ["p2s1", "p2s3", "p1s2", "p1s5", "p0s0", "p0s4"]


def test_edf_serves_earliest_deadline_first_and_no_deadline_last_in_order():
    queue = PolicyQueue(EarliestDeadlineFirst())
    queue.push(J(seq=0, deadline=math.inf, name="none0"))
    queue.push(J(seq=1, deadline=0.5, name="d0.5"))
    queue.push(J(seq=2, deadline=0.2, name="d0.2a"))
    queue.push(J(seq=3, deadline=math.inf, name="none3"))
    queue.push(J(seq=4, deadline=0.2, name="d0.2b"))
    assert queue.peek().name == "d0.2a"
    assert _drain(queue) == ["d0.2a", "d0.2b", "d0.5", "none0", "none3"]


def test_pop_many_takes_the_first_n_in_discipline_order_and_no_more_than_there_are():
    queue = PolicyQueue(EarliestDeadlineFirst())
    for seq, deadline in enumerate([5.0, 1.0, 3.0, 2.0]):
        queue.push(J(seq=seq, deadline=deadline, name=str(deadline)))
    assert [j.name for j in queue.pop_many(2)] == ["1.0", "2.0"]
    assert [j.name for j in queue.pop_many(10)] == ["3.0", "5.0"]
    assert len(queue) == 0


@pytest.mark.parametrize("discipline", [Fifo(), Priority(), EarliestDeadlineFirst()])
def test_oldest_enqueued_and_earliest_deadline_are_exact_under_every_discipline(discipline):
    queue = PolicyQueue(discipline)
    assert queue.oldest_enqueued == math.inf and queue.earliest_deadline == math.inf
    # seq follows enqueue time, as a device assigns it; the oldest job is
    # neither first by priority nor by deadline, the earliest deadline is not
    # the highest priority
    rows = [(0, 0.10, 9.0, 0), (1, 0.20, 4.0, 1), (2, 0.30, 1.0, 5), (3, 0.40, 2.0, 9)]
    for seq, enqueued, deadline, prio in rows:
        queue.push(J(seq=seq, enqueued=enqueued, deadline=deadline, priority=prio))
    assert queue.oldest_enqueued == 0.10
    assert queue.earliest_deadline == 1.0
    queue.pop()  # whichever the discipline serves first
    remaining = [r for r in rows if r[0] != {"Fifo": 0, "Priority": 3, "EarliestDeadlineFirst": 2}[type(discipline).__name__]]
    assert queue.oldest_enqueued == min(r[1] for r in remaining)
    assert queue.earliest_deadline == min(r[2] for r in remaining)


def test_fifo_head_is_oldest_when_seq_follows_enqueue_time():
    queue = PolicyQueue(Fifo())
    for seq in range(5):
        queue.push(J(seq=seq, enqueued=1.0 + seq))
    queue.pop()
    assert queue.oldest_enqueued == 2.0
    assert queue.head_key() == (1,)


# --- routing ----------------------------------------------------------------


def test_round_robin_cycles_through_candidates():
    router = RoundRobin()
    candidates = [I(), I(queue_length=50), I()]
    picks = [router.choose(candidates, JOB) for _ in range(7)]
    assert picks == [0, 1, 2, 0, 1, 2, 0]  # load is ignored


def test_round_robin_survives_a_shrinking_candidate_list():
    router = RoundRobin()
    for _ in range(3):
        router.choose([I(), I(), I()], JOB)
    assert router.choose([I(), I()], JOB) in (0, 1)


def test_shortest_queue_picks_least_loaded_with_ties_to_first():
    router = JoinShortestQueue()
    assert router.choose([I(3, 1), I(1, 1), I(0, 1), I(2, 0)], JOB) == 2  # loads 4, 2, 1, 2
    assert router.choose([I(2, 1), I(1, 1), I(1, 1)], JOB) == 1  # tie between 1 and 2
    assert router.choose([I(0, 0), I(0, 0)], JOB) == 0


def test_shortest_queue_counts_load_per_server():
    router = JoinShortestQueue()
    # 6 jobs on 8 servers (0.75 each) beats 1 job on 1 server
    assert router.choose([I(queue_length=1, busy=0, servers=1), I(queue_length=0, busy=6, servers=8)], JOB) == 1


def test_power_of_two_never_picks_the_worse_of_two():
    # With two candidates it always samples both, so it must always pick the better.
    router = PowerOfTwoChoices(np.random.default_rng(7))
    for loads in [(5, 1), (1, 5), (0, 3), (3, 0)]:
        candidates = [I(queue_length=q) for q in loads]
        best = int(np.argmin(loads))
        assert all(router.choose(candidates, JOB) == best for _ in range(50))


def test_power_of_two_choice_frequencies_match_the_minimum_of_a_random_pair():
    # Four instances with distinct loads. The pick is the less loaded of a
    # uniformly random pair: the k-th best (k = 0..3) is the minimum of
    # (3 - k) of the 6 pairs, so it is chosen with probability (3 - k) / 6;
    # the worst is never chosen.
    router = PowerOfTwoChoices(np.random.default_rng(2024))
    loads = [4, 0, 9, 2]  # ranks: index 1 best, 3, 0, 2 worst
    candidates = [I(queue_length=q) for q in loads]
    draws = 6000
    counts = np.bincount([router.choose(candidates, JOB) for _ in range(draws)], minlength=4)
    assert counts[2] == 0
    expected = np.array([1, 3, 0, 2]) / 6 * draws  # by index: ranks 2, 0, 3, 1
    observed, wanted = counts[[0, 1, 3]], expected[[0, 1, 3]]
    assert stats.chisquare(observed, wanted).pvalue > 1e-4


def test_power_of_two_with_one_candidate_picks_it():
    assert PowerOfTwoChoices(np.random.default_rng(0)).choose([I(queue_length=99)], JOB) == 0


def test_power_of_two_is_reproducible_for_a_seed():
    candidates = [I(queue_length=q) for q in (3, 1, 4, 1, 5, 9, 2, 6)]
    a = PowerOfTwoChoices(np.random.default_rng(11))
    b = PowerOfTwoChoices(np.random.default_rng(11))
    assert [a.choose(candidates, JOB) for _ in range(100)] == [b.choose(candidates, JOB) for _ in range(100)]


def test_random_routing_is_uniform_over_many_draws():
    router = RandomRouting(np.random.default_rng(5))
    candidates = [I(queue_length=q) for q in (0, 100, 0, 100, 0)]
    draws = 5000
    counts = np.bincount([router.choose(candidates, JOB) for _ in range(draws)], minlength=5)
    assert counts.sum() == draws and (counts > 0).all()
    assert stats.chisquare(counts).pvalue > 1e-4
    # each within 5 binomial sigmas of draws / 5
    sigma = math.sqrt(draws * 0.2 * 0.8)
    assert np.all(np.abs(counts - draws / 5) < 5 * sigma)


def test_local_first_stays_local_under_spill_at():
    router = LocalFirst(spill_at=4)
    # tier 0: two local devices with 2 servers each; tier 1: the cloud, idle
    candidates = [I(queue_length=5, busy=2, servers=2, tier=0),  # 7 >= 8? no -> still under
                  I(queue_length=3, busy=2, servers=2, tier=0),  # 5: least loaded local
                  I(queue_length=0, busy=0, servers=4, tier=1)]
    assert router.choose(candidates, JOB) == 1


def test_local_first_spills_to_the_next_tier_at_spill_at():
    router = LocalFirst(spill_at=2)
    candidates = [I(queue_length=1, busy=1, servers=1, tier=0),  # load 2 == spill_at * 1: full
                  I(queue_length=5, busy=1, servers=1, tier=1),  # tier 1 full too
                  I(queue_length=0, busy=1, servers=1, tier=1),  # tier 1 with room
                  I(queue_length=0, busy=0, servers=1, tier=2)]  # idle, but a later tier
    assert router.choose(candidates, JOB) == 2


def test_local_first_falls_back_to_least_loaded_of_last_tier_when_all_are_over():
    router = LocalFirst(spill_at=1)
    candidates = [I(queue_length=0, busy=1, tier=0),
                  I(queue_length=9, busy=1, tier=1),
                  I(queue_length=4, busy=1, tier=1),
                  I(queue_length=6, busy=1, tier=1)]
    assert router.choose(candidates, JOB) == 2


def test_local_first_orders_tiers_by_number_not_by_position():
    router = LocalFirst(spill_at=4)
    candidates = [I(queue_length=0, tier=1), I(queue_length=2, tier=0)]
    assert router.choose(candidates, JOB) == 1


# --- admission --------------------------------------------------------------


def test_admit_all_admits_everything():
    job = J(seq=0, deadline=0.0)
    assert AdmitAll().admit(10.0, job, S(10**6, 1e9, 1e9))


def test_queue_cap_refuses_when_cap_jobs_wait():
    policy = QueueCap(cap=3)
    assert [policy.admit(0.0, JOB, S(n)) for n in range(6)] == [True, True, True, False, False, False]


def test_queue_cap_counts_only_the_jobs_of_the_job_s_own_stage():
    class TwoStages(S):
        def queue_length(self, stage: int) -> int:
            return (0, 5)[stage]

    policy = QueueCap(cap=2)
    assert policy.admit(0.0, J(seq=0, stage=0), TwoStages())
    assert not policy.admit(0.0, J(seq=0, stage=1), TwoStages())


def test_deadline_feasible_refuses_when_wait_plus_service_passes_deadline():
    policy = DeadlineFeasible()
    job = J(seq=0, deadline=1.010)
    assert policy.admit(1.000, job, S(0, wait=0.004, remaining=0.005))  # 1.009
    assert policy.admit(1.000, job, S(0, wait=0.005, remaining=0.005))  # exactly on time
    assert not policy.admit(1.000, job, S(0, wait=0.006, remaining=0.005))  # 1.011
    assert not policy.admit(1.011, job, S(0))  # already late
    assert policy.admit(5.0, J(seq=1), S(99, 1e6, 1e6))  # no deadline: always feasible


# --- channel selection ------------------------------------------------------

KB, MB = 1e3, 1e6
ALL = ["tcp", "shm", "rdma"]


@pytest.mark.parametrize(
    "size, kind",
    [
        (0, "tcp"),
        (1 * KB, "tcp"),
        (511.999 * KB, "tcp"),
        (512 * KB, "shm"),  # bands are "below"; 512 KB itself is shared memory
        (2 * MB, "shm"),
        (3.999 * MB, "shm"),
        (4 * MB, "rdma"),
        (500 * MB, "rdma"),
    ],
)
def test_by_size_seed_bands(size, kind):
    assert BySize().choose(size, ALL) == kind
    assert BySize(SEED_BANDS).choose(size, list(reversed(ALL))) == kind  # order of available is irrelevant


@pytest.mark.parametrize(
    "size, available, kind",
    [
        (1 * KB, ["shm", "rdma"], "shm"),  # tcp missing: next larger band first
        (1 * KB, ["rdma", "pcie"], "rdma"),  # tcp and shm missing
        (1 * MB, ["tcp", "rdma"], "rdma"),  # shm missing: larger before smaller
        (10 * MB, ["tcp", "shm"], "shm"),  # rdma missing: nearest smaller band
        (10 * MB, ["tcp", "pcie"], "tcp"),
        (1 * KB, ["pcie", "nvlink"], "pcie"),  # none of the bands' kinds: first available
    ],
)
def test_by_size_fallback_order(size, available, kind):
    assert BySize().choose(size, available) == kind


def test_by_size_fallback_tries_larger_bands_in_order_then_smaller_nearest_first():
    bands = (SizeBand(1e3, "tcp"), SizeBand(1e4, "shm"), SizeBand(1e5, "rdma"), SizeBand(math.inf, "nvlink"))
    policy = BySize(bands)
    # a message in the shm band, shm missing: rdma (next larger) before nvlink and tcp
    assert policy.choose(5e3, ["tcp", "nvlink", "rdma"]) == "rdma"
    assert policy.choose(5e3, ["tcp", "nvlink"]) == "nvlink"
    # a message in the nvlink band with only smaller kinds: the nearest smaller (rdma) first
    assert policy.choose(1e6, ["tcp", "shm", "rdma"]) == "rdma"
    assert policy.choose(1e6, ["tcp", "shm"]) == "shm"


def test_fixed_channel_uses_its_kind_or_the_first_available():
    assert FixedChannel("rdma").choose(1.0, ["tcp", "rdma"]) == "rdma"
    assert FixedChannel("rdma").choose(1e9, ["tcp", "shm"]) == "tcp"


# --- placement --------------------------------------------------------------

POOLS = {"host": "cpu", "bf": "dpu", "gpu0": "gpu", "host2": "cpu", "gpu1": "gpu"}


def test_cpu_path_puts_gpu_stages_on_gpus_and_the_rest_on_cpus():
    p = Placement("cpu-path", {})
    assert p.place("infer", ["gpu", "cpu"], POOLS) == ("gpu0", "gpu1")
    assert p.place("decode", ["cpu", "dpu"], POOLS) == ("host", "host2")  # dpu cost ignored


def test_cpu_path_refuses_a_dpu_only_stage():
    with pytest.raises(PlacementError) as info:
        Placement("cpu-path", {}).place("dpu-thing", ["dpu"], POOLS)
    message = str(info.value)
    assert "'dpu-thing'" in message and "cpu-path" in message and "dpu" in message


def test_dpu_offload_prefers_gpu_then_dpu_then_cpu():
    p = Placement("dpu-offload", {})
    assert p.place("infer", ["cpu", "dpu", "gpu"], POOLS) == ("gpu0", "gpu1")
    assert p.place("decode", ["cpu", "dpu"], POOLS) == ("bf",)
    assert p.place("glue", ["cpu"], POOLS) == ("host", "host2")


def test_dpu_offload_falls_back_to_cpu_when_there_is_no_dpu_pool():
    p = Placement("dpu-offload", {})
    assert p.place("decode", ["cpu", "dpu"], {"host": "cpu", "g": "gpu"}) == ("host",)


def test_map_overrides_any_strategy_in_its_own_order():
    p = Placement("dpu-offload", {"decode": ("host2", "bf"), "infer": ("gpu1",)})
    assert p.place("decode", ["cpu", "dpu"], POOLS) == ("host2", "bf")
    assert p.place("infer", ["gpu"], POOLS) == ("gpu1",)
    assert p.place("other", ["dpu"], POOLS) == ("bf",)  # not in the map: the strategy


def test_skip_leaves_the_stage_out():
    assert Placement("cpu-path", {"prefilter": (SKIP,)}).place("prefilter", ["cpu"], POOLS) == ()


def test_explicit_places_only_what_the_map_names():
    p = Placement("explicit", {"a": ("host",)})
    assert p.place("a", ["cpu", "gpu"], POOLS) == ("host",)
    with pytest.raises(PlacementError, match="'b' is not in the explicit placement map"):
        p.place("b", ["cpu", "gpu"], POOLS)


def test_error_when_no_pool_has_any_of_the_stage_kinds():
    with pytest.raises(PlacementError) as info:
        Placement("dpu-offload", {}).place("infer", ["gpu"], {"host": "cpu", "bf": "dpu"})
    message = str(info.value)
    assert "'infer'" in message and "['gpu']" in message and "['cpu', 'dpu']" in message


# --- no SimPy in policies ---------------------------------------------------


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_policy_sources_do_not_import_simpy():
    files = sorted(POLICIES.glob("*.py"))
    assert len(files) >= 8
    offenders = {f.name: m for f in files for m in _imported_modules(f) if m.split(".")[0] == "simpy"}
    assert offenders == {}


def test_policies_import_with_simpy_blocked():
    modules = sorted(f"sim.policies.{f.stem}" for f in POLICIES.glob("*.py") if f.stem != "__init__")
    modules += ["sim.station", "sim.registry"]  # the station around the policies is shared too: no SimPy, no clock
    code = "import sys; sys.modules['simpy'] = None\n" + "".join(f"import {m}\n" for m in modules)
    code += "assert 'simpy' not in [k for k, v in sys.modules.items() if v is not None]\nprint('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
