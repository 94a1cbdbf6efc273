"""Writes the known-bad files of tests/bad_inputs (they are committed; run this to regenerate them).

Each file starts with comment lines: what it breaks, "expect:" the fragments its
one error line must hold (separated by |), and "args:" any extra command-line arguments.
"""
import copy
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_scenario_errors import VALID  # noqa: E402

out = Path(__file__).resolve().parent
BASE = copy.deepcopy(VALID)
BASE["run"] = {"duration": "0.2 s", "warmup": "0.05 s", "drain": "0.1 s", "seed": 1, "replications": 1}

def dump(doc):
    return yaml.safe_dump(doc, sort_keys=False)

def write(name, expect, body, args="", what=""):
    head = f"# {what}\n# expect: {expect}\n" + (f"# args: {args}\n" if args else "")
    data = head.encode() + (body if isinstance(body, bytes) else body.encode())
    (out / f"{name}.yaml").write_bytes(data)

def edited(fn):
    doc = copy.deepcopy(BASE); fn(doc); return dump(doc)

# --- YAML safety
bomb = 'lol: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
prev = "a"
for n in "bcdefghi":
    bomb += f"{n}: &{n} [" + ",".join(["*" + prev] * 9) + "]\n"; prev = n
bomb += dump(BASE).replace("name: tiny", "name: tiny\ndescription: *i", 1)
write("alias-bomb", "expands to more than | aliases", bomb, what="billion laughs: 9 levels of 9 aliases (~4e8 strings)")
deep = dump(BASE) + "description: " + "[" * 3000 + "]" * 3000 + "\n"
write("deep-nesting", "nested more than 64 levels", deep, what="3000 nested lists")
write("duplicate-key", "line 44 | duplicate key 'replications' in run | first set on line 43", dump(BASE).replace("replications: 1", "replications: 1\n  replications: 5"), what="a key given twice (YAML forbids it; PyYAML kept the last)")
write("not-utf8", "line | byte 0xe9 is not UTF-8", dump(BASE).encode().replace(b"name: tiny", b"name: tiny\ndescription: caf\xe9", 1), what="Latin-1 text")
write("nul-bytes", "contains a NUL byte", dump(BASE).encode().replace(b"name: tiny", b"name: tiny\x00\x00", 1), what="NUL bytes in a name")
write("bad-set-yaml", "--set | run.seed | not valid", dump(BASE), args="--set run.seed=[1,", what="a --set value that is not YAML")
# --- strict types and finite numbers
write("replications-true", "run.replications | valid integer | True", edited(lambda d: d["run"].update(replications=True)), what="a boolean where a count is expected")
write("seed-float", "run.seed | valid integer | 3.0", edited(lambda d: d["run"].update(seed=3.0)), what="a float where an integer is expected (strict: 3.0 is not 3)")
write("duration-1e999", "run.duration | too large | finite", edited(lambda d: d["run"].update(duration="1e999 s")), what="a duration that is infinite once read")
write("payload-1e999", "payload | too large | finite", edited(lambda d: d["workload"]["sources"][0].update(payload="1e999 MB")), what="an infinite size")
write("speed-inf", "hardware.pools.gpu.speed | finite", edited(lambda d: d["hardware"]["pools"]["gpu"].update(speed=float("inf"))), what="an infinite device speed")
def gamma(d):
    d["workload"]["sources"][0].update(kind="gamma")
write("cv-nan", "cv | finite", edited(lambda d: d["workload"]["sources"][0].update(kind="gamma", cv=float("nan"))), what="a NaN coefficient of variation")
write("cost-value-1e999", "value | too large | finite", edited(lambda d: d["pipeline"]["stages"][0]["costs"]["cpu"].update(value="1e999 ms")), what="an infinite stage cost")
write("cost-cv-inf", "pipeline.stages[0].costs.cpu | cv | finite", edited(lambda d: d["pipeline"]["stages"][0]["costs"].update(cpu={"kind": "lognormal", "mean": "1 ms", "cv": float("inf")})), what="an infinite cv in a cost")
write("pass-probability-true", "pass_probability | valid number", edited(lambda d: d["pipeline"]["stages"][0].update(pass_probability=True)), what="a boolean probability")
# --- variants
def int_variant(d):
    d["variants"] = {"one": {}, 2: {"run": {"seed": 3}}}
write("variant-name-int", "variants.2 | variant name must be text", edited(int_variant), what="a variant named by a number")
def list_name(d):
    d["variants"] = {"one": {"pipeline": {"stages": [{"name": ["infer"], "costs": {"gpu": "3 ms"}}]}}}
write("variant-stage-name-list", "pipeline.stages[0].name | valid string", edited(list_name), what="a variant's list item whose name is a list")
def map_name(d):
    d["variants"] = {"one": {"pipeline": {"stages": [{"name": {"a": 1}, "costs": {"gpu": "3 ms"}}]}}}
