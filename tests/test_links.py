"""Link channels driven directly in a bare SimPy environment.

A message of n bytes holds a FIFO channel for overhead + n / bandwidth and
arrives latency later; on a shared channel every message in flight moves at
bandwidth / (messages in flight). Expected times below are worked out by
hand from those two rules.
"""

from __future__ import annotations

import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import simpy

from sim.costs import Deterministic, make_sampler
from sim.model.device import Window
from sim.model.engine import Engine
from sim.model.link import CONTENTION, FifoChannel, SharedChannel, make_channel

BW = 1e6  # bytes per second: 1000 bytes take 1 ms
EVERYTHING = Window(0.0, math.inf)


def latency(text: str):
    return make_sampler(Deterministic(value=text), np.random.default_rng(0))


def setup(cls, overhead=0.0, lat="0 s", window=EVERYTHING, bandwidth=BW):
    env = Engine()
    channel = cls(env, "link", bandwidth, latency(lat), overhead, window)
    return env, channel


def send_at(env, channel, when: float, size: float, arrived: dict, key: str) -> None:
    """Send ``size`` bytes at time ``when``; record the delivery time under ``key``."""

    def go(_event=None):
        channel.send(size, lambda: arrived.__setitem__(key, env.now))

    if when == 0:
        go()
    else:
        env.timeout(when).callbacks.append(go)


# --- FIFO -------------------------------------------------------------------


def test_fifo_serialises_messages_and_adds_latency_after():
    overhead, lat = 0.0005, 0.002
    size = 3000.0  # 3 ms on the wire
    env, channel = setup(FifoChannel, overhead=overhead, lat="2 ms")
    arrived = {}
    send_at(env, channel, 0, size, arrived, "a")
    send_at(env, channel, 0, size, arrived, "b")
    env.run()
    hold = overhead + size / BW  # 3.5 ms
    assert arrived["a"] == pytest.approx(hold + lat)  # 5.5 ms
    assert arrived["b"] == pytest.approx(2 * hold + lat)  # 9.0 ms: latency does not hold the wire
    assert channel.busy_time == pytest.approx(2 * hold)
    assert channel.bytes_moved == 2 * size


def test_fifo_keeps_order_of_sending_even_for_smaller_later_messages():
    env, channel = setup(FifoChannel)
    arrived = {}
    send_at(env, channel, 0, 5000.0, arrived, "big")  # 0 -> 5 ms
    send_at(env, channel, 0.001, 100.0, arrived, "small")  # waits until 5 ms, then 0.1 ms
    env.run()
    assert arrived["big"] == pytest.approx(0.005)
    assert arrived["small"] == pytest.approx(0.0051)


def test_fifo_idle_gap_is_not_busy():
    env, channel = setup(FifoChannel)
    arrived = {}
    send_at(env, channel, 0, 1000.0, arrived, "a")  # 0 - 1 ms
    send_at(env, channel, 0.010, 2000.0, arrived, "b")  # 10 - 12 ms
    env.run()
    assert arrived == {"a": pytest.approx(0.001), "b": pytest.approx(0.012)}
    assert channel.busy_time == pytest.approx(0.003)


# --- shared (processor sharing) ---------------------------------------------


def test_shared_two_equal_messages_finish_together_at_twice_the_time():
    size = 4000.0
    env, channel = setup(SharedChannel, lat="1 ms")
    arrived = {}
    send_at(env, channel, 0, size, arrived, "a")
    send_at(env, channel, 0, size, arrived, "b")
    env.run()
    assert arrived["a"] == pytest.approx(2 * size / BW + 0.001)  # 9 ms
    assert arrived["b"] == pytest.approx(2 * size / BW + 0.001)
    assert channel.busy_time == pytest.approx(2 * size / BW)
    assert channel.bytes_moved == 2 * size


def test_shared_overhead_is_paid_before_joining():
    size, overhead = 4000.0, 0.0005
    env, channel = setup(SharedChannel, overhead=overhead)
    arrived = {}
    send_at(env, channel, 0, size, arrived, "a")
    send_at(env, channel, 0, size, arrived, "b")
    env.run()
    assert arrived["a"] == pytest.approx(overhead + 2 * size / BW)
    assert arrived["b"] == pytest.approx(overhead + 2 * size / BW)


def test_shared_small_message_joining_a_big_transfer_mid_way():
    # Big: 10,000 B at t=0. Small: 1,000 B at t=2 ms, when big has 8,000 B left.
    # Both then move at BW/2: small needs 1,000 B -> 2 ms -> done at 4 ms; big
    # has moved 1,000 B more (7,000 B left) and finishes alone at 4 + 7 = 11 ms,
    # i.e. (10,000 + 1,000) / BW: the channel never idles.
    env, channel = setup(SharedChannel, lat="0.5 ms")
    arrived = {}
    send_at(env, channel, 0, 10_000.0, arrived, "big")
    send_at(env, channel, 0.002, 1000.0, arrived, "small")
    env.run()
    assert arrived["small"] == pytest.approx(0.004 + 0.0005)
    assert arrived["big"] == pytest.approx(0.011 + 0.0005)
    assert channel.busy_time == pytest.approx(0.011)


