"""Command-line choices the harness's commands share (``dgsim hil run``, ``dgsim validate``).

``transport_kinds`` turns ``--transport auto|shm|tcp|rdma`` into the channel
kinds this machine can use, adding one problem line per choice it cannot
(with the probe's reason), so commands report every bad option at once.
"""

from __future__ import annotations


def transport_kinds(choice: str, problems: list[str]) -> tuple[str, ...]:
    """The channel kinds ``--transport choice`` means here; problems are appended, not raised."""
    from hil.transports import available_channel_kinds, probe_transports

    capabilities = probe_transports()
    available = available_channel_kinds(capabilities)
    if choice == "auto":
        if not available:
            problems.append("--transport auto: no transport works here (see dgsim hil doctor)")
        return available
    if choice not in available:
        why = "; ".join(c.detail for c in capabilities if c.name.split()[0] == choice and not c.available)
        problems.append(f"--transport {choice}: not available here: {why or 'see dgsim hil doctor'}")
    return (choice,)
