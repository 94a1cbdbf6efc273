"""The engine's event heap: a compiled one where it was built, else ``heapq`` on a list.

Both hold SimPy's heap entries, ``(time, priority, id, event)``, and the engine's timers,
``(time, priority, id, function, args)``, and pop them in (time, priority, id) order; ids are
unique, so the order is total and both give the same sequence, entry for entry. The compiled
heap (``sim/model/_heap.pyx``, built by ``pip install``; docs/model.md, "The compiled event
heap") compares keys in C and runs the dispatch loop in C; ``PythonHeap`` is the same heap in
Python, used where the extension was not built (no C compiler) or when asked for
(``Engine(compiled=False)``).
"""

from __future__ import annotations

from functools import partial
from heapq import heappop, heappush
from typing import Callable, Optional, Protocol

try:
    from sim.model._heap import CompiledHeap
except ImportError:  # not built: the pure-Python heap below does the same
    CompiledHeap = None

COMPILED = CompiledHeap is not None  # whether this installation has the compiled heap


class EventHeap(Protocol):
    """What the engine needs of its heap."""

    def push(self, entry: tuple) -> None: ...

    def pop(self) -> tuple: ...

    def __len__(self) -> int: ...

    def first_time(self) -> float: ...

    def run(self, engine, stop: float, stop_id: int, dispatch: Callable) -> None: ...


class PythonHeap:
    """``heapq`` on a list, with the compiled heap's interface."""

    def __init__(self) -> None:
        self._entries: list[tuple] = []
        self.push = partial(heappush, self._entries)  # (a C partial: no Python frame per push)
        self.pop = partial(heappop, self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def first_time(self) -> float:
        return self._entries[0][0] if self._entries else float("inf")

    def run(self, engine, stop: float, stop_id: int, dispatch: Callable) -> None:
        queue = self._entries
        while queue:
            head = heappop(queue)
            when = head[0]
            if when >= stop and (when > stop or head[1] > 0 or head[2] > stop_id):  # 0: simpy's URGENT
                heappush(queue, head)  # (keys are unique: the heap pops the same order as if it had stayed)
                break
            engine.now = when
            if head[-1].__class__ is tuple:  # a timer: its args last (an event's entry ends with the event)
                head[3](*head[4])
            else:
                dispatch(head[3])


def new_heap(compiled: Optional[bool] = None) -> EventHeap:
    """The compiled heap where built (``compiled=None`` or True), else (or with False) ``PythonHeap``;
    ``compiled=True`` where it was not built is an error."""
    if compiled is None:
        compiled = COMPILED
    if not compiled:
        return PythonHeap()
    if CompiledHeap is None:
        raise RuntimeError("the compiled event heap (sim/model/_heap.pyx) was not built in this installation; "
                           "reinstall with a C compiler (pip install -e .) or use the pure-Python heap")
    return CompiledHeap()
