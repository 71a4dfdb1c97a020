"""A generic, lazy registry of named components (erasure methods, scorers).

Components register in code with a decorator::

    SCORERS = Registry("scorer")

    @SCORERS.register("my-scorer", summary="what it measures")
    class MyScorer: ...

Heavy components (torch, diffusers) are declared lazily as ``"module:attr"`` strings, so
``eraselab ls detectors`` lists them without importing anything::

    SCORERS.register_lazy("yolo", "detectors.yolo:YoloDetector", summary="ultralytics YOLO")

A lazy declaration is fulfilled, not duplicated, when its module registers the same object
(``@SCORERS.register("yolo")`` on ``detectors.yolo:YoloDetector``), or when the object asks for
its own entry with ``fulfil(obj)`` (a base class's ``__init_subclass__`` can do that, so that its
subclasses need no decorator and the lazy table stays the one place their names are written:
methods/__init__.py does this).
The summary is written once: a decorator's explicit summary that differs from the declaration's
is an error, never silently dropped. ``Registry(kind, bind=f)`` calls ``f(name, obj)`` once an
entry's object is known (to check it, or to tell it its name).

A duplicate name is rejected; an unknown name is answered with "did you mean ...".
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from bench.core.errors import EraselabError, suggest


@dataclass
class Entry:
    name: str
    target: str | Any  # "module:attr" until first use, then the object itself
    summary: str = ""
    tags: dict = field(default_factory=dict)

    @property
    def loaded(self) -> bool:
        return not isinstance(self.target, str)


class Registry:
    def __init__(self, kind: str, bind: Callable[[str, Any], None] | None = None):
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._bind = bind

    # -- registration -------------------------------------------------------------------
    def _attach(self, entry: Entry, obj) -> None:
        if self._bind is not None:
            self._bind(entry.name, obj)
        entry.target = obj

    def _add(self, name: str, target, summary: str | None, tags: dict) -> None:
        if not name or name != name.strip():
            raise ValueError(f"{self.kind} name {name!r} is empty or padded")
        existing = self._entries.get(name)
        if existing is not None:
            # A lazy declaration being fulfilled by the module it points to is not a duplicate.
            if not isinstance(target, str) and (existing.target is target or (
                    isinstance(existing.target, str) and _qualname(target) == existing.target)):
                if summary and existing.summary and summary != existing.summary:
                    raise ValueError(f"{self.kind} {name!r}: two summaries, {existing.summary!r} "
                                     f"(declared) and {summary!r} (registered); write one")
                existing.summary = existing.summary or summary or _first_doc_line(target)
                if existing.target is not target:
                    self._attach(existing, target)
                return
            raise ValueError(f"duplicate {self.kind} name {name!r}")
        entry = Entry(name, target, summary or "", dict(tags))
        if not isinstance(target, str):
            entry.summary = entry.summary or _first_doc_line(target)
            self._attach(entry, target)
        self._entries[name] = entry

    def register(self, name: str, summary: str | None = None, **tags) -> Callable:
        """Decorator: register a class or function under ``name``."""

        def decorate(obj):
            self._add(name, obj, summary, tags)
            return obj

        return decorate

    def fulfil(self, obj) -> str | None:
        """Attach ``obj`` to the lazy declaration naming it (``"module:qualname"``); returns that
        name, or None when no declaration names it."""
        target = _qualname(obj)
        for entry in self._entries.values():
            if entry.target == target:
                self._attach(entry, obj)
                return entry.name
        return None

    def register_lazy(self, name: str, target: str, summary: str = "", **tags) -> None:
        """Declare ``name`` as ``"module:attr"``; the module is imported on first `get`."""
        if ":" not in target:
            raise ValueError(f"lazy target {target!r} must be 'module:attr'")
        self._add(name, target, summary, tags)

    # -- lookup -------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def entry(self, name: str) -> Entry:
        if name not in self._entries:
            raise EraselabError(self.unknown_message(name))
        return self._entries[name]

    def unknown_message(self, name: str) -> str:
        return f"unknown {self.kind} {name!r}; {suggest(name, self.names())}"

    def get(self, name: str):
        entry = self.entry(name)
        if isinstance(entry.target, str):
            module_name, attr = entry.target.split(":", 1)
            module = importlib.import_module(module_name)  # may fulfil the entry itself
            obj = getattr(module, attr)
            if entry.target is not obj:
                self._attach(entry, obj)
        return entry.target


def subclass_binder(kind: str, base: str) -> Callable[[str, Any], None]:
    """A ``bind`` for a registry of classes: checks that each is a subclass of ``base``
    (``"module:Class"``, imported at the first bind, so listing imports nothing heavy) and gives
    it its registered name, refusing a class already registered under another name."""
    def bind(name: str, cls) -> None:
        module_name, attr = base.split(":", 1)
        base_cls = getattr(importlib.import_module(module_name), attr)
        if not (isinstance(cls, type) and issubclass(cls, base_cls)):
            raise TypeError(f"{kind} {name!r}: {cls!r} is not a subclass of {attr}")
        own = cls.__dict__.get("name")
        if own and own != name:
            raise ValueError(f"{kind} {name!r}: {cls.__qualname__} is already {kind} {own!r}")
        cls.name = name
    return bind


def _qualname(obj) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def _first_doc_line(obj) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""
