"""What this machine can run for real, and why not when it cannot.

Every hardware path (GPU, TensorRT, CUDA copies, RDMA) answers one question
before it touches the hardware: *can I run here?* The answer is a
``Capability``: a name, whether it is available, and a sentence a person can
act on (the device found, or the reason it is missing). ``dgsim hil doctor``
prints a list of them; tests turn an unavailable capability into a skip with
its reason.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Capability:
    """One thing the harness may use, and whether it can here."""

    name: str
    available: bool
    detail: str

    def __str__(self) -> str:
        mark = "yes" if self.available else "no"
        return f"{self.name}: {mark} - {self.detail}"
