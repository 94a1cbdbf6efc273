"""``dgsim trace``: Perfetto traces read back and checked for structure.

One tiny simulation (video-analytics-64, dpu-offload, 2 s, 2 replications)
is traced over a 100 ms window in both encodings. The JSON trace is read
back and checked: every slice on a named track, slices on a track never
overlapping, flow events paired and bound to slices, and each request's
slices in causal order crossing DPU -> link -> GPU -> link -> DPU. The
protobuf trace is parsed with Perfetto's own message classes and checked
the same way. Perfetto's trace processor loads it where its binary is
installed (it cannot be downloaded here).
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sim.cli import app

TINY = ["--duration", "2 s", "--set", "run.replications=2", "-j", "1"]
EPS_US = 1e-3  # timestamps are written with ns resolution, in microseconds


def dgsim(*args):
    return CliRunner().invoke(app, [*map(str, args)])


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trace") / "run"
    done = dgsim("run", "video-analytics-64", "--variant", "dpu-offload", *TINY, "--out", out)
    assert done.exit_code == 0, done.output
    return out


@pytest.fixture(scope="module")
def json_trace(results) -> dict:
    out = results / "t.json"
    done = dgsim("trace", results, "--variant", "dpu-offload", "--window", "1.2s:1.3s", "--out", out)
    assert done.exit_code == 0, done.output
    assert "MiB" in done.output and "requests" in done.output  # the file size is stated
    return json.loads(out.read_text())


def _slices(document: dict) -> list[dict]:
    return [e for e in document["traceEvents"] if e["ph"] == "X"]


def test_every_slice_is_on_a_named_track_and_tracks_do_not_overlap(json_trace):
    events = json_trace["traceEvents"]
    threads = {(e["pid"], e["tid"]) for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    processes = {e["pid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    slices = _slices(json_trace)
    assert slices
    by_track = defaultdict(list)
    for s in slices:
        assert (s["pid"], s["tid"]) in threads and s["pid"] in processes
        assert s["dur"] >= 0
        by_track[s["pid"], s["tid"]].append(s)
    for track in by_track.values():
        track.sort(key=lambda s: s["ts"])
        for a, b in zip(track, track[1:]):
            assert b["ts"] >= a["ts"] + a["dur"] - EPS_US, (a, b)
    names = set(processes.values())
    assert {"dpu[0]", "gpu[0]", "link dpu-shm", "link net-dpu"} <= names


def test_flow_events_are_paired_and_bound_to_slices(json_trace):
    events = json_trace["traceEvents"]
    flows = [e for e in events if e["ph"] in ("s", "f")]
    assert flows
    kinds = Counter((e["id"], e["ph"]) for e in flows)
    ids = {e["id"] for e in flows}
    assert all(kinds[i, "s"] == 1 and kinds[i, "f"] == 1 for i in ids)
    slices = defaultdict(list)
    for s in _slices(json_trace):
        slices[s["pid"], s["tid"]].append(s)

    def enclosing(e):
        found = [s for s in slices[e["pid"], e["tid"]] if s["ts"] - EPS_US <= e["ts"] <= s["ts"] + s["dur"] + EPS_US]
        assert len(found) == 1, e
        return found[0]

    start = {e["id"]: e for e in flows if e["ph"] == "s"}
    for finish in (e for e in flows if e["ph"] == "f"):
        assert finish["bp"] == "e"
        source, target = enclosing(start[finish["id"]]), enclosing(finish)
        # causal: a request's next slice never starts before its previous one ends
        assert target["ts"] >= source["ts"] + source["dur"] - EPS_US, (source, target)


def _requests(json_trace) -> dict[int, list[dict]]:
    out = defaultdict(list)
    for s in _slices(json_trace):
        for rid in s["args"].get("requests", [s["args"].get("request")]):
            out[rid].append(s)
    return out


def test_each_requests_slices_are_in_causal_order(json_trace):
    processes = {e["pid"]: e["args"]["name"] for e in json_trace["traceEvents"] if e["name"] == "process_name"}
    requests = _requests(json_trace)
    assert len(requests) == json_trace["otherData"]["requests"]
    crossed = 0
    for rid, slices in requests.items():
        slices.sort(key=lambda s: (s["ts"], s["dur"]))
        for a, b in zip(slices, slices[1:]):
            assert b["ts"] >= a["ts"] + a["dur"] - EPS_US, (rid, a, b)
        path = [processes[s["pid"]] for s in slices]
        # a served request of dpu-offload: in over the network, DPU stages, the tensor over shared memory
        # (its size band), GPU, the batch's results back over shared memory or RDMA, DPU, reply
        if "gpu[0]" in path:
            crossed += 1
            assert path[0] == "link net-dpu" and path[-1] == "link net-dpu", path
            g = path.index("gpu[0]")
            assert "link dpu-shm" in path[:g] and "dpu[0]" in path[:g], path
            assert {"link dpu-shm", "link rdma"} & set(path[g:]) and "dpu[0]" in path[g:], path
    assert crossed > 0  # some requests passed the prefilter and crossed to the GPU


def test_a_sample_bounds_the_requests(results):
    out = results / "sample.json"
    done = dgsim("trace", results, "--variant", "dpu-offload", "--window", "1s:2s", "--sample", "7", "--out", out)
    assert done.exit_code == 0, done.output
    assert json.loads(out.read_text())["otherData"]["requests"] == 7


def test_a_trace_over_the_size_limit_is_refused_with_how_to_narrow_it(results):
    out = results / "big.json"
    done = dgsim("trace", results, "--variant", "dpu-offload", "--window", "0s:2s", "--max-size", "0.05", "--out", out)
    assert done.exit_code == 2
    assert "narrow --window" in done.output and "--sample" in done.output
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--variant", "nope", "--window", "1s:2s"], "no variant 'nope'"),
    (["--variant", "dpu-offload", "--window", "2s"], "START:END"),
    (["--variant", "dpu-offload", "--window", "2s:1s"], "after its start"),
    (["--variant", "dpu-offload", "--window", "20s:21s"], "no request"),
])
def test_bad_input_is_one_line_and_exit_2(results, args, message):
    done = dgsim("trace", results, *args)
    assert done.exit_code == 2 and message in done.output, done.output
    assert "Traceback" not in done.output


@pytest.fixture(scope="module")
def proto_trace(results):
    pb = pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2",
                             reason="the 'perfetto' package is not installed (pip install perfetto)")
    out = results / "t.pftrace"
    done = dgsim("trace", results, "--variant", "dpu-offload", "--window", "1.2s:1.3s", "--format", "proto",
                 "--out", out)
    assert done.exit_code == 0, done.output
    trace = pb.Trace()
    trace.ParseFromString(out.read_bytes())
    return pb, trace, out


def test_proto_trace_has_tracks_balanced_slices_and_paired_flows(proto_trace, json_trace):
    pb, trace, _ = proto_trace
    described = {p.track_descriptor.uuid for p in trace.packet if p.HasField("track_descriptor")}
    open_on: dict[int, list] = defaultdict(list)
    begun, flows_out, flows_end = 0, Counter(), Counter()
    last = -1
    for packet in (p for p in trace.packet if p.HasField("track_event")):
        event = packet.track_event
        assert event.track_uuid in described
        assert packet.timestamp >= last  # written in time order
        last = packet.timestamp
        if event.type == pb.TrackEvent.TYPE_SLICE_BEGIN:
            assert not open_on[event.track_uuid]  # slices on a track never overlap
            open_on[event.track_uuid].append(packet.timestamp)
            begun += 1
            flows_out.update(event.flow_ids)
            flows_end.update(event.terminating_flow_ids)
        else:
            assert open_on[event.track_uuid].pop() <= packet.timestamp
    assert not any(open_on.values())
    assert begun == len(_slices(json_trace))
    assert set(flows_out) == set(flows_end)
    assert all(flows_out[i] == 1 and flows_end[i] == 1 for i in flows_out)
    flow_count = sum(1 for e in json_trace["traceEvents"] if e["ph"] == "s")
    assert len(flows_out) == flow_count


def test_trace_processor_counts_slices_and_flows(proto_trace, json_trace):
    binary = os.environ.get("PERFETTO_TRACE_PROCESSOR") or shutil.which("trace_processor_shell")
    if not binary:
        pytest.skip("Perfetto's trace_processor_shell is not installed; the perfetto package downloads it on first "
                    "use, which this machine cannot (set PERFETTO_TRACE_PROCESSOR to a local binary)")
    from perfetto.trace_processor import TraceProcessor, TraceProcessorConfig

    _, _, path = proto_trace
    with TraceProcessor(trace=str(path), config=TraceProcessorConfig(bin_path=binary)) as tp:
        slices = next(iter(tp.query("select count(*) as n from slice"))).n
        flows = next(iter(tp.query("select count(*) as n from flow"))).n
    assert slices == len(_slices(json_trace))
    assert flows == sum(1 for e in json_trace["traceEvents"] if e["ph"] == "s")


def test_tables_of_the_first_scheme_trace_alike(results, json_trace, tmp_path):
    """A table with dotted per-stage names and no batch or link columns (dgsim-requests/1, older
    results): batches are grouped by device and times, links taken from the scenario."""
    import pandas as pd

    frame = pd.read_parquet(results / "requests" / "dpu-offload.parquet")
    old = frame[[c for c in frame.columns
                 if "__" not in c or c.rsplit("__", 1)[1] in ("enqueued", "start", "end", "device")]]
    old = old.drop(columns=[c for c in ("variant", "reply_link") if c in old.columns])
    old.columns = [c.replace("__", ".") for c in old.columns]
    folder = tmp_path / "old"
    (folder / "requests").mkdir(parents=True)
    old.to_parquet(folder / "requests" / "dpu-offload.parquet")
    shutil.copytree(results / "resolved", folder / "resolved")
    shutil.copy(results / "summary.json", folder / "summary.json")
    done = dgsim("trace", folder, "--variant", "dpu-offload", "--window", "1.2s:1.3s", "--out", folder / "t.json")
    assert done.exit_code == 0, done.output
    document = json.loads((folder / "t.json").read_text())
    assert document["otherData"]["requests"] == json_trace["otherData"]["requests"]
    names = {e["args"]["name"] for e in document["traceEvents"] if e["name"] == "process_name"}
    assert {"link net-dpu", "gpu[0]"} <= names
    assert "link dpu-grpc or dpu-shm or rdma" in names  # unrecorded: the links the hop may have taken
    flows = sum(1 for e in document["traceEvents"] if e["ph"] == "s")
    assert flows == sum(1 for e in json_trace["traceEvents"] if e["ph"] == "s")
