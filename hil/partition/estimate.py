"""Estimated segment times from FLOPs: an ESTIMATE, labelled as such wherever it is used.

dgsim's device profiles (``sim/profiles.py``) give each part a speed
relative to the reference part of its kind, not a FLOP rate, and a stage's
cost is written for the reference part. So the estimate is FLOPs over an
*effective* rate of each kind's reference part, derived from a published
whole-model latency (FLOPs of that model / its latency; these already
include the kernels' real efficiency, launch overheads and memory traffic
for that model, and are optimistic for small or memory-bound segments):

| kind | reference part | effective rate | derivation |
|---|---|---|---|
| gpu | A100 (``a100``, speed 1.0) | 23.8 TFLOP/s | YOLOv8s 640, batch 1, TensorRT: 1.20 ms for 28.6 GFLOPs (ultralytics docs, YOLOv8 model page; hardware-facts.md) |
| dpu | one BlueField-3 Cortex-A78 core (``bluefield-3``) | 117 GFLOP/s | proxy: Jetson AGX Orin A78AE, ncnn ResNet-18 1 thread 31.1 ms (Tencent/ncnn benchmark README); ResNet-18 = 1.82 GMACs = 3.64 GFLOPs (torchvision model docs). Proxy part, low confidence |
| cpu | one host core (``host-cpu``) | 223 GFLOP/s | YOLOv8s 640 ONNX on CPU: 128.4 ms for 28.6 GFLOPs (ultralytics docs); the core count of that measurement is not published, so this whole-CPU figure is optimistic for one core |

A segment with no counted FLOPs (shape arithmetic, element-wise tails) is
given ``FLOOR_S`` (10 us): an operator call is never free.
"""

from __future__ import annotations

EFFECTIVE_FLOPS = {"gpu": 28.6e9 / 1.20e-3, "dpu": 3.64e9 / 31.1e-3, "cpu": 28.6e9 / 128.4e-3}
FLOOR_S = 10e-6


def estimate_seconds(flops: int, kind: str) -> float:
    """Estimated seconds of ``flops`` on the reference part of ``kind`` (an estimate, see the table)."""
    return max(flops / EFFECTIVE_FLOPS[kind], FLOOR_S)
