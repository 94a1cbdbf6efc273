"""The real models the harness runs: a prefilter on the DPU, a detector on the GPU.

The pipeline dgsim studies sends camera frames through a cheap classifier
(the *prefilter*, "is anything in this frame?") before the expensive
detector, so the GPU only sees frames that may hold objects. To measure that
pipeline for real the harness needs both models as ONNX files:

- ``synthetic_frames``: seeded camera-like frames, empty or with objects.
- ``prefilter``: a small CNN trained here in numpy on those frames, exported
  to ONNX, with its held-out accuracy and pass rate.
- ``detector``: a YOLOv5-shaped network with random weights whose compute
  cost is real; resolution and width are parameters.
- ``nms``: decoding, confidence threshold and class-aware NMS in numpy.
- ``cache``: build both files once per spec, keyed by its hash, atomically.
- ``validate``: check a user's own ONNX file before a run relies on it.

Nothing here writes files unless asked to, and nothing runs at import.
"""

from hil.models.cache import ModelPaths, ModelSpec, ensure_model, ensure_models, spec_key
from hil.models.detector import DetectorSpec, build_detector
from hil.models.nms import Detections, batched_nms, decode, iou_matrix, nms, postprocess
from hil.models.prefilter import (
    PrefilterScore,
    PrefilterSpec,
    PrefilterWeights,
    build_prefilter,
    evaluate_prefilter,
    predict_numpy,
    prefilter_model,
    prefilter_probabilities,
    train_prefilter,
    weights_from_model,
)
from hil.models.preprocess import to_model_input
from hil.models.synthetic_frames import FrameSet, make_frames
from hil.models.validate import ModelFileError, ModelInfo, inspect_model

__all__ = [
    "Detections",
    "DetectorSpec",
    "FrameSet",
    "ModelFileError",
    "ModelInfo",
    "ModelPaths",
    "ModelSpec",
    "PrefilterScore",
    "PrefilterSpec",
    "PrefilterWeights",
    "batched_nms",
    "build_detector",
    "build_prefilter",
    "decode",
    "ensure_model",
    "ensure_models",
    "evaluate_prefilter",
    "inspect_model",
    "iou_matrix",
    "make_frames",
    "nms",
    "postprocess",
    "predict_numpy",
    "prefilter_model",
    "prefilter_probabilities",
    "spec_key",
    "to_model_input",
    "train_prefilter",
    "weights_from_model",
]
