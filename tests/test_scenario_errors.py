"""Bad input through the real command line: exit code 2, one line per
problem on stderr naming the file, the field and what was expected, and
never a Python traceback.

Every bad file is a small valid scenario (two pools, cpu and gpu, a PCIe
link, a two-stage pipeline) with one thing broken. One fixture runs all
the bad inputs (see ``DRIVER``), then every test reads its own result.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml

VALID = {
    "name": "tiny",
    "hardware": {
        "pools": {"cpu": {"profile": "host-cpu", "servers": 2}, "gpu": {"profile": "a100"}},
        "links": [{"name": "pcie", "between": ["cpu", "gpu"], "profile": "pcie-gen4-x16"}],
    },
    "workload": {"sources": [{"name": "reqs", "kind": "poisson", "rate": "50/s", "payload": "10 KB"}]},
    "pipeline": {
        "stages": [
            {"name": "pre", "costs": {"cpu": {"kind": "deterministic", "value": "1 ms"}}},
            {"name": "infer", "costs": {"gpu": {"kind": "deterministic", "value": "2 ms"}}},
        ]
    },
    "policies": {"placement": {"strategy": "cpu-path"}},
    "run": {"duration": "0.3 s", "warmup": "0.1 s", "drain": "0.1 s", "seed": 1, "replications": 1},
}


def _set(path: str, value) -> Callable[[dict], None]:
    """An edit that sets one dotted path (list items by index) in the document."""

    def edit(doc: dict) -> None:
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return edit


@dataclass(frozen=True)
class Case:
    """One bad input: how to make it, and what each reported line must say."""

    edits: tuple[Callable[[dict], None], ...] = ()
    args: tuple[str, ...] = ()  # extra command-line arguments
    text: str | None = None  # raw file text instead of VALID with edits
    file: str | None = "scenario.yaml"  # None: a file that does not exist
    expect: tuple[tuple[str, ...], ...] = ()  # per line: fragments it must contain
    one_line: bool = True  # exactly one line per expected problem, nothing else


def _variants(doc: dict) -> None:
    doc["variants"] = {"one": {}, "two": {"policies": {"routing": {"kind": "shortest-queue"}}}}


CASES: dict[str, Case] = {
    "valid": Case(),
    "wrong-type": Case(
        edits=(_set("hardware.pools.cpu.count", "many"),),
        expect=(("hardware.pools.cpu.count", "valid integer", "'many'"),),
    ),
    "unknown-key": Case(
        edits=(_set("hardware.pools.cpu.colour", "red"),),
        expect=(("hardware.pools.cpu.colour", "unknown key 'colour'",
                 "expected one of: profile, count, servers, speed"),),
    ),
    "unknown-top-level-key": Case(
        edits=(_set("runs", {"seed": 3}),),
        expect=(("runs", "unknown key 'runs'", "hardware", "workload", "pipeline", "run"),),
    ),
    "missing-unit": Case(
        edits=(_set("workload.sources.0.payload", 10),),
        expect=(("workload.sources[0]", "payload", "expected a size with a unit", "'1.2 MB'", "10"),),
    ),
    "missing-unit-in-string": Case(
        edits=(_set("run.duration", "5"),),
        expect=(("run.duration", "missing unit", "duration", "'2.5 ms'"),),
    ),
    "negative-rate": Case(
        edits=(_set("workload.sources.0.rate", "-5/s"),),
        expect=(("workload.sources[0]", "rate", "greater than 0", "-5"),),
    ),
    "missing-required-field": Case(
        edits=(lambda d: d["hardware"]["pools"]["gpu"].pop("profile"),),
        expect=(("hardware.pools.gpu.profile", "required field is missing"),),
    ),
    "dag-cycle": Case(
        edits=(_set("pipeline.stages.0.after", ["infer"]),),
        expect=(("pipeline.stages", "cycle", "pre -> infer -> pre"),),
    ),
    "stage-on-kind-without-cost": Case(
        edits=(_set("policies.placement.map", {"infer": "cpu"}),),
        expect=(("pipeline.stages[1].costs", "'infer'", "pool 'cpu'", "no cpu cost", "costs for: gpu"),),
    ),
    "unknown-device-profile": Case(
        edits=(_set("hardware.pools.gpu.profile", "a9000"),),
        expect=(("hardware.pools.gpu.profile", "unknown device profile 'a9000'", "expected one of:", "a100"),),
        one_line=False,  # see test_unknown_device_profile_is_reported_once
    ),
    "unknown-link-profile": Case(
        edits=(_set("hardware.links.0.profile", "pcie-gen9"),),
        expect=(("hardware.links[0].profile", "unknown link profile 'pcie-gen9'", "expected one of:",
                 "pcie-gen4-x16"),),
    ),
    "missing-link": Case(
        edits=(_set("hardware.links", []),),
        expect=(("hardware.links", "no link between 'cpu' and 'gpu'", "'pre' -> 'infer'", "add one"),),
    ),
    "unknown-variant": Case(
        edits=(_variants,),
        args=("--variant", "nope"),
        expect=(("variants", "no variant 'nope'", "known: one, two"),),
    ),
    "malformed-set": Case(
        args=("--set", "run.seed"),
        expect=(("--set", "run.seed", "expected dotted.path=value"),),
    ),
    "set-into-a-value": Case(
        args=("--set", "run.seed.x=3"),
        expect=(("--set", "run.seed", "is a value, not a section"),),
    ),
    "yaml-syntax-error": Case(
        text="name: tiny\nhardware:\n  pools: {cpu: {profile: host-cpu}\nworkload: []\n",
        expect=(("line ", "not valid YAML"),),
    ),
    "not-a-mapping": Case(
        text="- just\n- a list\n",
        expect=(("expected a mapping of sections",),),
    ),
    "missing-file": Case(
        file=None,
        expect=(("does-not-exist.yaml", "file not found"),),
    ),
    "several-problems": Case(
        edits=(
            _set("hardware.pools.cpu.count", "many"),
            _set("workload.sources.0.payload", 10),
            _set("run.colour", 1),
        ),
        expect=(
            ("hardware.pools.cpu.count", "valid integer"),
            ("workload.sources[0]", "payload", "with a unit"),
            ("run.colour", "unknown key 'colour'", "duration, warmup, drain, seed, replications"),
        ),
    ),
    "several-reference-problems": Case(
        edits=(
            _set("hardware.links.0.profile", "pcie-gen9"),
            _set("policies.batching", {"ghost": {"kind": "dynamic", "max_batch": 4}}),
            _set("run.warmup", "1 s"),
        ),
        expect=(
            ("hardware.links[0].profile", "pcie-gen9"),
            ("policies.batching.ghost", "unknown stage", "infer, pre"),
            ("run.warmup", "shorter than run.duration"),
        ),
    ),
    # Once bugs (fixed): a crash on an unknown 'after', and one line per variant for a shared problem.
    "unknown-after-stage": Case(
        edits=(_set("pipeline.stages.1.after", ["nothing"]),),
        expect=(("pipeline.stages[1].after", "unknown stage 'nothing'", "pre, infer"),),
    ),
    "problem-shared-by-variants": Case(
        edits=(_variants, _set("hardware.pools.cpu.count", "many")),
        expect=(("hardware.pools.cpu.count", "valid integer"),),
    ),
}


def _dgsim() -> list[str]:
    exe = shutil.which("dgsim")
    return [exe] if exe else [sys.executable, "-m", "sim.cli"]


# Starting Python and importing dgsim costs seconds per process, so the bad
# inputs run in processes forked from one driver that has imported the CLI
# once. Each child runs ``sim.cli.main()`` (what the ``dgsim`` script runs)
# with its own argv, working directory, stdout and stderr; an exception that
# escapes ``main()`` goes through ``sys.excepthook`` and exits 1, as it would
# in a fresh ``dgsim`` process. One test below also runs the real ``dgsim``
# script, to check that it reports exactly as its forked twin does.
DRIVER = r"""
import json, os, sys
from sim.cli import main
import sim.experiment, sim.results, sim.report.table, sim.scenario.load  # what `run` imports

