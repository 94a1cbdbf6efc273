"""What the front does when a stage attempt fails: the simulator's reaction objects, in real time.

The front owns every request's outcome, so it is where reactions happen.
``FrontReactions`` holds one ``sim.policies.resilience.Reactions`` per
stage, built by ``build_reactions`` from the plan exactly as the
simulator's ``System`` builds its own, and keeps the same per-request
bookkeeping the simulator keeps (``sim.model.system.System._react``):

- before an attempt: the stage's breaker is asked (refused:
  ``BREAKER_OPEN``), then whether the GPU side is up when the stage runs
  there (down: ``UNHEALTHY`` if the scenario is health-aware, else the
  attempt ``FAILED``: it would have reached a dead process);
- an attempt that failed (the worker died or hung with it, a stage
  raised), or timed out (``resilience.stages.<s>.timeout``), counts one more
  failure of that stage for that request (a breaker refusal counts none),
  and the stage's ``Reactions.failed`` decides: ``Retry`` (a timer; the
  retry is a new attempt), ``Fallback`` (the front runs the stage's
  fallback: ``Classify`` for a degraded one), or ``GiveUp`` (the request
  ends failed or timed out);
- a retry counts in the request's retries, a fallback records the reason
  of the first one, as the simulator's ``Request.retries``/``fallback``.

No clock and no process here: the caller says what time it is, so
``tests/test_same_decisions.py`` feeds this class and the simulator the same
events and compares their decisions.
"""

from __future__ import annotations

import heapq
from typing import Optional

import numpy as np

from sim.policies.resilience import Fallback, Reaction, Reactions, Reason, Retry, build_reactions


class FrontReactions:
    """The stages' ``Reactions`` and each request's failures, retries and fallback reason."""

    def __init__(self, resilience, on_gpu: list[bool]):
        """``resilience``: the plan's (``sim.plan.ResiliencePlan``); None: no reactions, every failure ends the request."""
        self.reactions = build_reactions(resilience.stages) if resilience else [Reactions() for _ in on_gpu]
        self.health_aware = resilience.health_aware if resilience else False
        self.on_gpu = on_gpu
        self.failures: dict[int, list[int]] = {}
        self.retries: dict[int, int] = {}
        self.fallback: dict[int, Reason] = {}
        self.timers: list[tuple[float, int, int, int]] = []  # (when, seq, request id, stage)
        self.seq = 0

    def admit(self, rid: int, stage: int, now: float, gpu_up: bool) -> Optional[Reaction]:
        """Before an attempt at ``stage``'s main path: None to go ahead, else the reaction to its refusal."""
        if not self.reactions[stage].admit(now):
            return self.failed(rid, stage, now, Reason.BREAKER_OPEN)
        if self.on_gpu[stage] and not gpu_up:
            return self.failed(rid, stage, now, Reason.UNHEALTHY if self.health_aware else Reason.FAILED)
        return None

    def succeeded(self, stage: int, now: float, latency: float) -> None:
        self.reactions[stage].succeeded(now, latency)

    def failed(self, rid: int, stage: int, now: float, reason: Reason, latency: float = 0.0,
               in_fallback: bool = False) -> Reaction:
        """The attempt of request ``rid`` at ``stage`` failed for ``reason``: what now (timers and counts kept)."""
        counts = self.failures.setdefault(rid, [0] * len(self.reactions))
        if reason is not Reason.BREAKER_OPEN:
            counts[stage] += 1
        decision = self.reactions[stage].failed(now, counts[stage], reason, latency, in_fallback)
        if isinstance(decision, Retry):
            self.retries[rid] = self.retries.get(rid, 0) + 1
            heapq.heappush(self.timers, (now + decision.delay, self.seq, rid, stage))
            self.seq += 1
        elif isinstance(decision, Fallback):
            self.fallback.setdefault(rid, decision.reason)
        return decision

    def due(self, now: float) -> list[tuple[int, int]]:
        """Retries whose time has come: (request id, stage), in the order they were decided."""
        out = []
        while self.timers and self.timers[0][0] <= now:
            _, _, rid, stage = heapq.heappop(self.timers)
            out.append((rid, stage))
        return out

    def next_time(self) -> float:
        return self.timers[0][0] if self.timers else float("inf")

    def forget(self, rid: int) -> None:
        """The request ended: its failure counts are no longer needed (retries and fallback stay)."""
        self.failures.pop(rid, None)


class Classify:
    """A degraded fallback's work: the small ONNX classifier on the request's frame, on the front's cores.

    Its answer is a label and a score per request (the classifier's output row) instead of the
    detector's boxes; the request ends ``degraded`` with it.
    """

    def __init__(self, stage, frames, cores: tuple[int, ...], cache: str):
        from hil.backends import BackendOptions, OrtCpuBackend

        self.stage, self.frames = stage, frames
        options = BackendOptions(threads=len(cores), cores=cores, max_batch=1, cache_dir=cache)
        self.backend = OrtCpuBackend(stage.model, options).open()
        self.size = tuple(int(d) for d in self.backend.input_spec.shape[2:4])
        self.backend.run(np.zeros((1, 3, *self.size), self.backend.input_spec.dtype))  # warm up off the clock

    def __call__(self, jobs):
        from hil.models import to_model_input

        x = to_model_input(np.stack([self.frames.frame(j.id) for j in jobs]), *self.size)
        scores = self.backend.run(x.astype(self.backend.input_spec.dtype, copy=False))[0]
        return list(scores.reshape(len(jobs), -1)), None

    def describe(self) -> str:
        return (f"DEGRADED fallback: ONNX classifier {self.stage.model.name} on {self.size[0]}x{self.size[1]} "
                f"frames (a label and a score instead of detections): {self.backend.describe()}")

    def close(self) -> None:
        self.backend.close()
