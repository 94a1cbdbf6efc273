"""Where simulations run: this process, worker processes on this machine, or a Dask cluster.

An executor runs one picklable function over a list of items and returns
one ``Done`` per item, in the items' order whatever order they finished
in, so results (and the bytes written from them) never depend on the
number of workers or on scheduling. A failed item carries its error
instead of a value; the others are kept.

- ``Serial``: in this process, one item after another;
- ``Processes``: ``jobs`` worker processes on this machine (forkserver);
- ``DaskCluster``: ``dask.distributed``. ``local`` starts a LocalCluster on
  this machine; ``tcp://HOST:PORT`` connects to a running scheduler, and
  fails within seconds, with one line, when none answers. Dask is an
  optional extra (``pip install 'dgsim[dask]'``).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Sequence

Finished = Optional[Callable[[int], None]]  # called with an item's index as it finishes

CONNECT_TIMEOUT_S = 5


@dataclass(frozen=True)
class Done:
    value: Any = None
    error: Optional[str] = None  # "ExceptionType: message" when the item failed


class ExecutorError(Exception):
    """An executor that cannot be started or reached (one line)."""


class Executor(Protocol):
    workers: int

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any], finished: Finished = None) -> list[Done]: ...

    def close(self) -> None: ...


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


class Serial:
    workers = 1

    def run(self, fn, items, finished: Finished = None) -> list[Done]:
        out = []
        for index, item in enumerate(items):
            try:
                out.append(Done(fn(item)))
            except Exception as error:  # a failed item is reported, the others still run
                out.append(Done(error=_describe(error)))
            if finished:
                finished(index)
        return out

    def close(self) -> None:
        pass


class Processes:
    """``jobs`` worker processes, started on first use and kept until ``close``."""

    def __init__(self, jobs: int):
        self.workers = jobs
        self._pool: Optional[ProcessPoolExecutor] = None

    def run(self, fn, items, finished: Finished = None) -> list[Done]:
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["sim.experiment"])
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        futures = {self._pool.submit(fn, item): index for index, item in enumerate(items)}
        out: list[Optional[Done]] = [None] * len(items)
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = futures[future]
                    error = future.exception()
                    out[index] = Done(error=_describe(error)) if error else Done(future.result())
                    if finished:
                        finished(index)
        except BaseException:
            for future in pending:
                future.cancel()
            self.close()
            raise
        return out  # type: ignore[return-value]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class DaskCluster:
    """A ``dask.distributed`` client: on a LocalCluster it started, or on a running scheduler."""

    def __init__(self, address: str, workers: int = 2, processes: bool = True):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ExecutorError("--dask needs dask.distributed: pip install 'dgsim[dask]'") from None
        self._cluster = None
        import logging

        try:
            if address == "local":
                self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                                             dashboard_address=None, silence_logs=logging.ERROR)
                self._client = Client(self._cluster)
            else:
                if not address.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
                    raise ExecutorError(f"--dask: expected 'local' or a scheduler address such as "
                                        f"tcp://HOST:8786, got '{address}'")
                self._client = Client(address, timeout=f"{CONNECT_TIMEOUT_S}s")
        except ExecutorError:
            raise
        except (OSError, TimeoutError) as error:
            raise ExecutorError(f"--dask {address}: no Dask scheduler answered within {CONNECT_TIMEOUT_S} s "
                                f"({_describe(error)}); start one with 'dask scheduler'") from None
        except ValueError as error:
            raise ExecutorError(f"--dask {address}: not a usable scheduler address ({_describe(error)})") from None
        self.workers = max(1, len(self._client.scheduler_info().get("workers", {})))

    def run(self, fn, items, finished: Finished = None) -> list[Done]:
        from distributed import as_completed

        futures = self._client.map(fn, list(items), pure=False)
        index_of = {future.key: i for i, future in enumerate(futures)}
        out: list[Optional[Done]] = [None] * len(futures)
        for future in as_completed(futures):
            index = index_of[future.key]
            if future.status == "error":
                out[index] = Done(error=_describe(future.exception()))
            else:
                out[index] = Done(future.result())
            future.release()
            if finished:
                finished(index)
        return out  # type: ignore[return-value]

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_executor(dask: Optional[str], jobs: int, workers: int = 2) -> Executor:
    """Dask when ``dask`` is set ('local' or an address), else ``jobs`` local processes."""
    if dask:
        return DaskCluster(dask, workers)
    return Processes(jobs) if jobs > 1 else Serial()