def test_shared_three_way_split_with_staggered_joins():
    # A: 6,000 B at 0; B: 6,000 B at 2 ms; C: 1,000 B at 4 ms.
    # 0-2 ms: A alone, 2,000 B moved (A 4,000 left).
    # 2-4 ms: A, B at 500 B/ms each: A 3,000 left, B 5,000 left.
    # from 4 ms three share: C's 1,000 B at 333.3 B/ms -> C done at 7 ms;
    #   A 2,000 left, B 4,000 left.
    # 7 ms on: A, B at 500 B/ms: A done at 11 ms, B 2,000 left -> alone: 13 ms.
    env, channel = setup(SharedChannel)
    arrived = {}
    send_at(env, channel, 0, 6000.0, arrived, "A")
    send_at(env, channel, 0.002, 6000.0, arrived, "B")
    send_at(env, channel, 0.004, 1000.0, arrived, "C")
    env.run()
    assert arrived["C"] == pytest.approx(0.007)
    assert arrived["A"] == pytest.approx(0.011)
    assert arrived["B"] == pytest.approx(0.013)
    assert channel.busy_time == pytest.approx(0.013)  # 13,000 B at 1,000 B/ms, no idle time


def test_shared_zero_size_message_arrives_after_latency_only():
    env, channel = setup(SharedChannel, lat="3 us")
    arrived = {}
    send_at(env, channel, 0, 0.0, arrived, "empty")
    env.run()
    assert arrived["empty"] == pytest.approx(3e-6)


# --- the measurement window -------------------------------------------------


def test_fifo_accounts_busy_time_and_bytes_only_inside_the_window():
    window = Window(0.002, 0.010)
    env, channel = setup(FifoChannel, window=window)
    arrived = {}
    send_at(env, channel, 0, 1000.0, arrived, "before")  # 0-1 ms: outside
    send_at(env, channel, 0.0015, 1000.0, arrived, "straddles_start")  # 1.5-2.5 ms: 0.5 ms inside, ends inside
    send_at(env, channel, 0.005, 2000.0, arrived, "inside")  # 5-7 ms: all inside
    send_at(env, channel, 0.009, 3000.0, arrived, "straddles_end")  # 9-12 ms: 1 ms inside, ends after
    send_at(env, channel, 0.020, 1000.0, arrived, "after")  # outside
    env.run()
    assert channel.busy_time == pytest.approx(0.0005 + 0.002 + 0.001)
    # bytes count when they arrive, if that is inside the window
    assert channel.bytes_moved == 1000.0 + 2000.0


def test_shared_accounts_busy_time_and_bytes_only_inside_the_window():
    window = Window(0.002, 0.010)
    env, channel = setup(SharedChannel, window=window)
    arrived = {}
    send_at(env, channel, 0, 3000.0, arrived, "early")  # alone 0-3 ms: 1 ms inside, arrives inside
    send_at(env, channel, 0.008, 4000.0, arrived, "late")  # alone 8-12 ms: 2 ms inside, arrives after
    env.run()
    assert arrived == {"early": pytest.approx(0.003), "late": pytest.approx(0.012)}
    assert channel.busy_time == pytest.approx(0.001 + 0.002)
    assert channel.bytes_moved == 3000.0


def test_make_channel_picks_the_contention_model():
    env = Engine()
    assert isinstance(make_channel("fifo", env, "x", BW, latency("0 s"), 0.0, EVERYTHING), FifoChannel)
    assert isinstance(make_channel("shared", env, "x", BW, latency("0 s"), 0.0, EVERYTHING), SharedChannel)


def test_make_channel_refuses_an_unknown_contention_kind_and_names_the_known_ones():
    env = Engine()
    with pytest.raises(ValueError, match=r"'rr'.*fifo, shared"):
        make_channel("rr", env, "x", BW, latency("0 s"), 0.0, EVERYTHING)


def test_known_contention_kinds_are_the_registry_and_the_schema_uses_it():
    from sim.scenario.schema import LinkSpec

    assert CONTENTION.kinds == ("fifo", "shared")
    with pytest.raises(ValueError, match="unknown link contention 'rr'; expected one of: fifo, shared"):
        LinkSpec.model_validate({"name": "l", "between": ["a", "b"], "kind": "tcp", "bandwidth": "1 Gbit/s",
                                 "contention": "rr"})