write("variant-stage-name-map", "pipeline.stages[0].name | valid string", edited(map_name), what="a variant's list item whose name is a mapping")
# --- huge values
write("rate-1e9-fps", "workload.sources[0] | rate | at most", edited(lambda d: d["workload"]["sources"][0].update(kind="periodic", rate="1e9 fps")), what="a camera at a billion frames per second")
write("poisson-rate-huge", "workload.sources[0] | rate | less than or equal to", edited(lambda d: d["workload"]["sources"][0].update(rate="1e12/s")), what="a Poisson source at 1e12/s")
write("replications-1e20", "run.replications | less than or equal to 10000", edited(lambda d: d["run"].update(replications=10**20)), what="10^20 replications")
write("count-huge", "hardware.pools.cpu.count | less than or equal to", edited(lambda d: d["hardware"]["pools"]["cpu"].update(count=10**9)), what="a billion devices")
write("streams-huge", "workload.sources[0].streams | less than or equal to", edited(lambda d: d["workload"]["sources"][0].update(kind="periodic", rate="30 fps", streams=10**9)), what="a billion cameras")
# --- costs measured on a profile
write("cost-on-wrong-kind", "pipeline.stages[1].costs.gpu.on | 'bluefield-3' is a dpu profile | l4", edited(lambda d: d["pipeline"]["stages"][1]["costs"]["gpu"].update(on="bluefield-3")), what="a gpu cost measured on a DPU")
write("cost-on-unknown", "pipeline.stages[1].costs.gpu.on | unknown device profile 'rtx-9090'", edited(lambda d: d["pipeline"]["stages"][1]["costs"]["gpu"].update(on="rtx-9090")), what="a cost measured on a profile dgsim does not know")
# --- calibration file
write("calibration-binary", "calibration file | calibration/binary.yaml | NUL byte", edited(lambda d: d["pipeline"]["stages"][1]["costs"].update(gpu={"kind": "calibrated", "file": "calibration/binary.yaml", "entry": "infer"})), what="a calibration file that is binary")
(out / "calibration" / "binary.yaml").write_bytes(bytes(range(256)) * 4)
write("calibration-duplicate-key", "calibration file | calibration/duplicate.yaml | duplicate key 'format'", edited(lambda d: d["pipeline"]["stages"][1]["costs"].update(gpu={"kind": "calibrated", "file": "calibration/duplicate.yaml", "entry": "infer"})), what="a calibration file with a key given twice")
(out / "calibration" / "duplicate.yaml").write_text("format: dgsim-calibration/1\nformat: dgsim-calibration/1\n")
# --- trace CSVs
traces = {
    "non-numeric": ("timestamp,size\n0.01,100\nsoon,200\n", "time_column | non-numeric.csv | column 'timestamp', row 2 | 'soon'"),
    "ragged": ("timestamp,size\n0.01,100\n0.02,200,7\n", "file | ragged.csv | header's 2 fields | line 3"),
    "short-row": ("timestamp,size\n0.01,100\n0.02\n", "size_column | short-row.csv | column 'size', row 2 | empty value"),
    "header-only": ("timestamp,size\n", "file | header-only.csv | header but no rows"),
    "nan": ("timestamp,size\n0.01,100\nNaN,200\n", "time_column | nan.csv | row 2 | finite | 'NaN'"),
    "nul": ("timestamp,size\n0.01,100\n0.02\x00,200\n", "file | nul.csv | line 3 | NUL byte"),
    "latin1": (b"timestamp,size,note\n0.01,100,caf\xe9\n", "file | latin1.csv | line 2 | 0xe9 is not UTF-8"),
    "negative-size": ("timestamp,size\n0.01,100\n0.02,-5\n", "size_column | negative-size.csv | row 2 | >= 0 | '-5'"),
    "empty": ("", "file | empty.csv | is empty"),
}
for name, (text, expect) in traces.items():
    (out / "traces" / f"{name}.csv").write_bytes(text if isinstance(text, bytes) else text.encode())
    write(f"trace-{name}", "workload.sources[0]." + expect, edited(lambda d, n=name: d["workload"].update(sources=[{"name": "replay", "kind": "trace", "file": f"traces/{n}.csv", "size_column": "size"}])), what=f"trace CSV: {name}")
# --- the size of a run, judged before it starts (dgsim run --max-work)
write("work-too-large", "estimated work 1.2e+08 | above the limit | 6e+07 arrivals x 2 stages x 1 replications | --max-work", edited(lambda d: (d["workload"]["sources"][0].update(rate="1e5/s"), d["run"].update(duration="10 min"))), what="1e5 requests/s for 10 minutes: valid, but 1.2e8 request-stages (hours of simulation)")
write("arrivals-beyond-memory", "workload.sources | about 3.6e+11 arrivals | at most 2e+08 per replication", edited(lambda d: (d["workload"]["sources"][0].update(rate="1e8/s"), d["run"].update(duration="1 h"))), what="1e8 requests/s (the schema's bound) for an hour: more arrivals than memory holds, refused even with --max-work", args="--max-work 1e15")
