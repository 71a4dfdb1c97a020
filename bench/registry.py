"""A generic, lazy registry of named components (erasure methods, scorers).

Components register in code with a decorator::

    METHODS = Registry("method")

    @METHODS.register("fewshot-te")
    class FewShotTextEncoder: ...

Heavy components (torch, diffusers) are declared lazily as ``"module:attr"`` strings, so
``eraselab ls methods`` lists them without importing anything::

    METHODS.register_lazy("esd-x", "methods.esd:EsdX", summary="ESD, cross-attention")

A duplicate name is rejected; an unknown name is answered with "did you mean ...".
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from bench.errors import EraselabError


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
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    # -- registration -------------------------------------------------------------------
    def _add(self, name: str, target, summary: str, tags: dict) -> None:
        if not name or name != name.strip():
            raise ValueError(f"{self.kind} name {name!r} is empty or padded")
        existing = self._entries.get(name)
        if existing is not None:
            # A lazy declaration being fulfilled by the module it points to is not a duplicate.
            if isinstance(existing.target, str) and not isinstance(target, str) \
                    and _qualname(target) == existing.target:
                existing.target = target
                return
            raise ValueError(f"duplicate {self.kind} name {name!r}")
        self._entries[name] = Entry(name, target, summary, dict(tags))

    def register(self, name: str, summary: str = "", **tags) -> Callable:
        """Decorator: register a class or function under ``name``."""

        def decorate(obj):
            self._add(name, obj, summary or _first_doc_line(obj), tags)
            return obj

        return decorate

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
        close = difflib.get_close_matches(str(name), self.names(), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else \
            f"; known: {', '.join(self.names())}"
        return f"unknown {self.kind} {name!r}{hint}"

    def get(self, name: str):
        entry = self.entry(name)
        if isinstance(entry.target, str):
            module_name, attr = entry.target.split(":", 1)
            module = importlib.import_module(module_name)
            obj = getattr(module, attr)
            entry.target = obj
        return entry.target


def _qualname(obj) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def _first_doc_line(obj) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""
