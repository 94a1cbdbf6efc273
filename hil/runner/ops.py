"""The work each stage does for real, on a batch of jobs.

An op takes the jobs of one batch and returns each job's output array (what
travels to the next stage) and, for a gate such as the prefilter, which jobs
pass. Every request carries a synthetic camera frame: request ``i`` carries
frame ``i mod count`` of a seeded ``FrameBank``, so anyone can regenerate
the frame of any request (the tests do, to check the prefilter's decisions
and the detector's outputs against direct onnxruntime calls).

Model ops open their backend once, warm it up with one batch before the
run's clock starts, and run whole batches. The front side runs onnxruntime
on its own cores (``OrtCpuBackend``); the GPU side runs whatever
``open_backend(--backend)`` opens there. ``Emulate`` is the one op that
does no real work: it busy-spins for the service times the simulator would
draw for that stage (same cost model, same random stream), and says so in
its description.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from hil.backends import BackendError, BackendOptions, OrtCpuBackend, open_backend
from hil.backends.ort_cpu import cpu_role
from hil.models import make_frames, postprocess, to_model_input
from hil.models.bundle import is_bundle, pack, unpack
from hil.runner.layout import FRONT, Layout, StageRun

Outputs = tuple[list[np.ndarray], Optional[np.ndarray]]  # per-job outputs; pass mask or None


class FrameBank:
    """The frames requests carry: ``count`` seeded frames, cycled by request id."""

    def __init__(self, height: int, width: int, count: int, seed: int, positive_fraction: float):
        self.images = make_frames(count, seed, height, width, positive_fraction).images

    @classmethod
    def of(cls, layout: Layout) -> FrameBank:
        return cls(**bank_settings(layout))

    def frame(self, request_id: int) -> np.ndarray:
        return self.images[request_id % len(self.images)]


def bank_settings(layout: Layout) -> dict:
    f = layout.settings.frames
    return {"height": f.height, "width": f.width, "count": f.count, "seed": layout.scenario.run.seed,
            "positive_fraction": layout.positive_fraction}


class Op:
    """One stage's work; subclasses implement ``__call__`` and ``describe``."""

    def __init__(self, stage: StageRun, frames: Optional[FrameBank]):
        self.stage, self.frames = stage, frames

    def frame(self, job) -> np.ndarray:
        """The job's frame: its data while that still is the raw frame, else the bank's copy."""
        data = job.data
        return data if data.dtype == np.uint8 and data.ndim == 3 else self.frames.frame(job.id)

    def close(self) -> None:
        pass


class Parse(Op):
    def __call__(self, jobs) -> Outputs:
        return [np.array(self.frames.frame(j.id)) for j in jobs], None

    def describe(self) -> str:
        h, w = self.frames.images.shape[1:3]
        return f"copies the {h}x{w} RGB frame out of the request (no RTP, no codec)"


class Preprocess(Op):
    def __init__(self, stage, frames, size: tuple[int, int]):
        super().__init__(stage, frames)
        self.size = size

    def __call__(self, jobs) -> Outputs:
        return list(to_model_input(np.stack([self.frame(j) for j in jobs]), *self.size)), None

    def describe(self) -> str:
        return f"resize + normalise to 3x{self.size[0]}x{self.size[1]} float32 (numpy, no video decode)"


class Model(Op):
    """An op around an inference backend."""

    def __init__(self, stage, frames, backend):
        super().__init__(stage, frames)
        self.backend = backend
        self.tail = tuple(d or 1 for d in backend.input_spec.shape[1:])
        warm = [1] + ([stage.batching.max_batch] if stage.batching.max_batch > 1 else [])
        for n in warm:  # first runs allocate; keep them out of the measurement
            backend.run(np.zeros((n, *self.tail), backend.input_spec.dtype))

    def close(self) -> None:
        self.backend.close()


