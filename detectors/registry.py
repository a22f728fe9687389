"""Choose detectors by name: ``create("robust_zscore", alpha=0.01)``.

Configuration files name detectors and parameters; the registry turns them into
objects, and turns snapshots back into objects through the ``type`` they carry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from detectors.base import Detector, Snapshot, SnapshotError

_REGISTRY: dict[str, type[Detector]] = {}

D = TypeVar("D", bound=type[Detector])


def register(name: str) -> Callable[[D], D]:
    """Class decorator: make a detector available under ``name``."""

    def decorate(cls: D) -> D:
        old = _REGISTRY.get(name)
        # The same class imported twice (doctest collection re-imports modules) may
        # register again; two different classes may not share a name.
        if old is not None and (old.__module__, old.__qualname__) != (
            cls.__module__,
            cls.__qualname__,
        ):
            raise ValueError(f"detector name {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _load_builtins() -> None:
    # Importing the package registers every built-in detector exactly once.
    import detectors  # noqa: F401


def available() -> dict[str, type[Detector]]:
    """Registered detectors by name."""
    _load_builtins()
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> type[Detector]:
    """The detector class registered as ``name``; a clear error lists the others."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown detector {name!r}; available: {', '.join(sorted(_REGISTRY))}"
        ) from None


def create(name: str, **params: Any) -> Detector:
    """A new detector from its name and parameters."""
    cls = get(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise TypeError(f"bad parameters for detector {name!r}: {exc}") from exc


def restore(snapshot: Snapshot) -> Detector:
    """Any detector back from its snapshot (the snapshot names its type)."""
    if not isinstance(snapshot, dict) or "type" not in snapshot:
        raise SnapshotError("a snapshot is a dict with a 'type'")
    try:
        cls = get(str(snapshot["type"]))
    except KeyError as exc:
        raise SnapshotError(str(exc)) from exc
    return cls.restore(snapshot)
