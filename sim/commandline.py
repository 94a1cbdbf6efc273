"""What every ``dgsim`` command shares: one line per problem, exit 2.

Command modules (``dgsim run``, ``check``, ``hil ...``, ``validate``) import
this library, never each other. ``fail_input`` prints one ``error: ...``
line per problem on stderr and exits 2; ``scenario_overrides`` turns the
common options into ``dotted.path=value`` overrides; ``run_app`` runs a
typer app so that a bad option value (``--seed abc``, ``--jobs 0``) gets
the same one-line error and exit 2 instead of click's usage box.

Exit codes of every command: 0 success, 1 a check failed, 2 invalid input,
130 interrupted (SIGINT), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Iterator, NoReturn, Optional, Sequence

import typer
from typer._click import exceptions as _click  # typer vendors click: its errors are these classes
from rich.console import Console

INVALID_INPUT = 2


def error_line(text: str) -> None:
    """One ``error: ...`` line on stderr."""
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[red]error:[/red] {text}", markup=True)


def fail_input(lines: Sequence[str]) -> NoReturn:
    """Print one line per problem to stderr and exit 2."""
    for line in lines:
        error_line(str(line))
    raise typer.Exit(INVALID_INPUT)


def scenario_overrides(seed: Optional[int], duration: Optional[str], replications: Optional[int],
                       sets: Optional[Sequence[str]]) -> list[str]:
    """Command-line options as ``dotted.path=value`` overrides."""
    out = list(sets or [])
    if seed is not None:
        out.append(f"run.seed={seed}")
    if duration is not None:
        out.append(f"run.duration={duration}")
    if replications is not None:
        out.append(f"run.replications={replications}")
    return out


def run_app(app: typer.Typer, args: Optional[Sequence[str]] = None, prog: str = "dgsim") -> int:
    """Run ``app`` and return its exit code; a usage error is one ``error:`` line and exit 2.

    SIGTERM raises ``Interrupted`` in every command (exit 143 after the command's own clean-up, such as
    terminating worker processes); Ctrl-C stays Python's KeyboardInterrupt (exit 130), which commands
    like ``dgsim hil run`` catch to keep what was measured.
    """
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        code = app(args=list(args) if args is not None else None, prog_name=prog, standalone_mode=False)
    except Interrupted as stop:
        error_line(f"{stop.name}: stopped")
        return stop.exit_code
    except _click.NoArgsIsHelpError as error:  # bare ``dgsim``: its help, as click prints it
        print(error.format_message())
        return INVALID_INPUT
    except _click.UsageError as error:  # bad option values, unknown options, missing arguments
        where = error.ctx.command_path if error.ctx is not None else prog
        error_line(f"{where}: {_one_line(error.format_message())} (see '{where} --help')")
        return INVALID_INPUT
    except _click.ClickException as error:
        error_line(_one_line(error.format_message()))
        return error.exit_code or INVALID_INPUT
    except typer.Abort:  # Ctrl-C at a prompt, or KeyboardInterrupt that nothing caught
        error_line("interrupted")
        return 128 + signal.SIGINT
    except KeyboardInterrupt:
        error_line("interrupted")
        return 128 + signal.SIGINT
    finally:
        signal.signal(signal.SIGTERM, previous)
    return code if isinstance(code, int) else 0


def _raise_interrupted(signum, frame) -> None:
    raise Interrupted(signum)


def _one_line(text: str) -> str:
    return " ".join(text.split())


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: the command stops, cleans up and exits 130 or 143."""

    def __init__(self, signum: int):
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(self.name)


@contextmanager
def interruptible() -> Iterator[None]:
    """Within the block SIGINT and SIGTERM raise ``Interrupted`` (main thread only)."""

    previous = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