class Prefilter(Model):
    """The prefilter: requests scoring below the threshold end ``filtered``; a prefilter that chooses a
    branch and filters nothing in the scenario (``pass_probability`` 1) only scores (``gate`` false)."""

    gate = True

    def __init__(self, stage, frames, backend):
        import onnx

        super().__init__(stage, frames, backend)
        self.output_names = [o.name for o in onnx.load(str(stage.model), load_external_data=False).graph.output]

    def __call__(self, jobs) -> Outputs:
        x = to_model_input(np.stack([self.frames.frame(j.id) for j in jobs]), *self.tail[1:3])
        outputs = self.backend.run(x.astype(self.backend.input_spec.dtype, copy=False))
        name, index = self.stage.score or (None, 0)
        score = outputs[self.output_names.index(name)] if name else outputs[0]
        scores = score.reshape(len(jobs), -1)
        p = scores[:, index]
        self.signals = {"by-score": p, "by-class": scores.argmax(axis=1)}  # what a branch after it reads
        return [j.data for j in jobs], (p >= self.stage.threshold) if self.gate else None

    def describe(self) -> str:
        name, index = self.stage.score or (self.output_names[0], 0)
        gate = f"pass at score >= {self.stage.threshold:g}" if self.gate else "scores only (filters nothing)"
        return (f"ONNX prefilter {self.stage.model.name} on {self.tail[1]}x{self.tail[2]} frames, score {name}[{index}], "
                f"{gate}: {self.backend.describe()}")


class Detect(Model):
    def __call__(self, jobs) -> Outputs:
        h, w = self.tail[1:3]
        x = np.stack([j.data if j.data.shape == (3, h, w) else to_model_input(self.frame(j)[None], h, w)[0]
                      for j in jobs])
        return list(self.backend.run(x.astype(self.backend.input_spec.dtype, copy=False))[0]), None

    def describe(self) -> str:
        return f"ONNX detector {self.tail[1]}x{self.tail[2]}: {self.backend.describe()}"