results = {}
for name, (argv, cwd, out, err) in json.loads(sys.argv[1]).items():
    pid = os.fork()
    if pid == 0:
        os.chdir(cwd)
        for fd, path in ((1, out), (2, err)):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        sys.argv = ["dgsim", *argv]
        code = 0
        try:
            main()
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException:
            sys.excepthook(*sys.exc_info())
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    results[name] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
print(json.dumps(results))
"""


@dataclass(frozen=True)
class Result:
    path: str  # the scenario path as given on the command line
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def _write_case(folder: Path, case: Case) -> Path:
    if case.file is None:
        return folder / "does-not-exist.yaml"
    path = folder / case.file
    if case.text is not None:
        path.write_text(case.text)
    else:
        doc = copy.deepcopy(VALID)
        for edit in case.edits:
            edit(doc)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, Result]:
    root = tmp_path_factory.mktemp("bad-scenarios")
    jobs, paths = {}, {}
    for name, case in CASES.items():
        folder = root / name
        folder.mkdir()
        paths[name] = str(_write_case(folder, case))
        argv = ["run", paths[name], "--out", str(folder / "out"), "--jobs", "1", *case.args]
        jobs[name] = (argv, str(folder), str(folder / "stdout"), str(folder / "stderr"))
    if not hasattr(os, "fork"):
        pytest.skip("the forking driver needs os.fork (POSIX)")
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(jobs)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr
    codes = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        name: Result(paths[name], codes[name], Path(out).read_text(), Path(err).read_text())
        for name, (_, _, out, err) in jobs.items()
    }


@pytest.mark.slow  # starts the installed dgsim script in a subprocess
def test_the_real_dgsim_script_reports_a_bad_file_the_same_way(results, tmp_path):
    path = _write_case(tmp_path, CASES["unknown-key"])
    done = subprocess.run([*_dgsim(), "run", str(path), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [
        f"error: {path}: hardware.pools.cpu.colour: unknown key 'colour'; "
        "expected one of: profile, count, servers, speed, background"
    ]
    twin = results["unknown-key"]
    assert twin.returncode == done.returncode
    assert [line.replace(twin.path, str(path)) for line in twin.lines] == lines


def test_the_valid_base_scenario_runs(results):
    # the bad files below differ from this one only by what they break
    result = results["valid"]
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert (Path(result.path).parent / "out" / "summary.json").is_file()


CHECKED = [name for name in CASES if name not in ("valid", "unknown-after-stage", "problem-shared-by-variants")]


@pytest.mark.parametrize("name", CHECKED)
def test_bad_input_exits_2_with_one_readable_line_per_problem(results, name):
    case, result = CASES[name], results[name]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == 2, result.stderr
    lines = result.lines
    assert lines, "nothing on stderr"
    if case.one_line:
        assert len(lines) == len(case.expect), lines
    for fragments in case.expect:
        matching = [line for line in lines if all(f in line for f in fragments)]
        assert matching, f"no line has all of {fragments}: {lines}"
    where = "--set" if name in ("malformed-set", "set-into-a-value") else result.path
    for line in lines:
        assert line.startswith("error: ")
        assert where in line, line
    assert not (Path(result.path).parent / "out").exists()  # nothing written


def test_every_problem_is_reported_at_once(results):
    # three independent schema problems, and three cross-reference problems: each file, one run
    assert len(results["several-problems"].lines) == 3
    assert len(results["several-reference-problems"].lines) == 3


def test_after_naming_an_unknown_stage_is_a_clean_error(results):
    result = results["unknown-after-stage"]
    assert "Traceback" not in result.stderr + result.stdout
    assert result.returncode == 2
    assert any("pipeline.stages[1].after" in line and "unknown stage 'nothing'" in line for line in result.lines)


def test_unknown_device_profile_is_reported_once(results):
    assert len(results["unknown-device-profile"].lines) == 1


def test_a_problem_shared_by_every_variant_is_reported_once(results):
    result = results["problem-shared-by-variants"]
    assert result.returncode == 2
    assert len(result.lines) == 1, result.lines


# --- the corpus of known-bad files (tests/bad_inputs) ----------------------
#
# Each file says in its first lines what it breaks, the fragments its one
# error line must hold ("# expect: a | b | c") and any extra arguments
# ("# args: --set ..."). Every file here once ended in a traceback, a hang,
# a silent fallback or a meaningless run; now each gives exactly one line
# and exit 2, from `dgsim run` and (a sample) from check, hil run and validate.

BAD_INPUTS = Path(__file__).parent / "bad_inputs"


@dataclass(frozen=True)
class BadFile:
    path: Path
    expect: tuple[str, ...]
    args: tuple[str, ...]


def _bad_files() -> dict[str, BadFile]:
    import shlex

    out = {}
    for path in sorted(BAD_INPUTS.glob("*.yaml")):
        head = path.read_bytes()[:4000].decode("latin-1").splitlines()
        meta = {line[2:].partition(":")[0]: line[2:].partition(":")[2].strip()
                for line in head if line.startswith("# ") and ":" in line}
        out[path.stem] = BadFile(path, tuple(f.strip() for f in meta["expect"].split("|")),
                                 tuple(shlex.split(meta.get("args", ""))))
    return out


BAD_FILES = _bad_files()
# The same bad files through the other commands that load scenarios.
OTHER_COMMANDS = {
    "check": ("check",),
    "hil-run": ("hil", "run"),
    "validate": ("validate", "--calibration", str(Path(__file__).parents[1] / "docs/examples/calibration-quick.yaml")),
}
SAMPLE = ("alias-bomb", "not-utf8", "duplicate-key", "trace-ragged", "variant-name-int", "duration-1e999",
          "bad-set-yaml", "cost-on-wrong-kind")


def _run_forked(jobs: dict[str, tuple[list[str], str, str, str]]) -> dict[str, int]:
    if not hasattr(os, "fork"):
        pytest.skip("the forking driver needs os.fork (POSIX)")
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(jobs)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Result]:
    root = tmp_path_factory.mktemp("bad-inputs")
    jobs = {}
    runs = [(name, "run", ("run",)) for name in BAD_FILES]
    runs += [(name, command, argv) for command, argv in OTHER_COMMANDS.items() for name in SAMPLE]
    for name, command, argv in runs:
        case = BAD_FILES[name]
        folder = root / f"{command}-{name}"
        folder.mkdir()
        out = ("--out", str(folder / "out")) if command in ("run", "hil-run") else ()
        jobs[f"{command}:{name}"] = ([*argv, str(case.path), *out, *case.args], str(folder),
                                     str(folder / "stdout"), str(folder / "stderr"))
    codes = _run_forked(jobs)
    return {key: Result(str(BAD_FILES[key.partition(":")[2]].path), codes[key], Path(o).read_text(),
                        Path(e).read_text(errors="replace")) for key, (_, _, o, e) in jobs.items()}


def test_the_corpus_covers_every_kind_of_bad_input():
    kinds = {"alias-bomb", "deep-nesting", "duplicate-key", "not-utf8", "nul-bytes", "bad-set-yaml",
             "replications-true", "duration-1e999", "speed-inf", "cv-nan", "variant-name-int",
             "variant-stage-name-list", "variant-stage-name-map", "calibration-binary", "trace-non-numeric",
             "trace-ragged", "trace-header-only", "trace-nan", "trace-nul", "trace-latin1", "rate-1e9-fps",
             "replications-1e20", "count-huge", "streams-huge", "cost-on-wrong-kind"}
    assert kinds <= set(BAD_FILES), kinds - set(BAD_FILES)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_known_bad_file_gives_one_line_and_exit_2(corpus, name):
    case, result = BAD_FILES[name], corpus[f"run:{name}"]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(result.lines) == 1, result.lines
    line = result.lines[0]
    assert line.startswith("error: ")
    assert str(case.path) in line or "--set" in line, line
    missing = [f for f in case.expect if f not in line]
    assert not missing, f"{missing} not in {line!r}"


@pytest.mark.slow  # starts the harness and validate commands per file (run's own corpus test stays fast)
@pytest.mark.parametrize("command", sorted(OTHER_COMMANDS))
@pytest.mark.parametrize("name", SAMPLE)
def test_check_hil_and_validate_report_a_bad_file_as_run_does(corpus, command, name):
    result, as_run = corpus[f"{command}:{name}"], corpus[f"run:{name}"]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.lines == as_run.lines


# --- limits of the reader, checked directly --------------------------------


def _write_doc(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_file_larger_than_the_limit_is_refused_unread(tmp_path):
    from sim.scenario.load import load_scenario_file
    from sim.scenario.safe_yaml import MAX_FILE_BYTES
    from sim.scenario.errors import ScenarioError

    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(VALID) + "# " + "x" * MAX_FILE_BYTES + "\n")
    with pytest.raises(ScenarioError, match=r"big.yaml: larger than 1,000,000 bytes"):
        load_scenario_file(path)


def test_yaml_anchors_and_merge_keys_within_the_limits_still_work(tmp_path):
    from sim.scenario.load import load_scenario_file

    text = yaml.safe_dump(VALID, sort_keys=False)
    text += ("variants:\n  one: {hardware: {pools: {cpu: &four {servers: 4, count: 2}}}}\n"
             "  two: {hardware: {pools: {cpu: {<<: *four, servers: 3}}}}\n")  # a merge key, then one key overridden
    scenario = load_scenario_file(_text(tmp_path, text))
    assert scenario.resolve("one").hardware.pools["cpu"].servers == 4
    assert (scenario.resolve("two").hardware.pools["cpu"].servers, scenario.resolve("two").hardware.pools["cpu"].count) == (3, 2)


def _text(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def test_a_duplicate_key_inside_a_set_value_is_refused(tmp_path):
    from sim.scenario.errors import ScenarioError
    from sim.scenario.load import load_scenario_file

    with pytest.raises(ScenarioError) as caught:
        load_scenario_file(_write_doc(tmp_path / "s.yaml", VALID), ["run={seed: 1, seed: 2}"])
    assert [str(p) for p in caught.value.problems] == [
        "--set: run: the value '{seed: 1, seed: 2}' is not valid: duplicate key 'seed' (first set on line 1); "
        "expected each key once"]


# --- costs say which profile they were measured on (issue 9, item 7) -------


def _on_l4(cost: dict) -> dict:
    doc = copy.deepcopy(VALID)
    doc["hardware"]["pools"]["gpu"]["profile"] = "l4"
    doc["pipeline"]["stages"][1]["costs"]["gpu"] = cost
    doc["run"] = {"duration": "4 s", "warmup": "0.5 s", "drain": "0.5 s", "seed": 1, "replications": 1}
    doc["workload"]["sources"][0]["rate"] = "20/s"
    return doc


def test_a_cost_measured_on_the_pools_own_profile_is_taken_as_typed(tmp_path):
    # the user's case: 10 ms measured on an L4, run on an L4. Read as an A100 figure it took
    # 10 ms / 0.30 = 33 ms; measured on the L4 it takes the 10 ms it was measured to take.
    from sim.experiment import run_replication
    from sim.profiles import DEVICES
    from sim.scenario.load import load_scenario_file

    loaded = load_scenario_file(_write_doc(tmp_path / "s.yaml", _on_l4(
        {"kind": "deterministic", "value": "10 ms", "on": "l4"})))
    plan = loaded.plan("base")
    assert plan.stages[1].costs["gpu"].mean(1) == pytest.approx(10e-3 * DEVICES["l4"].speed)  # as on an A100
    _, metrics = run_replication(plan, 0)
    assert metrics["stage.infer.service"] == pytest.approx(10e-3)


def test_every_cost_kind_is_scaled_by_the_profiles_relative_speed(tmp_path):
    from sim.profiles import DEVICES
    from sim.scenario.load import load_scenario_file

    ratio = DEVICES["t4"].speed  # measured on a T4, run on an L4: the same work on a faster part
    for cost, mean in [
        ({"kind": "exponential", "mean": "10 ms"}, 10e-3),
        ({"kind": "lognormal", "mean": "10 ms", "cv": 0.5}, 10e-3),
        ({"kind": "empirical", "samples": ["5 ms", "15 ms"]}, 10e-3),
        ({"kind": "affine", "base": "4 ms", "per_item": "6 ms"}, 10e-3),
    ]:
        plan = load_scenario_file(_write_doc(tmp_path / "s.yaml", _on_l4({**cost, "on": "t4"}))).plan("base")
        scaled = plan.stages[1].costs["gpu"]
        assert scaled.mean(1) == pytest.approx(mean * ratio), cost
        assert scaled.on == "a100"  # the plan's costs are all relative to the reference part


def test_the_resolved_scenario_names_the_reference_of_every_cost(tmp_path):
    from sim.scenario.load import load_scenario_file

    scenario = load_scenario_file(_write_doc(tmp_path / "s.yaml", VALID)).resolve("base")
    dumped = scenario.model_dump(mode="json", by_alias=True)["pipeline"]["stages"]
    assert [s["costs"] for s in dumped] == [
        {"cpu": {"on": "host-cpu", "kind": "deterministic", "value": "1 ms"}},
        {"gpu": {"on": "a100", "kind": "deterministic", "value": "2 ms"}},
    ]


def test_a_link_latency_cannot_name_a_device_profile(tmp_path):
    from sim.scenario.errors import ScenarioError
    from sim.scenario.load import load_scenario_file

    doc = copy.deepcopy(VALID)
    doc["hardware"]["links"][0]["latency"] = {"kind": "deterministic", "value": "1 us", "on": "l4"}
    with pytest.raises(ScenarioError, match=r"hardware.links\[0\].latency: 'on' names the device profile"):
        load_scenario_file(_write_doc(tmp_path / "s.yaml", doc))
