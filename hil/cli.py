"""``dgsim hil ...``: the hardware harness's commands.

Registered into the ``dgsim`` command through the ``dgsim.cli`` entry point,
so the simulator's CLI never imports the harness.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

hil_app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="Run pipelines for real: onnxruntime/TensorRT, shm/TCP/RDMA transports.")


@hil_app.command()
def doctor() -> None:
    """List what this machine can run for real, and why not where it cannot."""
    from hil.doctor import capabilities

    table = Table(title="dgsim hil doctor: what this machine can run", title_justify="left")
    table.add_column("capability")
    table.add_column("available")
    table.add_column("detail")
    for capability in capabilities():
        mark = "[green]yes[/green]" if capability.available else "[red]no[/red]"
        table.add_row(capability.name, mark, capability.detail)
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(hil_app, name="hil")
