"""YAML loading with ``include:`` inheritance, shared by catalogs and suites.

A file may name other files (relative to itself) under ``include:``; their mappings are
merged first, in order, and the including file's keys override them. Mappings merge
recursively; lists and scalars are replaced, except where the caller merges a list of named
records itself (catalog concepts merge by name). Include cycles are errors.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml

from bench.core.errors import EraselabError


def read_yaml_mapping(path: Path) -> dict:
    """Read one YAML file that must hold a mapping; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise EraselabError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise EraselabError(f"{path}:{where}: {problem}") from None
    except UnicodeDecodeError:
        raise EraselabError(f"{path}: not UTF-8 text") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise EraselabError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_with_includes(path: Path, merge_lists: dict | None = None,
                       _stack: tuple = ()) -> dict:
    """Load ``path`` with its ``include:`` chain resolved; returns the merged mapping.

    ``merge_lists`` maps a top-level key to the field that names its records (for example
    ``{"concepts": "name"}``): such lists are merged record by record instead of replaced.
    """
    path = Path(path).resolve()
    if path in _stack:
        chain = " -> ".join(p.name for p in (*_stack, path))
        raise EraselabError(f"{path}: include cycle ({chain})")
    data = read_yaml_mapping(path)
    includes = data.pop("include", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise EraselabError(f"{path}: key 'include': expected a file name or a list of them")
    merged: dict = {}
    for name in includes:
        base = load_with_includes(path.parent / name, merge_lists, (*_stack, path))
        merged = merge(merged, base, merge_lists or {})
    return merge(merged, data, merge_lists or {})


def merge(base: dict, override: dict, merge_lists: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if key in merge_lists and isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = _merge_records(out[key], value, merge_lists[key])
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, {})
        else:
            out[key] = value
    return out


def _merge_records(base: list, override: list, id_field: str) -> list:
    """Records with the same id are replaced in place; new ones are appended."""
    out = list(base)
    index = {r.get(id_field): i for i, r in enumerate(out) if isinstance(r, dict)}
    for record in override:
        key = record.get(id_field) if isinstance(record, dict) else None
        if key is not None and key in index:
            out[index[key]] = record
        else:
            out.append(record)
    return out


def unknown_key_hint(key: str, allowed) -> str:
    """'did you mean ...?' for a near miss, else the list of allowed keys."""
    close = difflib.get_close_matches(str(key), sorted(allowed), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"expected one of {sorted(allowed)}"


def key_problems(mapping: dict, allowed, required=()) -> list[tuple[str, str]]:
    """(key, message) for every unknown key and every missing required key of a mapping."""
    problems = [(key, f"unknown key; {unknown_key_hint(key, allowed)}") for key in mapping
                if key not in allowed]
    problems += [(key, "missing required key") for key in required if key not in mapping]
    return problems
