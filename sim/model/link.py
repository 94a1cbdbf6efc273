"""One direction of a link: serialisation by bandwidth, then latency.

A message of ``n`` bytes occupies the channel for ``overhead + n /
bandwidth`` and arrives ``latency`` after it leaves (latency is
propagation: it does not hold the channel). Concurrent messages contend in
one of the kinds registered in ``CHANNELS``:

- ``fifo``: one message at a time, in order of arrival (a DMA engine
  copying buffers one after another);
- ``shared``: every message in flight gets an equal share of the bandwidth
  (processor sharing, how TCP flows or RDMA queue pairs split a port);
  the per-message overhead is then paid before the message joins.

Processor sharing is kept as finish tags on a virtual clock (the
"virtual time" of fair queueing): with ``n`` messages in flight the
virtual clock runs at ``1 / n`` of real time, a message joining at
virtual time ``v`` gets the tag ``v + size / bandwidth``, and the message
with the smallest tag is the next to finish. No byte counts are carried
from event to event, so rounding cannot leave a message with a residue
too small to move the clock: every completion event removes at least one
message, at any simulated time.

Busy time (any message on the wire) and bytes moved are counted inside the
measurement window; ``account()`` brings them up to now before they are read.

A message that joins an empty ``shared`` channel with a fixed latency takes
one event, not two: one timer delivers it at the end of its transfer plus
the latency, and the channel's counters are settled, as the end of the
transfer would have settled them, when something next touches the channel
(a message joining, ``account``) or when that timer fires. A message that
joins while it is still on the wire turns it into a message in flight like
any other, and its timer into a stale one. The arithmetic is the same as
the two events', so the times, busy time and bytes are the same numbers.
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from collections import deque
from itertools import count
from typing import Callable, Optional

from simpy.events import NORMAL

from sim.costs import Deterministic, Sampler
from sim.model.device import Window
from sim.model.engine import Engine
from sim.registry import Registry

Delivery = Callable[[], None]


def _constant(latency: Sampler) -> Optional[float]:
    """The latency every message gets, when it is a fixed number (no draw per message); else None."""
    if type(latency) is Sampler and isinstance(latency.spec, Deterministic):
        return latency.sample_bytes(0.0)
    return None


class Channel(ABC):
    """Common accounting; subclasses decide how messages share the wire."""

    def __init__(self, env: Engine, name: str, bandwidth: float, latency: Sampler,
                 overhead: float, window: Window):
        self.env = env
        self.name = name
        self.bandwidth = bandwidth
        self.latency = latency
        self.overhead = overhead
        self.window = window
        self._push_timer, self._timer_ids = env.push_timer, env.timer_ids  # (Engine.push_timer: a timer per message)
        self.busy_time = 0.0
        self.bytes_moved = 0.0
        self._fixed_latency = _constant(latency)

    @abstractmethod
    def send(self, size: float, deliver: Delivery) -> None:
        """Carry ``size`` bytes; call ``deliver`` when they have arrived."""

    def account(self) -> None:
        """Bring ``busy_time`` and ``bytes_moved`` up to now (before reading them)."""

    def passes_through(self, size: float) -> bool:
        """Whether ``size`` bytes would arrive the instant they are sent, waiting for nothing; if so they
        are counted as moved and the sender delivers them itself, with no event (``send`` is not called)."""
        return False

    def _arrive(self, size: float, deliver: Delivery, later: bool = False) -> None:
        """The message has left the channel; ``deliver`` after the link's latency (``later``: never
        within the caller's call, even when that is zero: the sender records the link it used first)."""
        now = self.env.now
        if self.window.start <= now < self.window.end:
            self.bytes_moved += size
        delay = self._fixed_latency
        if delay is None:
            delay = self.latency.sample_bytes(size)
        if delay > 0 or later:
            self._push_timer((now + delay, NORMAL, next(self._timer_ids), deliver, ()))
        else:
            deliver()


