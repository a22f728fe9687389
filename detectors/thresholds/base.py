"""The interface of a streaming threshold: one score in, one alarm decision out.

A threshold model is not a detector: it consumes the scalar scores (or surprises) a
detector produced and decides which are alarms. It shares the detectors' snapshot
layout (``type``, ``version``, ``params``, ``state``; arrays through
:func:`detectors._arrays.pack`; no pickle) so a pipeline stores both the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Self, TypeVar

from detectors.base import Snapshot, SnapshotError

_THRESHOLDS: dict[str, type[Threshold]] = {}

T = TypeVar("T", bound="type[Threshold]")


def register_threshold(name: str) -> Callable[[T], T]:
    """Class decorator: make a threshold model restorable under ``name``."""

    def decorate(cls: T) -> T:
        if name in _THRESHOLDS and _THRESHOLDS[name] is not cls:
            raise ValueError(f"threshold name {name!r} is already registered")
        cls.name = name
        _THRESHOLDS[name] = cls
        return cls

    return decorate


def restore_threshold(snapshot: Snapshot) -> Threshold:
    """Any threshold model back from its snapshot (the snapshot names its type)."""
    if not isinstance(snapshot, dict) or snapshot.get("type") not in _THRESHOLDS:
        raise SnapshotError(f"unknown threshold snapshot type {snapshot.get('type')!r}")
    return _THRESHOLDS[str(snapshot["type"])].restore(snapshot)


class Threshold(ABC):
    """A streaming, one-sided (upper) threshold on a real-valued stream."""

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1

    @abstractmethod
    def step(self, value: float) -> bool:
        """Take one value; ``True`` if it is an alarm (non-finite values are ignored)."""

    @property
    @abstractmethod
    def threshold(self) -> float:
        """The current alarm level (``nan`` while calibrating)."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """Constructor parameters, JSON-safe."""

    @abstractmethod
    def _get_state(self) -> dict[str, Any]:
        """The learned state, JSON-safe."""

    @abstractmethod
    def _set_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`_get_state`."""

    @abstractmethod
    def state_size(self) -> int:
        """Bytes of learned numeric state."""

    def snapshot(self) -> Snapshot:
        """A compact, versioned, JSON-safe copy (parameters and state)."""
        return {
            "type": self.name,
            "version": self.version,
            "params": self.params(),
            "state": self._get_state(),
        }

    @classmethod
    def restore(cls, snapshot: Snapshot) -> Self:
        """Rebuild from :meth:`snapshot`; raises :class:`SnapshotError`."""
        if not isinstance(snapshot, dict) or snapshot.get("type") != cls.name:
            raise SnapshotError(f"not a {cls.name!r} snapshot")
        if snapshot.get("version") != cls.version:
            raise SnapshotError(f"unsupported {cls.name!r} version {snapshot.get('version')!r}")
        try:
            obj = cls(**snapshot["params"])
            obj._set_state(snapshot["state"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"corrupt {cls.name!r} snapshot: {exc}") from exc
        return obj
