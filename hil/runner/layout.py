"""What runs where: one scenario variant laid out on this host's two processes.

The plan (``sim.plan``) already says which pool runs each stage. The harness
has two worker processes: the *front* (the DPU's side: every stage placed on
a ``dpu`` or ``cpu`` pool) and the *GPU side* (every stage on a ``gpu``
pool), pinned to disjoint cores. Each stage gets an operation that does its
work for real:

    parse        copy the request's raw frame bytes into a frame array
    preprocess   resize + normalise the frame to the detector's input (numpy)
    prefilter    the small ONNX classifier; below its threshold the request is filtered
    detect       the ONNX detector, batched by the scenario's batching policy
    postprocess  decode + class-aware NMS (numpy)
    emulate      busy-spin for a draw from the stage's own cost model: NOT real work

The op comes from the stage's ``hil.op``, else from its name (``infer`` and
``detect`` are ``detect``; an unknown name is emulated). Models are the ones
``hil.models`` builds for the scenario's ``hil`` sizes, or the user's ONNX
file (``hil.model``). Every request follows one path: a stage goes on to one
successor or chooses one by its branch (``hil.runner.ops.Routes``), and a class
enters at one stage; forks are reported as a problem up front.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from hil.runner.faults import Fault, resolve_faults
from sim.plan import Plan
from sim.scenario.errors import Problem, ScenarioError
from sim.scenario.schema import BatchingSpec, HilSettings

FRONT, GPU = "front", "gpu"
SIDE_OF_KIND = {"cpu": FRONT, "dpu": FRONT, "gpu": GPU}
DEFAULT_OPS = {"parse": "parse", "preprocess": "preprocess", "prefilter": "prefilter", "infer": "detect",
               "detect": "detect", "postprocess": "postprocess"}
MODEL_OPS = ("prefilter", "detect", "model")
FRAME_OPS = ("parse", "preprocess", "prefilter", "detect")


@dataclass(frozen=True)
class StageRun:
    """One stage as the harness runs it."""

    index: int
    name: str
    side: str
    pool: str
    kind: str  # device kind of ``pool``: cpu, dpu or gpu
    op: str
    model: Optional[Path]  # the ONNX file of a prefilter/detect op (None until models are built)
    user_model: bool
    threshold: float
    cost: Any  # the stage's CostSpec on ``kind``
    speed: float
    output: Optional[float]
    pass_probability: float
    batching: BatchingSpec
    inputs: tuple = ()  # model op: hil.models.inputs.InputPlan per model input
    score: Optional[tuple[str, int]] = None  # prefilter with a user model: (output name, index)
    origin: int = -1  # a fallback: the stage it stands in for

    def model_mean(self, batch: int) -> float:
        """The scenario's cost model for a batch on this stage's device kind, in seconds."""
        return self.cost.mean(batch) / self.speed


@dataclass(frozen=True)
class Layout:
    """A variant ready to run: stages, sides, cores, sizes, models."""

    plan: Plan
    variant: str
    label: str
    stages: tuple[StageRun, ...]
    settings: HilSettings
    cores: dict[str, tuple[int, ...]]
    tensor_size: tuple[int, int]  # the detector's input height, width (preprocess's output)
    positive_fraction: float  # share of synthetic frames with objects: the prefilter's pass rate
    faults: tuple[Fault, ...] = ()  # injected for real (hil.runner.faults)
    fallbacks: tuple[StageRun, ...] = ()  # the front's stand-ins for GPU-side stages, index n + k

    @property
    def resilience(self):
        """The plan's failures and reactions (sim.plan.ResiliencePlan), None when it declares none."""
        return self.plan.resilience

    def fallback_of(self, stage: int) -> Optional[StageRun]:
        return next((f for f in self.fallbacks if f.origin == stage), None)

    @property
    def scenario(self):
        return self.plan.scenario

    @property
    def uses_frames(self) -> bool:
        return any(s.op in FRAME_OPS for s in self.stages)

    @property
    def device_names(self) -> tuple[str, ...]:
        return tuple(name for pool in self.plan.pools.values() for name in pool.instance_names())

    def side_stages(self, side: str) -> list[StageRun]:
        return [s for s in self.stages if s.side == side]


