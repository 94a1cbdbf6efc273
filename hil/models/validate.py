"""Check a user's own ONNX file before a scenario relies on it.

A scenario may name its own model files instead of the built ones. Whatever
goes wrong with such a file (missing, not ONNX, several inputs, integer
input, no batch dimension) should be said once, up front, naming the file,
rather than surface later as an onnxruntime error in the middle of a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

_FLOAT_TYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16"}


class ModelFileError(ValueError):
    """An ONNX file the harness cannot use, and why."""


@dataclass(frozen=True)
class ModelInfo:
    """What the harness needs to know about a usable model file."""

    path: Path
    input_name: str
    input_shape: tuple[int | str | None, ...]  # int: fixed, str: symbolic, None: unknown
    input_type: str
    output_names: tuple[str, ...]

    @property
    def dynamic_batch(self) -> bool:
        return not isinstance(self.input_shape[0], int)


def inspect_model(path: Path) -> ModelInfo:
    """Load ``path`` and check it has one float input with a batch dimension first."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(model)
    except Exception as error:
        raise ModelFileError(f"model file {path} is not a valid ONNX model: {error}") from error
    weights = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise ModelFileError(
            f"model file {path} has {len(inputs)} inputs ({[i.name for i in inputs]}); the harness needs one"
        )
    tensor = inputs[0].type.tensor_type
    if tensor.elem_type not in _FLOAT_TYPES:
        raise ModelFileError(f"model file {path}: input {inputs[0].name!r} is not float32 or float16")
    # a dim_value <= 0 (exporters write -1 for "any") is dynamic, not a fixed size
    shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None)
                  for d in tensor.shape.dim)
    if len(shape) < 2 or shape[0] == 0:
        raise ModelFileError(
            f"model file {path}: input {inputs[0].name!r} of shape {shape} has no leading batch dimension"
        )
    return ModelInfo(
        path, inputs[0].name, shape, _FLOAT_TYPES[tensor.elem_type], tuple(o.name for o in model.graph.output)
    )
