"""Typed method hyperparameters: dataclass configs, ``key=value`` overrides, strict checking.

Every method declares a ``Config`` dataclass whose defaults are its authors' (the "sd" family);
methods/defaults.py lists what changes per model family. ``resolve_config`` layers
dataclass defaults < family defaults < variant < user overrides, and rejects an unknown key or
an ill-typed value with a one-line EraselabError (``--set lr=abc`` -> "fewshot-te: key 'lr':
expected a float, got 'abc'").
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

import yaml

from bench.core.errors import EraselabError, quoted, suggest
from bench.core.yamlio import safe_load_text


def parse_set_args(pairs: list[str] | None) -> dict[str, str]:
    """``["lr=1e-4", "steps=40"]`` -> ``{"lr": "1e-4", "steps": "40"}`` (values typed later)."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise EraselabError(f"--set {quoted(pair)}: expected key=value")
        out[key.strip()] = value.strip()
    return out


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def coerce(method: str, key: str, value: Any, tp) -> Any:
    """Convert ``value`` (a typed value, or a string from the command line) to type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return coerce(method, key, value, inner[0])
        raise TypeError(f"unsupported config type {tp}")

    def bad(expected: str):
        return EraselabError(f"{method}: key {quoted(key)}: expected {expected}, got {quoted(value)}")

    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise bad("a boolean (true/false)")
    if tp is int:
        if isinstance(value, bool):
            raise bad("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise bad("an integer")
    if tp is float:
        if isinstance(value, bool):
            raise bad("a float")
        if isinstance(value, (int, float)):
            out = float(value)
        elif isinstance(value, str):
            try:
                out = float(value)
            except ValueError:
                raise bad("a float") from None
        else:
            raise bad("a float")
        if not math.isfinite(out):
            raise bad("a finite float")
        return out
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad("a string")
    if origin in (tuple, list):
        if isinstance(value, str):
            try:
                value = safe_load_text(value) if value.strip() else []
            except yaml.YAMLError:
                raise bad("a list like [a, b]") from None
            if not isinstance(value, list):
                value = [value]
        if not isinstance(value, (list, tuple)):
            raise bad("a list like [a, b]")
        item_tp = args[0] if args else str
        items = [coerce(method, key, v, item_tp) for v in value]
        return tuple(items) if origin is tuple else items
    raise TypeError(f"unsupported config type {tp}")


def resolve_config(method: str, config_cls, layers: list[tuple[str, dict]]):
    """Build ``config_cls`` from successive override layers ``[(source, {key: value}), ...]``.

    Unknown keys and ill-typed values are one-line errors naming the method, key and source.
    """
    hints = typing.get_type_hints(config_cls)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    values: dict[str, Any] = {}
    for source, mapping in layers:
        for key, value in (mapping or {}).items():
            if key not in fields:
                hint = suggest(key, sorted(fields))
                raise EraselabError(f"{method}: unknown config key {quoted(key)} (from {source}); {hint}")
            values[key] = coerce(method, key, value, hints[key])
    config = config_cls(**values)
    check = getattr(config, "check", None)
    if check is not None:
        problem = check()
        if problem:
            raise EraselabError(f"{method}: {problem}")
    return config


def config_to_dict(config) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}


def learning_rates(config) -> str:
    """``lr=1e-4`` (every ``lr`` / ``*_lr`` field, e.g. ``ste_lr=5e-7, reo_lr=2e-6``) for a message
    that a run diverged; ``lr=?`` for a config without one."""
    fields = dataclasses.fields(config) if dataclasses.is_dataclass(config) else ()
    rates = [f"{f.name}={getattr(config, f.name)}" for f in fields if f.name == "lr" or f.name.endswith("_lr")]
    return ", ".join(rates) or "lr=?"
