"""Calibrate a scenario: time its stages and transports here, write the calibration file.

``calibrate_scenario`` lays one variant of a scenario out as ``dgsim hil
run`` would (``hil.runner.layout``: the ``hil`` section's model sizes,
frames and cores; models built or reused in its cache), then measures:

1. each transport between the two sides: shm and TCP, RDMA where a port is
   active (``transport``, ping-pong against message size), and the CPU time
   each side of it spends per message and byte (``host_cost``);
2. CUDA host-to-device copies where a GPU is usable (latency and host CPU time);
3. the harness's own per-request overhead (``harness``, through the runner);
4. every real stage with the runner's own op (``stages``).

The ping-pongs fork their echo processes, so they run before anything
starts CUDA or onnxruntime in this process. Entries are named
``transport.<kind>``, ``host.<kind>.send`` / ``host.<kind>.receive``,
``harness.overhead`` and after the stages.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import socket
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from hil.calibrate.fit import affine_entry
from hil.calibrate.harness import harness_overhead
from hil.calibrate.host_cost import FULL_EFFORT, QUICK_EFFORT, Effort, cuda_host_cost, host_cost_entries
from hil.calibrate.measure import FULL, QUICK, Settings, measure, pinned
from hil.calibrate.stages import stage_entries
from hil.calibrate.transport import FULL_SIZES, QUICK_SIZES, transport_entry
from hil.runner.layout import FRONT, GPU, build_models, lay_out
from sim.calibration import CalibrationFile, Method, Provenance, unstable_entries, write_calibration
from sim.scenario.load import ScenarioFile, load_scenario_file

Report = Callable[[str], None]


@dataclass(frozen=True)
class CalibrateOptions:
    """What to measure and how; the defaults measure everything, thoroughly.

    Model sizes, frames and cores come from the scenario's ``hil`` section,
    as for ``dgsim hil run``.
    """

    quick: bool = False  # CI: batch sizes 1, 2, 4; four message sizes; short windows
    max_batch: Optional[int] = None  # largest batch of batched stages (default: the scenario's max_batch)
    backend: str = "auto"  # the GPU side's engine, as dgsim hil run --backend
    transports: Optional[tuple[str, ...]] = None  # default: shm, tcp, and rdma / cuda where probed
    sizes: Optional[tuple[int, ...]] = None  # message sizes in bytes (default by mode)
    settings: Optional[Settings] = None  # default FULL, or QUICK with quick
    host_effort: Optional[Effort] = None  # messages per size of the host-cost measurement (default by mode)
    host_burst: int = 1  # host costs: messages back to back per timed round (1: one at a time)

    @property
    def rule(self) -> Settings:
        return self.settings or (QUICK if self.quick else FULL)

    @property
    def effort(self) -> Effort:
        effort = self.host_effort or (QUICK_EFFORT if self.quick else FULL_EFFORT)
        return dataclasses.replace(effort, burst=self.host_burst) if self.host_burst > 1 else effort


def default_variant(scenario_file: ScenarioFile) -> str:
    """The variant that places the most stages (the first of those), so the most stages get measured."""
    def placed(name: str) -> int:
        return len(scenario_file.plan(name).stages)

    return max(scenario_file.variant_names, key=placed)


def calibrate_scenario(scenario_file: str | Path, variant: Optional[str] = None, out: Optional[str | Path] = None,
                       options: CalibrateOptions = CalibrateOptions(), overrides: Sequence[str] = (),
                       report: Report = lambda _: None, command: str = "") -> CalibrationFile:
    """Measure the scenario's stages and this host's transports; write ``out`` if given.

    Raises ScenarioError for a scenario the harness cannot lay out here.
    """
    loaded = load_scenario_file(Path(scenario_file), overrides)
    variant = variant or default_variant(loaded)
    label = f"{loaded.path} (variant {variant})"
    layout = lay_out(loaded.plan(variant), variant, label)
    load_start = os.getloadavg()[0]
    rule = options.rule
    front, gpu = layout.cores[FRONT], layout.cores[GPU]
    notes = [f"front side (DPU stand-in) on cores {list(front)}, GPU side on cores {list(gpu)}"]
    if options.quick:
        notes.append("quick mode (CI): batch sizes 1, 2, 4 only, so batch fits extrapolate beyond 4; "
                     f"message sizes {', '.join(map(str, options.sizes or QUICK_SIZES))} B; short windows")
    entries: dict = {}

    kinds = options.transports or channel_kinds()
    sizes = options.sizes or (QUICK_SIZES if options.quick else FULL_SIZES)
    for kind in (k for k in kinds if k != "cuda"):
        entries[f"transport.{kind}"] = transport_entry(kind, sizes, rule, front[0], gpu[0], report)
        entries.update(host_cost_entries(kind, sizes, options.effort, front[0], gpu[0], report))
    overhead = harness_overhead(layout.scenario, tuple(k for k in kinds if k != "cuda"), rule, label)
    entries["harness.overhead"] = overhead
    report(f"harness.overhead: mean {overhead.sample_mean * 1e6:.0f} us over {overhead.n} requests")
    if "cuda" in kinds or options.transports is None:
        cuda = _cuda_entry(sizes, rule, gpu[0], report, required="cuda" in kinds)
        if cuda is not None:
            entries["transport.cuda"] = cuda
            entries["host.cuda.send"] = cuda_host_cost(sizes, options.effort, gpu[0], report)

    report(f"models: {Path(layout.settings.cache) / 'models'} (new sizes train the prefilter first: up to a minute)")
    stages, skipped = stage_entries(build_models(layout), options.backend, rule, options.quick, options.max_batch,
                                    report)
    entries.update(stages)
    notes.extend(skipped)

    unstable = unstable_entries(entries)
    if unstable:
        notes.append(f"never stabilised (3 consecutive windows within {rule.tolerance:.0%} not reached in at most "
                     f"{rule.max_windows} windows): {', '.join(unstable)}")
    calibration = CalibrationFile(
        format="dgsim-calibration/1",
        provenance=provenance(str(scenario_file), variant, command, (load_start, os.getloadavg()[0]), notes),
        method=Method(warmup_s=rule.warmup_s, window_samples=rule.window_samples, window_s=rule.window_s,
                      max_windows=rule.max_windows, consecutive=rule.consecutive, tolerance=rule.tolerance,
                      quick=options.quick),
        entries=entries,
    )
    if out is not None:
        write_calibration(calibration, out)
    return calibration


def channel_kinds() -> tuple[str, ...]:
    """shm (where /dev/shm is writable), tcp, and rdma where a port is active; cuda is probed later."""
    from hil.transports import SHM_DIR
    from hil.transports.rdma import probe_rdma

    kinds = ["shm"] if os.access(SHM_DIR, os.W_OK) else []
    kinds.append("tcp")
    if any(c.available for c in probe_rdma()):
        kinds.append("rdma")
    return tuple(kinds)


def _cuda_entry(sizes: Sequence[int], rule: Settings, core: int, report: Report, required: bool):
    """Host-to-device copies (pinned staging + cudaMemcpyAsync), where a GPU is usable."""
    from hil.transports.cuda_copy import DeviceStager, probe_cuda

    capability = probe_cuda()
    if not capability.available:
        if required:
            raise RuntimeError(f"transport 'cuda' requested but not available: {capability.detail}")
        report(f"transport.cuda: skipped ({capability.detail})")
        return None
    points = []
    with pinned([core]), DeviceStager(max(sizes)) as stager:
        for size in sizes:
            payload = np.zeros(size, np.uint8)
            points.append((float(size), measure(lambda: stager.to_device(payload).total_s, rule)))
            report(f"transport cuda {size} B: mean {points[-1][1].mean * 1e6:.1f} us")
    return affine_entry(points, "bytes", "host-to-device copy: into pinned staging, then cudaMemcpyAsync, wall "
                        f"clock to stream synchronised ({capability.detail}); core {core}")


def provenance(scenario: str, variant: str, command: str, load: tuple[float, float], notes: list[str]) -> Provenance:
    return Provenance(
        host=socket.gethostname(),
        cpu_model=cpu_model(),
        cores=os.cpu_count() or 1,
        versions=versions(),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        scenario=scenario,
        variant=variant,
        command=command,
        load_average=(round(load[0], 2), round(load[1], 2)),
        notes=notes,
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for package in ("onnxruntime", "onnx", "dgsim"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    out["platform"] = f"{platform.system()} {platform.release()} {platform.machine()}"
    return out
