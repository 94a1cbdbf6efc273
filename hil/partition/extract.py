"""Head and tail models of a cut, extracted with ``onnx.utils.Extractor``.

The head's inputs are the model's inputs and its outputs the crossing
tensors; the tail's inputs are the crossing tensors and its outputs the
model's outputs. ``onnx.utils.Extractor`` finds the nodes between those
names and copies their initializers; ``SegmentExtractor`` extends it to
If/Loop/Scan nodes, whose subgraphs read names of the enclosing graph that
the stock extractor does not follow. Segment inputs and outputs are
declared with the dtypes and shapes observed on the partition's inputs.
"""

from __future__ import annotations

import onnx
import onnx.utils

from hil.partition.cuts import Cut
from hil.partition.graph import ModelGraph, node_reads


class SegmentExtractor(onnx.utils.Extractor):
    """``onnx.utils.Extractor`` that also follows the outer-scope reads of subgraphs."""

    def _dfs_search_reachable_nodes(self, node_output_name, graph_input_names, reachable) -> None:
        stack = [node_output_name]
        while stack:
            name = stack.pop()
            if name in graph_input_names or name not in self.outmap:
                continue
            index = self.outmap[name]
            if index not in reachable:
                reachable.add(index)
                stack += node_reads(self.graph.node[index])

    def _collect_reachable_tensors(self, nodes):
        initializer, value_info = super()._collect_reachable_tensors(nodes)
        have = {t.name for t in initializer}
        outer = set().union(*(node_reads(n) for n in nodes)) if nodes else set()
        initializer += [self.initializers[n] for n in sorted(outer) if n in self.initializers and n not in have]
        return initializer, value_info


def segments(graph: ModelGraph, cut: Cut) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """The (head, tail) models of ``cut``, checked by ``onnx.checker``."""
    extractor = SegmentExtractor(graph.model)
    for name in (*graph.inputs, *cut.crossing, *graph.outputs):
        extractor.value_infos[name] = graph.value_info(name)
    head = extractor.extract_model(list(graph.inputs), list(cut.crossing))
    tail = extractor.extract_model(list(cut.crossing), list(graph.outputs))
    for part, side in ((head, "head"), (tail, "tail")):
        part.graph.name = f"{graph.graph.name or graph.path.stem} {cut.name} {side}"
        part.producer_name = "dgsim partition"
        onnx.checker.check_model(part)
    return head, tail
