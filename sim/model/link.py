"""One direction of a link: serialisation by bandwidth, then latency.

A message of ``n`` bytes occupies the channel for ``overhead + n /
bandwidth`` and arrives ``latency`` after it leaves (latency is
propagation: it does not hold the channel). Concurrent messages contend in
one of two ways:

- ``fifo``: one message at a time, in order of arrival (a DMA engine
  copying buffers one after another);
- ``shared``: every message in flight gets an equal share of the bandwidth
  (processor sharing, how TCP flows or RDMA queue pairs split a port);
  the per-message overhead is then paid before the message joins.

Busy time (any message on the wire) and bytes moved are counted inside the
measurement window.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import Callable

import simpy

from sim.costs import Sampler
from sim.model.device import Window

Delivery = Callable[[], None]


@dataclass(slots=True)
class _Message:
    size: float
    deliver: Delivery
    remaining: float = 0.0


class Channel(ABC):
    """Common accounting; subclasses decide how messages share the wire."""

    def __init__(self, env: simpy.Environment, name: str, bandwidth: float, latency: Sampler,
                 overhead: float, window: Window):
        self.env = env
        self.name = name
        self.bandwidth = bandwidth
        self.latency = latency
        self.overhead = overhead
        self.window = window
        self.busy_time = 0.0
        self.bytes_moved = 0.0

    @abstractmethod
    def send(self, size: float, deliver: Delivery) -> None:
        """Carry ``size`` bytes; call ``deliver`` when they have arrived."""

    def _arrive(self, message: _Message) -> None:
        now = self.env.now
        if self.window.start <= now < self.window.end:
            self.bytes_moved += message.size
        delay = self.latency.sample_bytes(message.size)
        if delay > 0:
            self.env.timeout(delay).callbacks.append(lambda _e, d=message.deliver: d())
        else:
            message.deliver()


class FifoChannel(Channel):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._queue: deque[_Message] = deque()

    def send(self, size: float, deliver: Delivery) -> None:
        self._queue.append(_Message(size, deliver))
        if len(self._queue) == 1:
            self._start()

    def _start(self) -> None:
        now = self.env.now
        message = self._queue[0]
        hold = self.overhead + message.size / self.bandwidth
        self.busy_time += self.window.overlap(now, now + hold)
        self.env.timeout(hold).callbacks.append(self._done)

    def _done(self, _event) -> None:
        message = self._queue.popleft()
        if self._queue:
            self._start()
        self._arrive(message)


class SharedChannel(Channel):
    """Processor sharing: n messages in flight each move at bandwidth / n."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._active: list[_Message] = []
        self._updated = 0.0
        self._version = 0

    def send(self, size: float, deliver: Delivery) -> None:
        message = _Message(size, deliver, remaining=size)
        if self.overhead > 0:
            self.env.timeout(self.overhead).callbacks.append(lambda _e: self._join(message))
        else:
            self._join(message)

    def _advance(self) -> None:
        now = self.env.now
        if self._active:
            self.busy_time += self.window.overlap(self._updated, now)
            share = self.bandwidth / len(self._active) * (now - self._updated)
            for message in self._active:
                message.remaining -= share
        self._updated = now

    def _join(self, message: _Message) -> None:
        self._advance()
        self._active.append(message)
        self._schedule()

    def _schedule(self) -> None:
        self._version += 1
        if not self._active:
            return
        first = min(m.remaining for m in self._active)
        delay = max(0.0, first) * len(self._active) / self.bandwidth
        version = self._version
        self.env.timeout(delay).callbacks.append(lambda _e: self._complete(version))

    def _complete(self, version: int) -> None:
        if version != self._version:
            return
        self._advance()
        tolerance = 1e-9 * max(1.0, max(m.size for m in self._active))
        finished = [m for m in self._active if m.remaining <= tolerance]
        self._active = [m for m in self._active if m.remaining > tolerance]
        self._schedule()
        for message in finished:
            self._arrive(message)


def make_channel(contention: str, env, name, bandwidth, latency, overhead, window) -> Channel:
    cls = FifoChannel if contention == "fifo" else SharedChannel
    return cls(env, name, bandwidth, latency, overhead, window)

