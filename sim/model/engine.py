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
  same sequence), and leaves the clock at that stop event's time.
"""

from __future__ import annotations

from functools import partial
from heapq import heappop, heappush
from typing import Callable, Optional

import simpy
from simpy.core import EmptySchedule
from simpy.events import NORMAL, URGENT


class Engine(simpy.Environment):
    """A ``simpy.Environment`` whose clock is an attribute and whose timers are plain callbacks."""

    now: float = 0.0  # shadows Environment.now (a property): an attribute, the one clock the loop sets

    @property
    def _now(self) -> float:  # what SimPy's own code (schedule, step) reads and writes: the same clock
        return self.now

    @_now.setter
    def _now(self, value: float) -> None:
        self.now = value

    def __init__(self, initial_time: float = 0.0):
        super().__init__(initial_time)  # (sets _now, so now)
        # for a caller that sets a timer per job: ``push_timer((now + delay, NORMAL, next(timer_ids), function,
        # args))`` is ``call_after(delay, function, *args)`` without a Python call (a C partial of heappush)
        self.push_timer = partial(heappush, self._queue)
        self.timer_ids = self._eid

    def call_after(self, delay: float, function: Callable[..., None], *args) -> None:
        """Call ``function(*args)`` ``delay`` seconds from now (``delay >= 0``), in the event order a
        ``Timeout`` of that delay would have."""
        if delay < 0:
            raise ValueError(f"negative delay {delay}")
        heappush(self._queue, (self.now + delay, NORMAL, next(self._eid), function, args))

    def step(self) -> None:
        """SimPy's step, for this engine's entries (timers and events)."""
        try:
            entry = heappop(self._queue)
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
            while self._queue:
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
        queue = self._queue
        while queue:
            head = heappop(queue)
            when = head[0]
            if when >= stop and (when > stop or head[1] > URGENT or head[2] > stop_id):
                heappush(queue, head)  # (keys are unique: the heap pops the same order as if it had stayed)
                break
            self.now = when
            if head[-1].__class__ is tuple:  # a timer
                head[3](*head[4])
            else:
                _dispatch(head[3])
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
