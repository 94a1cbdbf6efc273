"""Everything the harness could use on this machine, in one list.

Gathers the probes of the backends (onnxruntime providers, GPUs, TensorRT)
and of the transports (shared memory, TCP, RDMA devices and ports, CUDA
copies). No probe raises: a missing piece is a ``Capability`` with the
reason, which ``dgsim hil doctor`` prints and tests turn into skips.
"""

from __future__ import annotations

from hil.probe import Capability


def capabilities() -> list[Capability]:
    from hil.backends import probe_backends
    from hil.transports import probe_transports

    return [*probe_backends(), *probe_transports()]
