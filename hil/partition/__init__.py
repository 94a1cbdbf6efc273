"""Partitioning a model between the DPU and the GPU (``dgsim partition``; docs/partition.md).

- ``graph``: the model's work nodes in order, what each reads (subgraph reads included), observed values;
- ``cuts``: which tensors cross each position, and the candidate cuts;
- ``costs``: FLOPs and parameter bytes of a segment;
- ``extract``: head and tail models of a cut (``onnx.utils.Extractor``, extended to subgraphs);
- ``verify``: head then tail against the whole model, within a stated tolerance;
- ``partition``: all of the above for one model, and ``cuts.json``;
- ``estimate``: FLOPs -> seconds on each kind's reference part (a cited estimate);
- ``search``: the split scenario at every cut, simulated and ranked;
- ``command``: the command line.
"""
