"""Hardware-in-the-loop harness: run dgsim's pipelines for real.

The harness executes the same pipeline a scenario describes, with real ONNX
models (onnxruntime, or TensorRT on a GPU), real transports (shared memory,
TCP, RDMA, CUDA copies) and the very policy objects of ``sim.policies``.
Its results use the simulator's output format, so every table and check
works on measured data as on simulated data.

``hil`` imports ``sim``; ``sim`` never imports ``hil``.
"""