@pytest.mark.parametrize("cls", [FifoChannel, SharedChannel])
def test_a_lone_message_takes_size_over_bandwidth_plus_overhead_plus_latency(cls):
    env, channel = setup(cls, overhead=6.5e-6, lat="0.83 us", bandwidth=25e9)
    arrived = {}
    send_at(env, channel, 0, 2.46e6, arrived, "frame")
    env.run()
    assert arrived["frame"] == pytest.approx(6.5e-6 + 2.46e6 / 25e9 + 0.83e-6)


# --- processor sharing far from t = 0 ----------------------------------------


def run_bounded(env: simpy.Environment, max_events: int) -> int:
    """Run ``env`` to the end, failing (instead of hanging) past ``max_events``."""
    events = 0
    while env.peek() < math.inf:
        env.step()
        events += 1
        assert events <= max_events, f"still running after {events} events at t={env.now!r}: a stall"
    return events


def exact_processor_sharing(sends: list[tuple[Fraction, Fraction]], bandwidth: Fraction) -> list[Fraction]:
    """Finish times of (time, bytes) sends under processor sharing, in exact rational arithmetic."""
    order = sorted(range(len(sends)), key=lambda i: sends[i][0])
    remaining: dict[int, Fraction] = {}
    finish: dict[int, Fraction] = {}
    now, upcoming = Fraction(0), 0
    while upcoming < len(order) or remaining:
        next_join = sends[order[upcoming]][0] if upcoming < len(order) else None
        if remaining:
            rate = bandwidth / len(remaining)
            first = min(remaining.values())
            next_done = now + first / rate
        else:
            next_done = None
        if next_join is not None and (next_done is None or next_join < next_done):
            if remaining:
                moved = (next_join - now) * bandwidth / len(remaining)
                remaining = {i: r - moved for i, r in remaining.items()}
            now = next_join
            remaining[order[upcoming]] = sends[order[upcoming]][1]
            upcoming += 1
        else:
            moved = (next_done - now) * bandwidth / len(remaining)
            now = next_done
            remaining = {i: r - moved for i, r in remaining.items()}
            for i in [i for i, r in remaining.items() if r == 0]:
                finish[i] = now
                del remaining[i]
    return [finish[i] for i in range(len(sends))]


@pytest.mark.parametrize("start", [1e5, 1e6, 86_400.0 * 7])
def test_shared_channel_far_from_time_zero_finishes_with_the_processor_sharing_answer(start):
    # At t ~ 16 s the byte-residual version of this channel left a 33 KB
    # frame's last 1e-5 bytes in flight; their time was below the spacing of
    # floats at that t, so it rescheduled itself at the same instant forever.
    # Awkward sizes at 12.5 GB/s (100 Gbit/s), joins staggered by fractions
    # of a transfer, at t far from 0 where a float's spacing is 1e-11..1e-10 s.
    bandwidth = 12.5e9
    sizes = [2000.0, 33_000.0 / 3, 2.46e6, 7.0, 123_456.789, 2000.0, 33_001.5, 1e-3, 999_999.9, 2000.0]
    offsets = [0.0, 1.3e-7, 2.2e-7, 2.2e-7, 5.77e-6, 1.1e-5, 1.3e-5, 1.7e-5, 4e-5, 1.9e-4]
    env, channel = setup(SharedChannel, bandwidth=bandwidth)
    arrived = {}
    for i, (offset, size) in enumerate(zip(offsets, sizes)):
        send_at(env, channel, start + offset, size, arrived, i)
    run_bounded(env, max_events=10 * len(sizes))
    assert sorted(arrived) == list(range(len(sizes)))
    # Reference: exact rationals on the float send times the channel really saw.
    sends = [(Fraction(start + offset), Fraction(size)) for offset, size in zip(offsets, sizes)]
    exact = exact_processor_sharing(sends, Fraction(bandwidth))
    spacing = math.ulp(start)  # the best any float clock can do at this t
    for i, expected in enumerate(exact):
        assert abs(Fraction(arrived[i]) - expected) <= 16 * spacing, i
    # The channel never idled: the last message leaves when all the bytes have moved.
    assert float(max(exact)) == pytest.approx(start + sum(sizes) / bandwidth, abs=16 * spacing)
    assert channel.busy_time == pytest.approx(sum(sizes) / bandwidth, abs=16 * spacing)
    assert channel.bytes_moved == pytest.approx(sum(sizes))