def lay_out(plan: Plan, variant: str, label: str, available_cores: Optional[list[int]] = None) -> Layout:
    """The layout of ``plan``; raises ScenarioError listing every problem."""
    scenario = plan.scenario
    settings = scenario.hil or HilSettings()
    problems: list[Problem] = []

    def problem(path: str, message: str) -> None:
        problems.append(Problem(label, path, message))

    specs = {s.name: (i, s) for i, s in enumerate(scenario.pipeline.stages)}
    _one_path(plan, specs, problem)
    stages = []
    for stage in plan.stages:
        i, spec = specs[stage.name]
        path = f"pipeline.stages[{i}]"
        pool = plan.pools[stage.pools[0]]
        hil = spec.hil
        op = (hil.op if hil and hil.op else None) or DEFAULT_OPS.get(stage.name, "emulate")
        model, plans = None, ()
        if hil and hil.model:
            if op not in MODEL_OPS:
                problem(f"{path}.hil.model", f"only prefilter, detect and model ops take a model; this stage's op is {op}")
            if op == "model":
                model, plans = _any_model(plan.base_dir / hil.model, f"{path}.hil", stage.name, hil, problem)
            else:
                model = _user_model(plan.base_dir / hil.model, f"{path}.hil.model", problem)
        elif op == "model":
            problem(f"{path}.hil.model", f"stage '{stage.name}': op model needs hil.model, the ONNX file to run")
        if hil and (hil.shapes or hil.inputs) and op != "model":
            problem(f"{path}.hil.{'shapes' if hil.shapes else 'inputs'}",
                    f"stage '{stage.name}': only op model takes shapes/inputs (this stage's op is {op})")
        score = None
        if hil and hil.score:
            if not hil.model or not (op == "prefilter" or (op == "model" and stage.branch is not None)):
                problem(f"{path}.hil.score", f"stage '{stage.name}': a score output is for a prefilter with "
                                             f"hil.model, or a model op that chooses a branch")
            elif model is not None:  # else the model's own problem is reported
                score = _score(model, hil.score, f"{path}.hil.score", stage.name, problem)
        stages.append(StageRun(
            index=stage.index, name=stage.name, side=SIDE_OF_KIND[pool.kind], pool=pool.name, kind=pool.kind,
            op=op, model=model, user_model=model is not None, threshold=hil.threshold if hil else 0.5,
            cost=stage.costs[pool.kind], speed=pool.speed, output=stage.output,
            pass_probability=stage.pass_probability, batching=stage.batching, inputs=plans, score=score,
        ))
    stages = _chain_models(stages, plan)
    for s in stages:
        if s.model is not None:
            i, spec = specs[s.name]
            _check_calibrated(spec, s.model, plan.base_dir, f"pipeline.stages[{i}].costs", problem)
    tensor = (settings.detector.input_size,) * 2
    for s in stages:
        if s.op in ("detect", "prefilter") and s.model is not None:
            shape = _model_input(s.model)
            if shape is None:
                from hil.models import inspect_model

                problem(f"pipeline.stages[{specs[s.name][0]}].hil.model",
                        f"stage '{s.name}': {s.model} has input {inspect_model(s.model).input_shape}; op {s.op} needs "
                        f"(N, 3, H, W) with fixed H, W: export the model with a fixed size, or use hil.op: model "
                        f"with hil.shapes")
            elif s.op == "detect":
                tensor = shape
    cores = _cores(settings, available_cores, problem)
    side_of_pool = {name: SIDE_OF_KIND[pool.kind] for name, pool in plan.pools.items()}
    faults = resolve_faults(scenario, plan, {s.name: s.index for s in stages}, side_of_pool, problem)
    fallbacks = _fallbacks(plan, stages, problem)
    if problems:
        raise ScenarioError(problems)
    prefilters = [s for s in scenario.pipeline.stages if (s.hil and s.hil.op or DEFAULT_OPS.get(s.name)) == "prefilter"]
    positive = prefilters[0].pass_probability if prefilters else 0.5
    if prefilters and prefilters[0].branch is not None and prefilters[0].branch.kind == "by-score":
        positive = prefilters[0].branch.to[-1].probability  # frames with objects score high: the top band
    return Layout(plan, variant, label, tuple(stages), settings, cores, tensor, positive, faults, fallbacks)


