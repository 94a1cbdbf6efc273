"""Registries: the one place each extension point lists its kinds.

A scenario names a policy (or a link contention, a workload source, ...)
by its kind, a short string such as ``dynamic`` or ``round-robin``. Each
extension point keeps a ``Registry`` from kind to factory next to the
classes it builds, so adding a kind touches that one module (plus its
test): the scenario schema validates against the registry's kinds, and
builders look the factory up here. An unknown kind is a load-time error
that names the known kinds; nothing falls back silently.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

Factory = TypeVar("Factory")  # what a kind maps to: usually a factory, sometimes a plain value


class UnknownKind(ValueError):
    """A kind no registry entry answers to; the message lists the known ones."""


class Registry(Generic[Factory]):
    """Kinds of one extension point (``what``: e.g. "batching policy") and their factories."""

    def __init__(self, what: str):
        self.what = what
        self._factories: dict[str, Factory] = {}

    def register(self, kind: str) -> Callable[[Factory], Factory]:
        """Decorator: make ``kind`` build with the decorated factory."""

        def add(factory: Factory) -> Factory:
            if kind in self._factories:
                raise ValueError(f"{self.what} '{kind}' is registered twice")
            self._factories[kind] = factory
            return factory

        return add

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._factories)

    def __contains__(self, kind: object) -> bool:
        return kind in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __getitem__(self, kind: str) -> Factory:
        try:
            return self._factories[kind]
        except KeyError:
            raise UnknownKind(self.unknown(kind)) from None

    def unknown(self, kind: object) -> str:
        return f"unknown {self.what} '{kind}'; expected one of: {', '.join(self._factories)}"

    def check(self, kind: str) -> str:
        """Pydantic after-validator: ``kind`` itself, or ``ValueError`` naming the known kinds."""
        if kind not in self._factories:
            raise ValueError(self.unknown(kind))
        return kind
