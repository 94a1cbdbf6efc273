"""Candidate cut points: places where one set of tensors separates the model.

With the work nodes in topological order, cutting after the k-th gives a
head (nodes 0..k-1) and a tail (k..). The tensors that *cross* are the
values made by the head, or fed to the model, that the tail still reads or
that are outputs of the model: the head sends exactly these, the tail
takes exactly these, and tail(head(x)) is the model. A model input the
tail reads (a recurrent state, a sample rate) crosses too: the head passes
it through.

Every position has such a set; a *candidate* is a position whose crossing
set holds at most ``max_tensors`` computed tensors larger than
``small_bytes`` (shape vectors, scalars and model inputs passed through
travel but do not count). Among consecutive
candidates with the same head FLOPs (nothing heavy between them) only the
one with the fewest crossing bytes is kept, and if more than ``max_cuts``
remain, an evenly spread selection by head FLOPs is kept. Cuts are named
``cut-<k>``: the number of work nodes in the head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hil.partition.costs import constant_bytes, node_flops
from hil.partition.graph import ModelGraph


@dataclass(frozen=True)
class CutRules:
    max_tensors: int = 1
    small_bytes: int = 64
    max_cuts: int = 16


@dataclass(frozen=True)
class Cut:
    """One candidate: what crosses, and what each side costs."""

    name: str
    position: int  # number of work nodes in the head
    after_node: str  # the last head node (name or op#index)
    crossing: tuple[str, ...]
    crossing_bytes: dict[str, int] = field(hash=False)
    head_flops: int
    tail_flops: int
    head_param_bytes: int
    tail_param_bytes: int

    @property
    def bytes(self) -> int:
        return sum(self.crossing_bytes.values())


def node_label(graph: ModelGraph, index: int) -> str:
    node = graph.nodes[index]
    return node.name or f"{node.op_type}#{index}"


def crossing_sets(graph: ModelGraph) -> list[tuple[str, ...]]:
    """For k = 0..len(work), the values crossing a cut after the first k work nodes."""
    produced_at = {name: -1 for name in graph.inputs}
    last_use: dict[str, float] = {}
    for k, index in enumerate(graph.work):
        for name in graph.nodes[index].output:
            if name:
                produced_at[name] = k
        for name in graph.reads[index]:
            if name in produced_at or name in graph.inputs:
                last_use[name] = max(last_use.get(name, -1), k)
    for name in graph.outputs:
        last_use[name] = math.inf
    sets = []
    for k in range(len(graph.work) + 1):
        # produced before position k (by head nodes 0..k-1, or a model input) and read at or after k
        sets.append(tuple(n for n, p in produced_at.items() if p < k and last_use.get(n, -1) >= k
                          and n not in graph.constants))
    return sets


def find_cuts(graph: ModelGraph, rules: CutRules = CutRules()) -> list[Cut]:
    """The candidate cuts of ``graph`` (observed first), in topological order."""
    flops = [node_flops(graph, graph.nodes[i]) for i in graph.work]
    consts = [graph.const_closure(graph.reads[i]) for i in graph.work]
    prefix = [0]
    for f in flops:
        prefix.append(prefix[-1] + f)
    total = prefix[-1]
    sets = crossing_sets(graph)
    chosen: list[Cut] = []
    for k in range(1, len(graph.work)):
        crossing = sets[k]
        sizes = {n: graph.values[n].nbytes for n in crossing}
        computed = [n for n in crossing if n not in graph.inputs and sizes[n] > rules.small_bytes]
        if len(computed) > rules.max_tensors:
            continue
        if set(crossing) <= set(graph.inputs):
            continue  # nothing computed yet crosses: an empty head
        head_consts = set().union(*consts[:k])
        tail_consts = set().union(*consts[k:])
        cut = Cut(f"cut-{k}", k, node_label(graph, graph.work[k - 1]), crossing, sizes, prefix[k], total - prefix[k],
                  constant_bytes(graph, head_consts), constant_bytes(graph, tail_consts))
        if chosen and chosen[-1].head_flops == cut.head_flops:
            if cut.bytes < chosen[-1].bytes:
                chosen[-1] = cut
            continue
        chosen.append(cut)
    return spread(chosen, rules.max_cuts)


def spread(cuts: list[Cut], limit: int) -> list[Cut]:
    """At most ``limit`` cuts, evenly spread over the head's share of the FLOPs."""
    if len(cuts) <= limit:
        return cuts
    total = max(cuts[-1].head_flops + cuts[-1].tail_flops, 1)
    keep: set[int] = set()
    for j in range(limit):
        target = total * (j + 0.5) / limit
        best = min((i for i in range(len(cuts)) if i not in keep), key=lambda i: abs(cuts[i].head_flops - target))
        keep.add(best)
    return [cuts[i] for i in sorted(keep)]
