"""Measuring until the numbers settle, the way perf_analyzer does.

A kitchen scale is read once the needle stops moving. Here the needle is the
mean latency of a *window* of samples: after a warm-up (caches, allocators,
lazy initialisation, CPU frequency), windows are taken one after another
until the means of the last ``consecutive`` (3) windows agree within
``tolerance`` (10%: max / min <= 1.1). The measurement is then the samples
of those windows. If the cap on windows is reached first, the measurement is
the last windows anyway and says ``stable=False``: never stabilised, and
reported as such, never passed off as settled.

A window closes when it holds ``window_samples`` samples, or when it has
lasted ``window_s`` seconds and holds at least ``min_window_samples``
(slow operations, such as a large inference batch, would otherwise take
minutes per window).

``pinned`` runs a block with every thread of the process on chosen cores,
as the harness pins each side of the pipeline, and restores the affinity
afterwards. It also sets numpy's BLAS (OpenBLAS, MKL) to one thread per
chosen core, as the harness's workers have (OMP_NUM_THREADS etc. = their
cores): BLAS keeps the thread count it started with (one per CPU of the
host), and two BLAS threads sharing one pinned core made numpy's resize
8-23x slower than in the harness.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np


@dataclass(frozen=True)
class Settings:
    """The measurement rule (recorded in the calibration file's ``method``)."""

    warmup_s: float = 1.0
    warmup_runs: int = 3  # at least this many warm-up runs, however long they take
    window_samples: int = 50
    window_s: float = 2.0
    min_window_samples: int = 3
    max_windows: int = 10
    consecutive: int = 3
    tolerance: float = 0.10


FULL = Settings()
QUICK = Settings(warmup_s=0.2, warmup_runs=1, window_samples=20, window_s=0.25, min_window_samples=2, max_windows=5)


@dataclass(frozen=True)
class Measurement:
    """The samples of the last ``consecutive`` windows, and whether they agreed."""

    samples: np.ndarray  # seconds
    window_means: tuple[float, ...]  # every window, in order
    stable: bool

    @property
    def windows(self) -> int:
        return len(self.window_means)

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples))


def settled(window_means: Sequence[float], consecutive: int = 3, tolerance: float = 0.10) -> bool:
    """Whether the last ``consecutive`` window means are within ``tolerance`` (max / min <= 1 + tolerance)."""
    if len(window_means) < consecutive:
        return False
    tail = window_means[-consecutive:]
    low, high = min(tail), max(tail)
    return low > 0 and high / low <= 1 + tolerance + 1e-12


def measure(sample: Callable[[], float], settings: Settings = FULL,
            clock: Callable[[], float] = time.perf_counter) -> Measurement:
    """Call ``sample()`` (it returns one latency in seconds) under the stability rule."""
    start = clock()
    runs = 0
    while runs < settings.warmup_runs or clock() - start < settings.warmup_s:
        sample()
        runs += 1
    windows: list[list[float]] = []
    while len(windows) < settings.max_windows:
        window: list[float] = []
        opened = clock()
        while len(window) < settings.window_samples and not (
            len(window) >= settings.min_window_samples and clock() - opened >= settings.window_s
        ):
            window.append(sample())
        windows.append(window)
        if settled([math.fsum(w) / len(w) for w in windows], settings.consecutive, settings.tolerance):
            break
    means = tuple(math.fsum(w) / len(w) for w in windows)
    kept = [s for w in windows[-settings.consecutive:] for s in w]
    return Measurement(np.asarray(kept, dtype=float), means,
                       settled(means, settings.consecutive, settings.tolerance))


def timed(call: Callable[[], object]) -> Callable[[], float]:
    """A sampler that times one call of ``call`` by the wall clock."""

    def sample() -> float:
        begin = time.perf_counter()
        call()
        return time.perf_counter() - begin

    return sample


def _threads() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


@contextlib.contextmanager
def pinned(cores: Sequence[int]) -> Iterator[None]:
    """Run the block with every thread of this process on ``cores``; restore the affinity after."""
    before = {tid: os.sched_getaffinity(tid) for tid in _threads() if _alive(tid)}
    for tid in before:
        _set(tid, set(cores))
    threads = _blas_threads(len(cores))
    try:
        yield
    finally:
        _blas_threads(threads)
        for tid in _threads():
            _set(tid, before.get(tid, before.get(os.getpid(), set(cores))))


_BLAS_CALLS = (("openblas_get_num_threads", "openblas_set_num_threads"),
               ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
               ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
               ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
               ("MKL_Get_Max_Threads", "MKL_Set_Num_Threads"))


def _blas_threads(n: int | None) -> int | None:
    """Set the loaded BLAS libraries to ``n`` threads; return the count before (None: no BLAS found)."""
    if n is None:
        return None
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return None
    previous = None
    for path in sorted({line.split()[-1] for line in maps if "blas" in line.lower() or "mkl_rt" in line}):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get, set_ in _BLAS_CALLS:
            if hasattr(lib, get) and hasattr(lib, set_):
                previous = getattr(lib, get)()
                getattr(lib, set_)(int(n))
                break
    return previous


def _alive(tid: int) -> bool:
    try:
        os.sched_getaffinity(tid)
        return True
    except OSError:
        return False


def _set(tid: int, cores: set[int]) -> None:
    try:
        os.sched_setaffinity(tid, cores)
    except ProcessLookupError:  # the thread ended meanwhile
        pass
