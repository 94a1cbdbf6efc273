"""The event engine: a SimPy ``Environment`` with a leaner loop and callback timers.

The model is written in SimPy and stays so: every event lives in the
environment's one heap, ordered by (time, priority, id) exactly as
``simpy.Environment.schedule`` orders it, and processes (the failure
injector's) and SimPy events work as usual. What this subclass takes away is
per-event overhead the model does not need, in the way SimPy's own
``RealtimeEnvironment`` subclasses ``Environment`` and replaces ``step``:

- ``call_after(delay, function, *args)``: a timer that calls
  ``function(*args)`` at ``now + delay``. It takes the same place in the
  heap as ``env.timeout(delay).callbacks.append(...)`` (same time, priority
  and id sequence, so runs are event-for-event the same) without building a
  ``Timeout`` (an ``Event`` with a value, a delay and checks) for it, nor a
  closure for its arguments: its heap entry is ``(time, priority, id,
  function, args)``, where a SimPy event's is ``(time, priority, id, event)``
  (the id is unique, so entries never compare beyond it);
- ``now`` is a plain attribute, set by the loop, instead of a property the
  model reads a few times per event (SimPy's own ``_now``, which its
  ``schedule`` reads, is a property over it: one clock, one store per event);
- ``run(until=t)`` pops and dispatches events in one loop rather than one
  ``step()`` call per event; it stops where SimPy's would (before the
  first event after an urgent stop event at ``t``, whose id it takes from the
  same sequence), and leaves the clock at that stop event's time;
- the heap is ``sim.model.heap``'s: compiled where the package was built with
  a C compiler (keys compared in C, the loop in C), else ``heapq`` on a list,
  as SimPy's own; both pop the same entries in the same order, so a run's
  results are the same bytes either way (``Engine(compiled=False)`` asks for
  the pure-Python one). SimPy's ``schedule``, ``peek`` and ``step`` are
  overridden to use it (SimPy's list, ``_queue``, stays empty).
"""

from __future__ import annotations

from typing import Callable, Optional

import simpy
from simpy.core import EmptySchedule
from simpy.events import NORMAL

from sim.model.heap import new_heap


class Engine(simpy.Environment):
    """A ``simpy.Environment`` whose clock is an attribute and whose timers are plain callbacks."""

    now: float = 0.0  # shadows Environment.now (a property): an attribute, the one clock the loop sets

    @property
    def _now(self) -> float:  # what SimPy's own code (schedule, step) reads and writes: the same clock
        return self.now

    @_now.setter
    def _now(self, value: float) -> None:
        self.now = value

    def __init__(self, initial_time: float = 0.0, compiled: Optional[bool] = None):
        super().__init__(initial_time)  # (sets _now, so now)
        self._heap = new_heap(compiled)
        # for a caller that sets a timer per job: ``push_timer((now + delay, NORMAL, next(timer_ids), function,
        # args))`` is ``call_after(delay, function, *args)`` without a Python frame of its own
        self.push_timer = self._heap.push
        self.timer_ids = self._eid

    def schedule(self, event: simpy.Event, priority: int = NORMAL, delay: float = 0) -> None:
        """SimPy's ``schedule``, on this engine's heap."""
        self._heap.push((self.now + delay, priority, next(self._eid), event))

    def peek(self) -> float:
        """SimPy's ``peek``: the next entry's time, or infinity."""
        return self._heap.first_time()

    def call_after(self, delay: float, function: Callable[..., None], *args) -> None:
        """Call ``function(*args)`` ``delay`` seconds from now (``delay >= 0``), in the event order a
        ``Timeout`` of that delay would have."""
        if delay < 0:
            raise ValueError(f"negative delay {delay}")
        self._heap.push((self.now + delay, NORMAL, next(self._eid), function, args))

    def step(self) -> None:
        """SimPy's step, for this engine's entries (timers and events)."""
        try:
            entry = self._heap.pop()
        except IndexError:
            raise EmptySchedule from None
        self.now = entry[0]
        if entry[-1].__class__ is tuple:  # a timer: its args last (an event's entry ends with the event)
            entry[3](*entry[4])
        else:
            _dispatch(entry[3])

    def run(self, until: Optional[float] = None) -> None:
        """Dispatch events until the clock reaches ``until`` (a number), or until none are left (None)."""
        if until is None:
            while len(self._heap):
                self.step()
            return
        if isinstance(until, simpy.Event):
            raise TypeError("Engine.run takes a time, not an event")
        at = until if isinstance(until, int) else float(until)
        if at <= self.now:
            raise ValueError(f"until ({at}) must be greater than the current simulation time")
        # SimPy schedules an urgent stop event at now + (at - now) (which may round off at) and stops
        # when it comes up: events before it in (time, priority, id) order run, the rest wait.
        stop = self.now + (at - self.now)
        stop_id = next(self._eid)
        self._heap.run(self, stop, stop_id, _dispatch)
        self.now = stop


def _dispatch(event: simpy.Event) -> None:
    """A SimPy event's callbacks, as ``simpy.Environment.step`` runs them; a failed event not defused
    crashes the run."""
    callbacks, event.callbacks = event.callbacks, None
    for callback in callbacks:
        callback(event)
    if not event._ok and not hasattr(event, "_defused"):
        exc = type(event._value)(*event._value.args)
        exc.__cause__ = event._value
        raise exc
