"""Perfetto traces of requests crossing devices and links, from the per-request table.

``build_trace`` turns a window (or a sample) of one replication's requests
into tracks and slices:

- every device instance is a process with one track per busy server slot
  (DPU/CPU cores, GPU streams) carrying its batches (``infer x8``: one
  slice for all the requests served together) and one track per queue
  slot carrying each request's wait;
- every link is a process with one track per direction slot carrying each
  request's transfers. A transfer is the gap between the end of the stage
  that produced the data (or the arrival, for the first stage) and the
  enqueue of the stage that consumes it (or the reply's arrival at the
  client): serialisation, contention and latency together;
- each request's slices are joined by flow arrows in causal order: input
  transfer -> wait -> service -> ... -> reply, so ui.perfetto.dev shows a
  request crossing DPU -> link -> GPU -> DPU.

Slots are assigned by packing slices onto the fewest non-overlapping
tracks: the table records which device served a stage, not which of its
cores or streams, so "slot 2" is a lane, not core 2. A hop's link comes
from the table's ``<stage>__link`` column when the table has it, else from
the scenario's links between the two pools (several candidates are named
together: the table does not say which one the channel policy chose).

Two encodings: Chrome trace-event JSON (``write_json``; Perfetto and
chrome://tracing open it) and Perfetto's protobuf (``write_proto``, built
with the ``perfetto`` package's own ``TracePacket`` classes). Both refuse
to produce a file over a size limit, saying how to narrow the window.
Works on measured results too: the harness writes the same table.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from sim.report.columns import StageGraph, pool_of, reply_link, stage_columns

CLIENT = "client"
EPS = 1e-12  # s: gaps shorter than this are no transfer
MAX_BYTES = 64 * 2**20  # refuse traces over 64 MiB: the viewer gets slow, and nobody reads that many slices
SERVED = ("completed", "deadline_missed")


class TraceTooLarge(ValueError):
    """The trace would exceed the size limit; the message says how to narrow it."""


@dataclass
class Slice:
    process: str
    group: str  # tracks of a process are ``<group> <slot>``
    name: str
    start: float
    end: float
    kind: str  # "service", "wait" or "transfer"
    args: dict
    requests: list[int] = field(default_factory=list)
    slot: int = 0


@dataclass(frozen=True)
class Flow:
    """An arrow from one slice of a request to the next one."""

    request: int
    source: int  # index into Trace.slices
    target: int


@dataclass
class Trace:
    variant: str
    replication: int
    window: tuple[float, float]
    requests: int
    slices: list[Slice]
    flows: list[Flow]

    def tracks(self) -> list[tuple[str, str]]:
        """(process, thread) of every track, in a stable order."""
        keys = sorted({(s.process, s.group, s.slot) for s in self.slices})
        return [(process, f"{group} {slot}") for process, group, slot in keys]


def parse_window(text: str) -> tuple[float, float]:
    """``"2s:2.1s"`` -> (2.0, 2.1); ValueError with what was expected."""
    from sim.units import UnitError, parse_duration

    parts = text.split(":")
    if len(parts) != 2:
        raise ValueError(f"expected START:END such as '2s:2.1s', got {text!r}")
    try:
        start, end = (parse_duration(p.strip().replace(" ", "")) for p in parts)
    except UnitError as error:
        raise ValueError(f"{error} (in --window {text!r})") from None
    if not end > start:
        raise ValueError(f"the window's end must be after its start, got {text!r}")
    return start, end


def select_requests(frame: pd.DataFrame, replication: int, window: tuple[float, float], sample: Optional[int],
                    seed: int = 0) -> pd.DataFrame:
    """Requests of one replication arriving inside ``window``; ``sample`` of them at most, drawn at random."""
    rows = frame[(frame["replication"] == replication) & (frame["arrival"] >= window[0])
                 & (frame["arrival"] < window[1])]
    if sample is not None and len(rows) > sample:
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), size=sample, replace=False))
        rows = rows.iloc[keep]
    return rows.reset_index(drop=True)


def _hop_link(a: Optional[str], b: Optional[str], graph: StageGraph, recorded: Optional[str]) -> Optional[str]:
    if recorded:
        return recorded
    if a is None or b is None or a == b:
        return None
    found = graph.links_between(a, b)
    return " or ".join(found) if found else None


def build_trace(rows: pd.DataFrame, graph: StageGraph, variant: str, replication: int,
                window: tuple[float, float]) -> Trace:
    """Slices and flows for the requests in ``rows`` (see ``select_requests``)."""
    stages = stage_columns(rows)
    index = {s.name: k for k, s in enumerate(stages)}
    replies = reply_link(rows)
    ids = rows["id"].to_numpy()
    arrival = rows["arrival"].to_numpy(dtype=float)
    done = rows["done"].to_numpy(dtype=float)
    outcome = rows["outcome"].astype(str).to_numpy()
    slices: list[Slice] = []
    flows: list[Flow] = []
    batches: dict[tuple, int] = {}

    def add(s: Slice) -> int:
        slices.append(s)
        return len(slices) - 1

    def transfer(request: int, a: Optional[str], b: Optional[str], t0: float, t1: float, link: Optional[str],
                 label: str) -> Optional[int]:
        if link is None and not t1 - t0 > EPS:
            return None
        name = link or f"{a}->{b}"
        return add(Slice(f"link {name}", f"{a}->{b}", label, t0, t1, "transfer",
                         {"request": request, "link": name, "from": a, "to": b}, [request]))

    for i, rid in enumerate(ids):
        rid = int(rid)
        reached = [s for s in stages if not (math.isnan(s.start[i]) or math.isnan(s.end[i]))]
        last_slice: dict[str, int] = {}  # stage -> index of its service slice for this request
        for s in reached:
            device = s.device[i]
            pool = pool_of(device)
            preds = [p for p in graph.preds.get(s.name, ()) if p in last_slice]
            enqueued = s.enqueued[i] if not math.isnan(s.enqueued[i]) else s.start[i]
            if preds:
                pred = max(preds, key=lambda p: stages[index[p]].end[i])
                origin, t0, source = pool_of(stages[index[pred]].device[i]), stages[index[pred]].end[i], last_slice[pred]
            else:
                origin, t0, source = CLIENT, arrival[i], None
            recorded = s.link[i] if s.link is not None else None
            hop = transfer(rid, origin, pool, t0, enqueued, _hop_link(origin, pool, graph, recorded),
                           f"{s.name} input")
            chain = [source, hop]
            if s.start[i] - enqueued > EPS:
                chain.append(add(Slice(device or "?", "queue", f"wait {s.name}", enqueued, s.start[i], "wait",
                                       {"request": rid, "stage": s.name}, [rid])))
            batch_id = s.batch[i] if s.batch is not None and not math.isnan(s.batch[i]) else None
            key = (s.name, device, batch_id) if batch_id is not None else (s.name, device, s.start[i], s.end[i])
            if key not in batches:
                args = {"stage": s.name, "device": device}
                if s.batch_size is not None and not math.isnan(s.batch_size[i]):
                    args["batch_size"] = int(s.batch_size[i])
                batches[key] = add(Slice(device or "?", "slot", s.name, s.start[i], s.end[i], "service", args))
            service = batches[key]
            slices[service].requests.append(rid)
            chain.append(service)
            last_slice[s.name] = service
            _link(flows, rid, chain)
        if reached and outcome[i] in SERVED and not math.isnan(done[i]):
            sink = max(reached, key=lambda s: s.end[i])
            recorded = replies[i] if replies is not None else None
            hop = transfer(rid, pool_of(sink.device[i]), CLIENT, sink.end[i], done[i],
                           _hop_link(pool_of(sink.device[i]), CLIENT, graph, recorded), "reply")
            _link(flows, rid, [last_slice[sink.name], hop])
    for s in slices:
        if s.kind == "service":
            n = len(s.requests)
            size = s.args.get("batch_size", n)
            s.name = f"{s.name} x{size}" if size > 1 else s.name
            s.args["requests"] = list(s.requests)
            if size != n:
                s.args["traced"] = n
    _pack(slices)
    return Trace(variant, replication, window, len(ids), slices, flows)


def _link(flows: list[Flow], request: int, chain: list[Optional[int]]) -> None:
    steps = [k for k in chain if k is not None]
    flows.extend(Flow(request, a, b) for a, b in zip(steps, steps[1:]))


def _pack(slices: list[Slice]) -> None:
    """Give each slice the lowest slot of its (process, group) free at its start."""
    groups: dict[tuple[str, str], list[Slice]] = {}
    for s in slices:
        groups.setdefault((s.process, s.group), []).append(s)
    for members in groups.values():
        ends: list[float] = []
        for s in sorted(members, key=lambda s: (s.start, s.end)):
            for slot, end in enumerate(ends):
                if end <= s.start:
                    break
            else:
                slot = len(ends)
                ends.append(0.0)
            ends[slot] = s.end
            s.slot = slot


# --- Chrome trace-event JSON -------------------------------------------------

def _us(seconds: float) -> float:
    return round(seconds * 1e6, 3)


def json_document(trace: Trace) -> dict:
    tracks = trace.tracks()
    processes = sorted({p for p, _ in tracks})
    pid = {p: k + 1 for k, p in enumerate(processes)}
    tid = {t: k + 1 for k, t in enumerate(tracks)}
    events: list[dict] = []
    for p in processes:
        events.append({"ph": "M", "name": "process_name", "pid": pid[p], "tid": 0, "args": {"name": p}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": pid[p], "tid": 0,
                       "args": {"sort_index": pid[p]}})
    for track in tracks:
        events.append({"ph": "M", "name": "thread_name", "pid": pid[track[0]], "tid": tid[track],
                       "args": {"name": track[1]}})
    where = [(pid[s.process], tid[(s.process, f"{s.group} {s.slot}")]) for s in trace.slices]
    for s, (p, t) in zip(trace.slices, where):
        events.append({"ph": "X", "name": s.name, "cat": s.kind, "pid": p, "tid": t, "ts": _us(s.start),
                       "dur": _us(s.end) - _us(s.start), "args": s.args})
    for k, flow in enumerate(trace.flows, start=1):
        a, b = trace.slices[flow.source], trace.slices[flow.target]
        events.append({"ph": "s", "id": k, "name": f"request {flow.request}", "cat": "request",
                       "pid": where[flow.source][0], "tid": where[flow.source][1], "ts": _us((a.start + a.end) / 2)})
        events.append({"ph": "f", "bp": "e", "id": k, "name": f"request {flow.request}", "cat": "request",
                       "pid": where[flow.target][0], "tid": where[flow.target][1], "ts": _us((b.start + b.end) / 2)})
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"variant": trace.variant, "replication": trace.replication,
                          "window": [trace.window[0], trace.window[1]], "requests": trace.requests,
                          "generator": "dgsim trace"}}


def json_bytes(trace: Trace) -> bytes:
    return json.dumps(json_document(trace), separators=(",", ":")).encode()


# --- Perfetto protobuf -------------------------------------------------------

def proto_bytes(trace: Trace) -> bytes:
    """The trace as Perfetto's ``Trace`` protobuf: a track descriptor per process and slot, slice begin/end
    events with flow ids (an arrow's source carries ``flow_ids``, its target ``terminating_flow_ids``)."""
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
    from perfetto.trace_builder.proto_builder import TraceProtoBuilder

    builder = TraceProtoBuilder()
    sequence = 1
    tracks = trace.tracks()
    processes = sorted({p for p, _ in tracks})
    process_uuid = {p: 1000 + k for k, p in enumerate(processes)}
    track_uuid = {t: 100000 + k for k, t in enumerate(tracks)}
    for p in processes:
        packet = builder.add_packet()
        packet.track_descriptor.uuid = process_uuid[p]
        packet.track_descriptor.name = p
    for t in tracks:
        packet = builder.add_packet()
        packet.track_descriptor.uuid = track_uuid[t]
        packet.track_descriptor.parent_uuid = process_uuid[t[0]]
        packet.track_descriptor.name = t[1]
    outgoing: dict[int, list[int]] = {}
    incoming: dict[int, list[int]] = {}
    for k, flow in enumerate(trace.flows, start=1):
        outgoing.setdefault(flow.source, []).append(k)
        incoming.setdefault(flow.target, []).append(k)
    events = []
    for k, s in enumerate(trace.slices):
        uuid = track_uuid[(s.process, f"{s.group} {s.slot}")]
        t0, t1 = round(s.start * 1e9), round(s.end * 1e9)
        events.append((t0, 1, k, uuid, pb.TrackEvent.TYPE_SLICE_BEGIN))
        events.append((t1, 0, k, uuid, pb.TrackEvent.TYPE_SLICE_END))
    events.sort()  # by time; at equal times a slice ends before the next one begins
    first = True
    for ts, _, k, uuid, kind in events:
        packet = builder.add_packet()
        packet.timestamp = ts
        packet.trusted_packet_sequence_id = sequence
        if first:
            packet.sequence_flags = pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
            first = False
        event = packet.track_event
        event.type = kind
        event.track_uuid = uuid
        if kind == pb.TrackEvent.TYPE_SLICE_BEGIN:
            s = trace.slices[k]
            event.name = s.name
            event.categories.append(s.kind)
            event.flow_ids.extend(outgoing.get(k, []))
            event.terminating_flow_ids.extend(incoming.get(k, []))
            for key, value in s.args.items():
                annotation = event.debug_annotations.add()
                annotation.name = key
                if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                    annotation.int_value = int(value)
                else:
                    annotation.string_value = json.dumps(value) if not isinstance(value, str) else value
    return builder.serialize()


FORMATS = {"json": (json_bytes, ".json"), "proto": (proto_bytes, ".pftrace")}


def encode(trace: Trace, fmt: str, limit: int = MAX_BYTES) -> bytes:
    """The trace in ``fmt``; TraceTooLarge if it exceeds ``limit`` bytes."""
    data = FORMATS[fmt][0](trace)
    if len(data) > limit:
        span = trace.window[1] - trace.window[0]
        keep = max(1, int(trace.requests * limit / len(data) * 0.9))
        raise TraceTooLarge(
            f"the trace would be {len(data) / 2**20:.1f} MiB ({trace.requests} requests, {len(trace.slices)} slices), "
            f"over the {limit / 2**20:.0f} MiB limit: narrow --window (now {span * 1e3:g} ms; about "
            f"{span * keep / max(trace.requests, 1) * 1e3:.3g} ms would fit), or add --sample {keep}, "
            f"or raise --max-size")
    return data


def write_trace(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path