class ModelOp(Op):
    """Any ONNX model or model segment (``hil.op: model``), with inputs from generators or the previous stage.

    A job's data is either a packed tensor bundle from the previous model
    stage (``hil.models.bundle``: the tensors crossing a cut), whose tensors
    feed the inputs of the same names, or the request's payload; inputs the
    bundle does not carry come from the stage's generators (``hil.inputs``,
    by request id). ``carry:OUTPUT`` inputs take this op's own OUTPUT of
    the previous call. All outputs leave as one bundle. Jobs run one by
    one unless every input has a dynamic batch axis 0, then as one batch.
    Single-input models run on the side's backend (TensorRT, onnxruntime-gpu
    or onnxruntime CPU); several inputs on the GPU side run in native
    TensorRT where it is available, else (and on the front) in an
    onnxruntime CPU session on the side's cores, which says so.
    """

    BANK = 16

    def __init__(self, stage, frames, backend, plans, output_names, base, seed: int, warm: np.ndarray):
        super().__init__(stage, frames)
        self.backend, self.plans, self.output_names, self.base = backend, plans, output_names, base
        self.seed = seed
        self.carried: dict[str, np.ndarray] = {}
        self._scores: list[np.ndarray] = []
        self.batchable = all(p.batched for p in plans)
        # generated inputs are made before the clock starts, BANK of each, request i takes item i mod BANK
        # (as requests carry frame i mod count): making a camera frame is not the stage's work
        self.bank = {p.name: [p.values([k], seed, base) for k in range(self.BANK)] for p in plans
                     if p.generator.kind not in ("carry", "previous")}
        for job_id in (-1, -2):  # first runs allocate; keep them out of the measurement
            self._run_one(self._feeds(_Job(job_id, warm)))
        self.carried.clear()

    def _feeds(self, job) -> dict[str, np.ndarray]:
        given = unpack(job.data) if is_bundle(job.data) else {}
        feeds = {}
        for p in self.plans:
            if p.name in given:
                feeds[p.name] = given[p.name]
            elif p.generator.kind == "previous" and job.id >= 0:
                raise ValueError(f"input {p.name!r} should come from stage {p.generator.argument}, "
                                 f"which did not send it")
            elif p.generator.kind == "carry" and p.generator.argument in self.carried:
                feeds[p.name] = self.carried[p.generator.argument]
            elif p.name in self.bank:
                feeds[p.name] = self.bank[p.name][max(job.id, 0) % self.BANK]
            else:  # carry before the first call: zeros
                feeds[p.name] = p.values([0], self.seed, self.base)
        return feeds

    def _run_one(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.backend.run_feeds(feeds)
        named = dict(zip(self.output_names, outputs))
        if self.stage.score is not None:  # a branch reads this output: its element, or its argmax
            self._scores.append(np.asarray(named[self.stage.score[0]]))
        for p in self.plans:
            if p.generator.kind == "carry" and p.generator.argument in named:
                self.carried[p.generator.argument] = np.array(named[p.generator.argument])
        return named

    def __call__(self, jobs) -> Outputs:
        self._scores = []
        if self.batchable and len(jobs) > 1 and not any(p.generator.kind == "carry" for p in self.plans):
            feeds = [self._feeds(j) for j in jobs]
            named = self._run_one({p.name: np.concatenate([f[p.name] for f in feeds]) for p in self.plans})
            if all(np.ndim(v) and len(v) == len(jobs) for v in named.values()):
                self._signal(len(jobs))
                return [pack({k: v[i:i + 1] for k, v in named.items()}) for i in range(len(jobs))], None
            self._scores = []
        out = [pack(self._run_one(self._feeds(j))) for j in jobs]
        self._signal(len(jobs))
        return out, None

    def _signal(self, n: int) -> None:
        """With ``hil.score``: each job's score (element ``index`` of the output) and class (its argmax)."""
        if self.stage.score is None or not self._scores:
            return
        rows = n // len(self._scores)  # one run per job, or one run for the whole batch
        scores = np.concatenate([s.reshape(rows, -1) for s in self._scores])
        index = min(self.stage.score[1], scores.shape[1] - 1)
        self.signals = {"by-score": scores[:, index], "by-class": scores.argmax(axis=1)}

    def describe(self) -> str:
        feeds = ", ".join(f"{p.name} {'x'.join(map(str, p.shape)) or 'scalar'} {p.dtype} <- {p.generator.text}"
                          for p in self.plans)
        return (f"ONNX model {self.stage.model.name} (inputs: {feeds}; generated ones: {self.BANK} made before "
                f"the run, request i takes item i mod {self.BANK}; "
                f"outputs {', '.join(self.output_names)} packed into one message): {self.backend.describe()}")

    def close(self) -> None:
        self.backend.close()


@dataclass
class _Job:
    id: int
    data: np.ndarray


class MultiInputSession:
    """A several-input model in onnxruntime on the side's cores (the backends take one input)."""

    kind = "onnxruntime-cpu"

    def __init__(self, path, options: BackendOptions, note: str = ""):
        import onnxruntime as ort

        from hil.backends.ort_cpu import load_session, pin_process, session_options, thread_affinities

        if options.cores:
            pin_process(options.cores)
        affinities = thread_affinities(options.threads, options.cores) if options.cores else ""
        self.session = load_session(ort, path, session_options(ort, options, affinities), ["CPUExecutionProvider"])
        self.cores, self.threads, self.version, self.note = options.cores, options.threads, ort.__version__, note

    def run_feeds(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, feeds)

    def describe(self) -> str:
        return (f"onnxruntime {self.version} CPUExecutionProvider (several inputs), {self.threads} thread(s), "
                f"cores {{{','.join(map(str, self.cores or ()))}}} - {cpu_role()}"
                + (f" ({self.note})" if self.note else ""))

    def close(self) -> None:
        self.session = None


class Postprocess(Op):
    def __call__(self, jobs) -> Outputs:
        data = np.stack([j.data for j in jobs])
        if data.ndim != 3 or data.dtype.kind != "f" or data.shape[2] < 6:
            raise ValueError(f"postprocess decodes a YOLO-style raw head (N, anchors, 5 + classes) float output; "
                             f"got {data.dtype} {tuple(data.shape)}: the previous stage's model does not produce one")
        found = postprocess(data)
        return [np.column_stack([d.boxes, d.scores, d.classes]).astype(np.float32) for d in found], None

    def describe(self) -> str:
        return "decode + confidence threshold + class-aware NMS (numpy); output: boxes, score, class"


class Emulate(Op):
    """Busy-spin for the simulator's service-time draws of this stage: emulated, not real work."""

    def __init__(self, stage, frames, seed: int, replication: int):
        from sim.costs import make_sampler
        from sim.contract import streams

        super().__init__(stage, frames)
        rng = streams.stream_rng(seed, replication, streams.service(stage.name, stage.pool))
        self.sampler = make_sampler(stage.cost, rng, 1 / stage.speed)

    def __call__(self, jobs) -> Outputs:
        end = time.monotonic() + self.sampler.sample(len(jobs))
        while time.monotonic() < end:
            pass
        out = self.stage.output
        return [np.zeros(int(out), np.uint8) if out is not None else j.data for j in jobs], None

    def describe(self) -> str:
        return f"EMULATED: busy-spin for draws from its {self.stage.kind} cost model (no real work)"


def open_op(stage: StageRun, layout: Layout, frames: Optional[FrameBank], backend_kind: str, replication: int) -> Op:
    """The op of ``stage`` on its side, opened and warmed up."""
    if stage.op == "parse":
        return Parse(stage, frames)
    if stage.op == "preprocess":
        return Preprocess(stage, frames, layout.tensor_size)
    if stage.op == "postprocess":
        return Postprocess(stage, frames)
    if stage.op == "emulate":
        return Emulate(stage, frames, layout.scenario.run.seed, replication)
    cores = layout.cores[stage.side]
    options = BackendOptions(threads=len(cores), cores=cores, max_batch=max(stage.batching.max_batch, 1),
                             cache_dir=layout.settings.cache)
    if stage.op == "model":
        return _open_model_op(stage, layout, frames, backend_kind, options)
    if stage.side == FRONT:
        backend = OrtCpuBackend(stage.model, options).open()
    else:
        backend = open_backend(backend_kind, stage.model, options)
    if stage.op != "prefilter":
        return Detect(stage, frames, backend)
    op = Prefilter(stage, frames, backend)
    op.gate = layout.plan.stages[stage.index].branch is None or stage.pass_probability < 1
    return op


def _open_model_op(stage: StageRun, layout: Layout, frames, backend_kind: str, options: BackendOptions) -> ModelOp:
    import onnx

    model = onnx.load(str(stage.model), load_external_data=False)
    outputs = [o.name for o in model.graph.output]
    if len(stage.inputs) == 1:
        backend = OrtCpuBackend(stage.model, options).open() if stage.side == FRONT else \
            open_backend(backend_kind, stage.model, options)
    elif stage.side != FRONT and backend_kind in ("auto", "tensorrt"):
        try:  # native TensorRT runs several inputs (a split model's tail); the onnxruntime backends take one
            backend = open_backend("tensorrt", stage.model, options)
        except BackendError as error:
            if backend_kind == "tensorrt":
                raise
            backend = MultiInputSession(stage.model, options, f"TensorRT skipped: {error}")
    else:
        backend = MultiInputSession(stage.model, options)
    seed = layout.scenario.run.seed
    warm = pack(sample_outputs(layout, layout.plan.stages[layout.stages.index(stage)].preds[0])) if any(
        p.generator.kind == "previous" for p in stage.inputs) else np.zeros(1, np.uint8)
    return ModelOp(stage, frames, backend, list(stage.inputs), outputs, layout.plan.base_dir, seed, warm)


def sample_outputs(layout: Layout, position: int) -> dict[str, np.ndarray]:
    """What the model stage at ``position`` sends for request 0: real values to warm the next stage up with.

    (Zeros would not do: a split can send shape tensors, which must be the real ones.)
    """
    import onnxruntime as ort

    stage = layout.stages[position]
    given = sample_outputs(layout, layout.plan.stages[position].preds[0]) if any(
        p.generator.kind == "previous" for p in stage.inputs) else {}
    feeds = {p.name: given[p.name] if p.generator.kind == "previous" else
             p.values([0], layout.scenario.run.seed, layout.plan.base_dir) for p in stage.inputs}
    session = ort.InferenceSession(str(stage.model), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def side_role(side: str, backend_kind: Optional[str] = None) -> str:
    """What this host's cores stand for on a side, in words."""
    if side == FRONT:
        return cpu_role()
    if backend_kind == "onnxruntime-cpu":
        return "host CPU cores standing in for the GPU (no GPU backend here)"
    return "the GPU"


def honest(description: str, side: str) -> str:
    """A backend description with the CPU role corrected when host cores stand in for the GPU."""
    return description.replace(cpu_role(), side_role(side, "onnxruntime-cpu")) if side != FRONT else description


@dataclass
class PassDraws:
    """The simulator's pass/filter draws of a stage with pass_probability < 1 (by request id)."""

    rng: np.random.Generator
    values: np.ndarray

    @classmethod
    def of(cls, stage: StageRun, seed: int, replication: int) -> PassDraws:
        from sim.contract import streams

        return cls(streams.stream_rng(seed, replication, streams.passes(stage.name)), np.empty(0))

    def __call__(self, ids: list[int]) -> np.ndarray:
        need = max(ids) + 1
        if need > len(self.values):  # numpy draws doubles in sequence: extending keeps the prefix
            self.values = np.concatenate([self.values, self.rng.random(max(need - len(self.values), 4096))])
        return self.values[ids]


class Routes:
    """Where a request goes next: its class's entry stage, and after each stage its successor.

    A stage with a branch asks the scenario's branching policy, the very
    object the simulator asks (``sim.policies.branching``), for the branch
    of a signal: the stage's real model output where its op gives one (a
    prefilter's score or argmax class; ``hil.score`` of a model op), else
    the signal the simulator draws for that request from the same stream
    (so an emulated stage branches exactly as in simulation). The harness
    runs one path per request (``layout`` refuses forks and joins), so the
    next stage is always one stage, or ``len(stages)`` for "done".
    """

    def __init__(self, layout: Layout, seed: int, replication: int):
        from sim.contract import streams
        from sim.policies.branching import build_branching

        plan = layout.plan  # (only the plan is read: a simulator's plan will do)
        self.end = len(plan.stages)
        self.entries = [plan.entries_of(name)[0] for name in dict.fromkeys(
            s.class_ for s in plan.scenario.workload.sources)]
        self.next = [stage.succs[0] if stage.succs else self.end for stage in plan.stages]
        self.policies = {s.index: (build_branching(s.branch.kind, s.branch.branches), s.branch.targets, s.branch.kind,
                                   PassDraws(streams.stream_rng(seed, replication, streams.branches(s.name)),
                                             np.empty(0)))
                         for s in plan.stages if s.branch is not None}

    def entry(self, klass: int) -> int:
        return self.entries[klass]

    def after(self, stage: int, request_ids: list[int], op: Optional[Op]) -> list[int]:
        """The next stage of each request of a batch that just left ``stage`` (``op`` ran it)."""
        branching = self.policies.get(stage)
        if branching is None:
            return [self.next[stage]] * len(request_ids)
        policy, targets, kind, draws = branching
        signals = getattr(op, "signals", None)
        if signals is not None and len(signals[kind]) == len(request_ids):
            chosen = [policy.choose(float(v)) for v in signals[kind]]
        else:
            chosen = [policy.choose(policy.simulated_signal(float(u))) for u in draws(request_ids)]
        return [targets[c] for c in chosen]

    def describe(self, stage: int, op: Optional[Op]) -> str:
        """How ``stage`` chooses its branch, in words ("" when it has none)."""
        branching = self.policies.get(stage)
        if branching is None:
            return ""
        kind = branching[2]
        if isinstance(op, Prefilter) or (isinstance(op, ModelOp) and op.stage.score is not None):
            what = "score" if kind == "by-score" else "argmax class"
            return f"; chooses its branch ({kind}) from the model's {what}"
        return (f"; chooses its branch ({kind}) from the simulator's draw for each request "
                f"(this op gives no model output to choose by)")