def _fallbacks(plan: Plan, stages: list[StageRun], problem) -> tuple[StageRun, ...]:
    """Each GPU-side stage's fallback as a stage of the front (index n + k, as the simulator's shadow stages).

    A degraded fallback runs the small classifier (``classify``) on the request's frame; a full one runs the
    stage's own op on the front's cores. Stage timeouts are measured on GPU-side stages only.
    """
    if plan.resilience is None:
        return ()
    out = []
    for stage, reaction in zip(stages, plan.resilience.stages):
        path = f"resilience.stages.{stage.name}"
        if reaction.timeout is not None and stage.side != GPU:
            problem(f"{path}.timeout", f"stage '{stage.name}' runs on the front; the harness times out stages "
                                       "on the GPU side only (the front's own stages cannot hang without it)")
        fallback = reaction.fallback
        if fallback is None:
            continue
        pools = [p for p in fallback.pools if SIDE_OF_KIND[plan.pools[p].kind] == FRONT]
        if stage.side != GPU or not pools:
            problem(f"{path}.fallback.pools", f"the harness runs a fallback of a GPU-side stage on the front "
                                              f"(a dpu or cpu pool); stage '{stage.name}' runs on the {stage.side} "
                                              f"side and its fallback on {list(fallback.pools)}")
            continue
        pool = plan.pools[pools[0]]
        op = "classify" if fallback.degraded else stage.op
        out.append(replace(stage, index=len(stages) + len(out), name=f"{stage.name}.fallback", side=FRONT,
                           pool=pool.name, kind=pool.kind, op=op, model=None if fallback.degraded else stage.model,
                           user_model=False if fallback.degraded else stage.user_model, cost=fallback.costs[pool.kind],
                           speed=pool.speed, output=fallback.output, pass_probability=1.0,
                           batching=BatchingSpec(), origin=stage.index))
    return tuple(out)


def _one_path(plan: Plan, specs: dict, problem) -> None:
    """The harness runs one path per request: a stage goes on to one successor, or chooses one by its
    branch; a class enters at one stage. Stages after several branches (or on several classes' paths) are
    fine: a request arrives there from one of them."""
    for stage in plan.stages:
        if len(stage.succs) > 1 and stage.branch is None:
            problem(f"pipeline.stages[{specs[stage.name][0]}].after",
                    f"stage '{stage.name}' forks (every request goes on to {', '.join(plan.stages[s].name for s in stage.succs)}); "
                    f"the harness runs one path per request: give it a branch, or make the pipeline linear")
    for name in dict.fromkeys(s.class_ for s in plan.scenario.workload.sources):
        entries = plan.entries_of(name)
        if len(entries) > 1:
            where = f"pipeline.entries.{name}" if plan.entries is not None else "pipeline.stages"
            problem(where, f"requests of class '{name}' enter at {len(entries)} stages "
                           f"({', '.join(plan.stages[e].name for e in entries)}); the harness runs one path per request")


def build_models(layout: Layout) -> Layout:
    """The layout with the built model files filled in where the user gave none.

    Files live in ``<hil.cache>/models``, named by a hash of their spec: the
    first run with new sizes trains the prefilter (seconds to a minute),
    later runs reuse the files.
    """
    from hil.models import (
        DetectorSpec,
        PrefilterSpec,
        build_detector,
        build_prefilter,
        ensure_model,
    )

    sizes = layout.settings
    recipes = {
        "prefilter": ("prefilter", PrefilterSpec(input_size=sizes.prefilter.input_size), build_prefilter),
        "detect": ("detector", DetectorSpec(input_size=sizes.detector.input_size, width=sizes.detector.width),
                   build_detector),
    }
    folder = Path(sizes.cache) / "models"
    recipes["classify"] = recipes["prefilter"]  # a degraded fallback: the small classifier
    paths = {op: ensure_model(folder, *recipes[op])
             for op in {s.op for s in (*layout.stages, *layout.fallbacks) if s.model is None} if op in recipes}

    def built(s: StageRun) -> StageRun:
        return s if s.op not in paths or s.model is not None else replace(s, model=paths[s.op].resolve())

    return replace(layout, stages=tuple(map(built, layout.stages)), fallbacks=tuple(map(built, layout.fallbacks)))


def _user_model(path: Path, where: str, problem) -> Optional[Path]:
    from hil.models import ModelFileError, inspect_model

    try:
        inspect_model(path)
    except ModelFileError as error:
        problem(where, str(error))
        return None
    return path