@pytest.mark.slow
def test_shared_channel_mm1_ps_mean_sojourn_and_fair_share():
    # M/M/1-PS: Poisson arrivals at load rho, exponential sizes. Mean sojourn
    # E[T] = E[S] / (1 - rho), and (what sets processor sharing apart from
    # FIFO) a message's expected time is proportional to its own size:
    # E[T | S] = S / (1 - rho), so E[T / S] = 1 / (1 - rho) too. Started at
    # t = 1e6 s to stay far from 0. 40 batch means, 99.9% Student-t interval.
    from scipy import stats

    rho, mean_service, messages, batches = 0.6, 1e-3, 40_000, 40
    rng = np.random.default_rng(11)
    gaps = rng.exponential(mean_service / rho, messages)
    sizes = rng.exponential(mean_service * BW, messages)
    start = 1e6
    times = start + np.cumsum(gaps)
    env, channel = setup(SharedChannel)
    arrived = {}
    for i, (when, size) in enumerate(zip(times, sizes)):
        send_at(env, channel, float(when), float(size), arrived, i)
    run_bounded(env, max_events=10 * messages)
    sojourn = np.array([arrived[i] for i in range(messages)]) - times
    service = sizes / BW

    def interval(values):
        means = values.reshape(batches, -1).mean(axis=1)
        half = stats.t.ppf(0.9995, batches - 1) * means.std(ddof=1) / math.sqrt(batches)
        return means.mean() - half, means.mean() + half

    low, high = interval(sojourn)
    assert low <= mean_service / (1 - rho) <= high
    low, high = interval(sojourn / service)
    assert low <= 1 / (1 - rho) <= high
    assert high - low < 0.2 / (1 - rho)  # tight enough to tell PS from FIFO (FIFO's E[T/S] is unbounded here)


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_video_analytics_run_past_the_old_stall_finishes(tmp_path):
    # The run of issue 9 item 0, shortened: with seed 3 the byte-residual
    # channel stalled at t = 16.0013 s, so 17 s of simulated time reaches it.
    command = [sys.executable, "-m", "sim.cli", "run", str(REPO / "scenarios" / "video-analytics-64.yaml"),
               "--variant", "dpu-offload", "--duration", "17 s", "--set", "run.replications=1",
               "--set", "run.seed=3", "-j", "1", "--out", str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "out" / "summary.json").is_file()


# --- the seed's channel bands on the shipped scenario -----------------------------------------------

SEED_BANDS = {"dpu-grpc": (0.0, 512e3), "dpu-shm": (512e3, 4e6), "rdma": (4e6, math.inf)}  # link: [low, high)


def carried(variant: str, monkeypatch, *overrides: str) -> dict[str, list[float]]:
    """The size of every message each link of video-analytics-64 carried in a short run of ``variant``."""
    import sim.model.system as system
    from sim.plan import compile_plan
    from sim.scenario.load import load_scenario_file
    from sim.workload import generate_arrivals

    sizes: dict[str, list[float]] = {}

    def recording(contention, env, name, *args):
        channel = make_channel(contention, env, name, *args)
        send = channel.send

        def send_and_record(size, deliver):
            sizes.setdefault(name, []).append(size)
            send(size, deliver)

        channel.send = send_and_record
        return channel

    monkeypatch.setattr(system, "make_channel", recording)
    scenario_file = load_scenario_file(REPO / "scenarios" / "video-analytics-64.yaml",
                                       ["run.duration=0.6 s", "run.warmup=0.1 s", "run.drain=0.5 s", *overrides])
    plan = compile_plan(scenario_file.resolve(variant), base_dir=scenario_file.path.parent)
    run = plan.scenario.run
    system.System(plan, generate_arrivals(plan.scenario.workload, run.duration, run.seed, 0, plan.base_dir),
                  run.seed, 0).run()
    return sizes


def test_each_seed_band_link_of_video_analytics_64_carries_exactly_its_band(monkeypatch):
    # dpu-offload: 2.46 MB tensors to the GPU and 2.82 MB results of single-frame batches are in the
    # shared-memory band; merged results of batches of 2+ (>= 5.64 MB) in the RDMA band; no message
    # between the DPU and the GPU is small enough for gRPC in this pipeline.
    sizes = carried("dpu-offload", monkeypatch)
    for link, (low, high) in SEED_BANDS.items():
        assert all(low <= size < high for size in sizes.get(link, [])), link
    assert 2.46e6 in sizes["dpu-shm"] and 2.82e6 in sizes["dpu-shm"]
    assert min(sizes["rdma"]) == pytest.approx(2 * 2.82e6)
    assert "dpu-grpc" not in sizes and "pcie" not in sizes


def test_the_other_band_assignment_moves_the_tensors_to_rdma(monkeypatch):
    # the override the scenario's header gives for a two-band assignment
    sizes = carried("dpu-offload", monkeypatch, "policies.channel.bands=[{below: 512 KB, use: tcp}, {use: rdma}]")
    assert "dpu-shm" not in sizes
    assert 2.46e6 in sizes["rdma"] and 2.82e6 in sizes["rdma"]