class FifoChannel(Channel):
    """One message at a time, in order of sending. A message that takes no time on an idle channel
    (no overhead, no bytes or unbounded bandwidth) skips the queue: one event, its latency (even zero)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._queue: deque[tuple[float, Delivery]] = deque()
        self._hold_done = self._done  # what each message's timer calls: bound once, not per message

    def passes_through(self, size: float) -> bool:
        if self._queue or self._fixed_latency != 0 or self.overhead + size / self.bandwidth != 0:
            return False
        if self.window.start <= self.env.now < self.window.end:
            self.bytes_moved += size
        return True

    def send(self, size: float, deliver: Delivery) -> None:
        queue = self._queue
        if not queue and self.overhead + size / self.bandwidth == 0:
            self._arrive(size, deliver, later=True)
            return
        queue.append((size, deliver))
        if len(queue) == 1:
            self._start()

    def _start(self) -> None:
        now = self.env.now
        hold = self.overhead + self._queue[0][0] / self.bandwidth
        self.busy_time += self.window.overlap(now, now + hold)
        self._push_timer((now + hold, NORMAL, next(self._timer_ids), self._hold_done, ()))

    def _done(self) -> None:
        size, deliver = self._queue.popleft()
        if self._queue:
            self._start()
        self._arrive(size, deliver)


class SharedChannel(Channel):
    """Processor sharing: n messages in flight each move at bandwidth / n.

    ``_virtual`` is the virtual clock at real time ``_updated``: the service
    (in seconds at full bandwidth) that any message in flight since the
    start of the busy period has received. ``_tags`` holds (finish tag,
    order of joining, size, delivery); ties finish together, in order of joining.
    The clock restarts at 0 whenever the channel empties, so its precision
    depends on the length of a busy period, not on the simulated time.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._tags: list[tuple[float, int, float, Delivery]] = []
        self._order = count()
        self._virtual = 0.0
        self._updated = 0.0
        self._version = 0
        self._joining, self._completing, self._alone_arrives = self._join, self._complete, self._solo_arrives
        # a message alone on the wire, delivered by one timer (only where the latency is fixed and not zero):
        # (end of its transfer, finish tag, order of joining, size, delivery)
        self._solo: Optional[tuple[float, float, int, float, Delivery]] = None
        self._solo_latency = self._fixed_latency if self._fixed_latency else None
        self._shared_solos: set[int] = set()  # the orders of those that another joined before they ended
        if self.overhead <= 0:
            self.send = self._join  # (what send does without an overhead, without its call)

    def send(self, size: float, deliver: Delivery) -> None:
        if self.overhead > 0:
            self._push_timer((self.env.now + self.overhead, NORMAL, next(self._timer_ids), self._joining, (size, deliver)))
        else:
            self._join(size, deliver)

    def in_flight(self) -> int:
        """Messages on the wire now."""
        solo = self._solo
        return len(self._tags) + (solo is not None and self.env.now < solo[0])

    def account(self) -> None:
        solo = self._solo
        if solo is not None and self.env.now >= solo[0]:
            self._settle(self.env.now)

    def _join(self, size: float, deliver: Delivery) -> None:
        now = self.env.now
        tags = self._tags
        if self._solo is not None:
            self._settle(now)
        if not tags and self._solo_latency is not None:  # alone on the wire (the virtual clock is at 0)
            tag = self._virtual + size / self.bandwidth
            # (what the timer below and _complete's _arrive compute: the same end and delivery times)
            end = now + max(0.0, tag - self._virtual) * 1
            solo = self._solo = (end, tag, next(self._order), size, deliver)
            self._updated = now
            self._version += 1
            self._push_timer((end + self._solo_latency, NORMAL, next(self._timer_ids), self._alone_arrives, (solo,)))
            return
        if tags:  # move the virtual clock (and the busy time) up to now
            self.busy_time += self.window.overlap(self._updated, now)
            self._virtual += (now - self._updated) / len(tags)
        self._updated = now
        heapq.heappush(tags, (self._virtual + size / self.bandwidth, next(self._order), size, deliver))
        self._version = version = self._version + 1  # (_schedule, with a message certainly in flight)
        self._push_timer((now + max(0.0, tags[0][0] - self._virtual) * len(tags), NORMAL, next(self._timer_ids),
                          self._completing, (version,)))

    def _settle(self, now: float) -> None:
        """The message that joined alone, at ``now``: if its transfer has ended, count it as ``_complete``
        would have at its end (the channel is empty since); else it shares the wire from now on."""
        solo, self._solo = self._solo, None
        end = solo[0]
        if now >= end:
            start, stop = self.window.start, self.window.end  # (busy time: Window.overlap, inlined)
            lo, hi = (self._updated if self._updated > start else start), (end if end < stop else stop)
            if hi > lo:
                self.busy_time += hi - lo
            self._updated = end
            self._virtual = 0.0
            self._version += 1
            if start <= end < stop:
                self.bytes_moved += solo[3]
        else:
            self._shared_solos.add(solo[2])
            self._tags.append(solo[1:])

    def _solo_arrives(self, solo: tuple) -> None:
        """A message that joined alone arrives, unless another joined while it was on the wire."""
        if self._shared_solos and solo[2] in self._shared_solos:  # it arrives as any message in flight
            self._shared_solos.remove(solo[2])
            return
        if self._solo is solo:
            self._settle(solo[0])
        solo[4]()

    def _schedule(self) -> None:
        """Wake up when the smallest tag is reached; a later join cancels this."""
        self._version += 1
        tags = self._tags
        if not tags:
            self._virtual = 0.0
            return
        delay = max(0.0, tags[0][0] - self._virtual) * len(tags)
        self._push_timer((self.env.now + delay, NORMAL, next(self._timer_ids), self._completing, (self._version,)))

    def _complete(self, version: int) -> None:
        if version != self._version:
            return
        # A timer of the current version: messages are in flight and none joined or left since it was
        # set. The head's tag is reached by construction; taking it as the clock (rather than
        # advancing it by the elapsed time) drops the rounding of the real-time arithmetic.
        now = self.env.now
        self.busy_time += self.window.overlap(self._updated, now)
        self._updated = now
        tags = self._tags
        tag = tags[0][0]
        self._virtual = tag
        _tag, _order, size, deliver = heapq.heappop(tags)
        if tags and tags[0][0] <= tag:  # ties finish together, in order of joining
            finished = [(_tag, _order, size, deliver)]
            while tags and tags[0][0] <= tag:
                finished.append(heapq.heappop(tags))
            self._schedule()
            for _tag, _order, size, deliver in finished:
                self._arrive(size, deliver)
            return
        self._schedule()
        self._arrive(size, deliver)


CONTENTION: Registry[type[Channel]] = Registry("link contention")
"""The registry of contention kinds: a link's ``contention`` names one of these."""
CONTENTION.register("fifo")(FifoChannel)
CONTENTION.register("shared")(SharedChannel)


def make_channel(contention: str, env: Engine, name: str, bandwidth: float, latency: Sampler,
                 overhead: float, window: Window) -> Channel:
    """A channel of the registered kind ``contention`` (``UnknownKind`` names the known ones)."""
    return CONTENTION[contention](env, name, bandwidth, latency, overhead, window)