def _any_model(path: Path, where: str, stage: str, hil, problem) -> tuple[Optional[Path], tuple]:
    """A model op's file and input plans; every problem names the stage, the field and the model's signature."""
    import onnx

    from hil.models.inputs import resolve_inputs, signature, signature_text

    if not path.is_file():
        problem(f"{where}.model", f"stage '{stage}': model file {path} does not exist")
        return None, ()
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:
        problem(f"{where}.model", f"stage '{stage}': {path} is not an ONNX model: {error}")
        return None, ()
    declared = signature(model)
    plans, found = resolve_inputs(declared, {k: list(v) for k, v in hil.shapes.items()}, dict(hil.inputs))
    for line in found:
        field = "inputs" if "generator" in line else "shapes"
        problem(f"{where}.{field}", f"stage '{stage}': {line}; the model's inputs: {signature_text(declared)}")
    return path, tuple(plans)


def _check_calibrated(spec, model: Path, base_dir: Path, where: str, problem) -> None:
    """Refuse calibrated costs measured with another model file than the one this stage runs."""
    from hil.calibrate.model_identity import mismatch
    from sim.calibration import CalibrationError, load_calibration

    for kind, cost in spec.costs.items():
        if getattr(cost, "kind", None) != "calibrated":
            continue
        try:
            entry = load_calibration(base_dir / cost.file).entries.get(cost.entry)
        except (CalibrationError, OSError):
            continue  # sim.plan reports unreadable calibration files
        why = mismatch(getattr(entry, "measured", ""), model) if entry is not None else None
        if why:
            problem(f"{where}.{kind}", f"stage '{spec.name}': calibration {cost.file} entry '{cost.entry}' {why}")


def _chain_models(stages: list[StageRun], plan: Plan) -> list[StageRun]:
    """Inputs of a model stage that the previous model stage (its one predecessor) outputs come from it
    (a split model's tensors)."""
    import onnx

    from hil.models.inputs import Generator

    chained = list(stages)
    for k in range(1, len(chained)):
        preds = plan.stages[k].preds
        if len(preds) != 1:
            continue
        before, here = chained[preds[0]], chained[k]
        if here.op != "model" or before.op != "model" or before.model is None:
            continue
        sent = {o.name for o in onnx.load(str(before.model), load_external_data=False).graph.output}
        plans = tuple(replace(p, generator=Generator("previous", before.name)) if p.name in sent else p
                      for p in here.inputs)
        chained[k] = replace(here, inputs=plans)
    return chained


def _score(path: Path, score, where: str, stage: str, problem) -> Optional[tuple[str, int]]:
    import onnx

    outputs = [o.name for o in onnx.load(str(path), load_external_data=False).graph.output]
    if score.output not in outputs:
        problem(f"{where}.output", f"stage '{stage}': {path.name} has no output {score.output!r} (outputs: {outputs})")
        return None
    return score.output, score.index


def _model_input(path: Path) -> Optional[tuple[int, int]]:
    from hil.models import inspect_model

    shape = inspect_model(path).input_shape
    if len(shape) == 4 and shape[1] == 3 and all(isinstance(d, int) and d > 0 for d in shape[2:]):
        return int(shape[2]), int(shape[3])
    return None


def _cores(settings: HilSettings, available: Optional[list[int]], problem) -> dict[str, tuple[int, ...]]:
    """Disjoint core sets of the two sides: as configured, else this process's cores split in halves."""
    cpus = sorted(available if available is not None else os.sched_getaffinity(0))
    front, gpu = settings.cores.front, settings.cores.gpu
    if front is None and gpu is None:
        if len(cpus) < 2:
            problem("hil.cores", f"the two sides need disjoint cores; this process may use only {cpus}")
            return {}
        half = len(cpus) // 2
        return {FRONT: tuple(cpus[:half]), GPU: tuple(cpus[half:])}
    if front is None or gpu is None:
        problem("hil.cores", "give both front and gpu core lists, or neither (then the cores are split in halves)")
        return {}
    for name, cores in ((FRONT, front), (GPU, gpu)):
        missing = sorted(set(cores) - set(cpus))
        if not cores or missing:
            problem(f"hil.cores.{name}", f"cores {missing or cores} are not usable here; this process may use {cpus}")
    if set(front) & set(gpu):
        problem("hil.cores", f"front and gpu cores overlap: {sorted(set(front) & set(gpu))}")
    return {FRONT: tuple(front), GPU: tuple(gpu)}
