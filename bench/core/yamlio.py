"""YAML loading with ``include:`` inheritance, shared by catalogs and suites.

A file may name other files (relative to itself) under ``include:``; their mappings are
merged first, in order, and the including file's keys override them. Mappings merge
recursively; lists and scalars are replaced, except where the caller merges a list of named
records itself (catalog concepts merge by name). Include cycles are errors.

Every YAML text eraselab reads (catalogs, suites, ``--set`` values) goes through
``safe_load_text``: PyYAML's safe loader plus bounds on what aliases may expand to. A few lines
of nested aliases (a "billion laughs") describe a tree of billions of nodes that PyYAML builds as
shared references in microseconds, but any code that walks or prints it hangs; so the node graph
is measured after composing and before constructing, and a document whose expansion exceeds
``MAX_NODES`` nodes, ``MAX_CHARS`` characters of scalars or ``MAX_DEPTH`` levels, or whose
aliases loop back on themselves, is refused with one line. Files over ``MAX_FILE_BYTES`` are
refused unread.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from bench.core.errors import EraselabError, shorten, suggest

# The shipped catalogs and suites expand to a few hundred nodes and a few thousand characters.
MAX_NODES = 100_000
MAX_CHARS = 5_000_000
MAX_FILE_BYTES = 10_000_000
MAX_DEPTH = 64  # the shipped files nest 4 deep


class YamlTooLarge(yaml.YAMLError):
    """A document whose alias expansion passes the bounds (or loops)."""

    def __init__(self, message: str, node=None):
        super().__init__(message)
        self.problem_mark = getattr(node, "start_mark", None)  # the line yaml_problem names


class BoundedSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses documents whose aliases expand past the bounds."""

    def compose_document(self):
        node = super().compose_document()
        check_expansion(node)
        return node


def check_expansion(root, max_nodes: int = MAX_NODES, max_chars: int = MAX_CHARS,
                    max_depth: int = MAX_DEPTH) -> tuple[int, int]:
    """(nodes, scalar characters) of ``root`` with every alias expanded; raises YamlTooLarge.

    Each distinct node is measured once (memoised), so the cost is linear in the file's size
    even when the expansion is exponential."""
    sizes: dict[int, tuple[int, int, int]] = {}  # id -> (nodes, characters, depth)
    on_path: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            nodes, chars, depth = 1, 0, 0
            for child in _children(node):
                n, c, d = sizes[id(child)]
                nodes, chars, depth = nodes + n, chars + c, max(depth, d)
            depth += 1
            if nodes > max_nodes:
                raise YamlTooLarge(f"aliases expand to more than {max_nodes:,} nodes; refused", node)
            if chars > max_chars:
                raise YamlTooLarge(f"aliases expand to more than {max_chars:,} characters; refused", node)
            if depth > max_depth:
                raise YamlTooLarge(f"nested more than {max_depth} levels deep; refused", node)
            sizes[key] = (nodes, chars, depth)
            continue
        if key in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = (1, len(node.value), 1)
            if len(node.value) > max_chars:
                raise YamlTooLarge(f"a value of more than {max_chars:,} characters; refused", node)
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise YamlTooLarge("an alias refers to a node that contains it (a recursive structure)",
                                   child)
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)][:2]


def _children(node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def safe_load_text(text: str):
    """``yaml.safe_load`` with the expansion bounds (raises yaml.YAMLError, YamlTooLarge included)."""
    loader = BoundedSafeLoader(text)
    try:
        return loader.get_single_data()
    except RecursionError:  # nesting thousands deep: PyYAML's composer recurses per level
        raise YamlTooLarge("nested too deeply; refused") from None
    finally:
        loader.dispose()


def yaml_problem(exc: yaml.YAMLError) -> str:
    """': line N: problem' for a YAML error, to follow the file's name in a message."""
    mark = getattr(exc, "problem_mark", None)
    where = f": line {mark.line + 1}" if mark is not None else ""
    if isinstance(exc, YamlTooLarge):
        problem = str(exc)
    else:
        problem = getattr(exc, "problem", None) or "invalid YAML"
    return f"{where}: {shorten(problem)}"


def read_yaml_mapping(path: Path) -> dict:
    """Read one YAML file that must hold a mapping; errors name the file."""
    path = Path(path)
    if path.is_dir():
        raise EraselabError(f"{path}: is a folder, expected a YAML file")
    if not path.is_file():
        raise EraselabError(f"{path}: file not found")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise EraselabError(f"{path}: {size:,} bytes; a catalog or suite file is at most "
                                f"{MAX_FILE_BYTES:,}")
        data = safe_load_text(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise EraselabError(f"{path}{yaml_problem(exc)}") from None
    except UnicodeDecodeError:
        raise EraselabError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise EraselabError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise EraselabError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


MAX_INCLUDES = 200  # files read for one top-level load; the shipped ones read at most two


def load_with_includes(path: Path, merge_lists: dict | None = None,
                       _stack: tuple = (), _seen: dict | None = None) -> dict:
    """Load ``path`` with its ``include:`` chain resolved; returns the merged mapping.

    ``merge_lists`` maps a top-level key to the field that names its records (for example
    ``{"concepts": "name"}``): such lists are merged record by record instead of replaced.
    A file included several times is read once per top-level load (``_seen``), so a diamond of
    includes costs one read per file, not one per path through it.
    """
    path = Path(path).resolve()
    if path in _stack:
        chain = " -> ".join(p.name for p in (*_stack, path))
        raise EraselabError(f"{path}: include cycle ({chain})")
    seen = {} if _seen is None else _seen
    if path in seen:
        return seen[path]
    if len(seen) >= MAX_INCLUDES:
        raise EraselabError(f"{path}: more than {MAX_INCLUDES} included files; refused")
    data = read_yaml_mapping(path)
    includes = data.pop("include", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise EraselabError(f"{path}: key 'include': expected a file name or a list of them")
    if len(includes) > MAX_INCLUDES:
        raise EraselabError(f"{path}: key 'include': more than {MAX_INCLUDES} files; refused")
    merged: dict = {}
    for name in includes:
        base = load_with_includes(path.parent / name, merge_lists, (*_stack, path), seen)
        merged = merge(merged, base, merge_lists or {})
    result = merge(merged, data, merge_lists or {})
    seen[path] = result
    return result


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
    return suggest(key, sorted(allowed), fallback=False) or f"expected one of {sorted(allowed)}"


def key_problems(mapping: dict, allowed, required=()) -> list[tuple[str, str]]:
    """(key, message) for every unknown key and every missing required key of a mapping."""
    problems = [(key, f"unknown key; {unknown_key_hint(key, allowed)}") for key in mapping
                if key not in allowed]
    problems += [(key, "missing required key") for key in required if key not in mapping]
    return problems
