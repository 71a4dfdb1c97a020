"""The package's layers import downwards only: read from the source with ``ast``, no imports run.

    pytest tests/test_layers.py -q        # well under a second

Layers, bottom to top (docs/contributing.md, "Layers"):
  core     bench.core: errors, registry, YAML, files, images, stats, ids, paths, schema (no torch)
  data     catalogs, the metrics engine, the manifest, run folders (no torch)
  world    the mini world's renderer and model definitions
  models   model loading, generation, methods, detectors
  tools    the mini world's training and evaluation stages
  runner   bench.runner, bench.suite, bench.tuning
  top      the CLI, its commands, the reports
A module may import its own layer or any below it. Every import counts, including the lazy ones
inside functions: a lazy upward import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "methods", "attacks", "detectors", "reports")

LAYERS = (
    ("core", ("bench.core", "bench")),  # the bare package (its version) is importable from anywhere
    ("data", ("bench.catalog", "bench.labels", "bench.metrics", "bench.judging", "bench.robustness",
              "bench.manifest", "bench.rundir")),
    ("world", ("bench.miniworld.render", "bench.miniworld.glyphs", "bench.miniworld.styles",
               "bench.miniworld.sheet", "bench.miniworld.data", "bench.miniworld.weights",
               "bench.miniworld.convert", "bench.miniworld.clip_model", "bench.miniworld")),
    ("models", ("bench.pipeline_io", "bench.generate", "bench.samplers", "bench.tiny", "bench.fewshot",
                "bench.finetune", "bench.finetune_data", "bench.offline", "detectors", "methods",
                "attacks")),
    ("tools", ("bench.miniworld",)),  # every other bench.miniworld module: training, evaluation
    ("runner", ("bench.runner", "bench.suite", "bench.tuning")),
    ("top", ("bench.cli", "bench.commands", "reports")),
)


def layer_of(module: str) -> int:
    """Index of the layer a module belongs to: the layer that names it exactly, else the layer with
    the longest prefix of it (equal prefixes: the higher layer, so "bench.miniworld.train_unet" is
    a tool while the world's modules are named one by one)."""
    for i, (_, prefixes) in enumerate(LAYERS):
        if module in prefixes:
            return i
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if module.startswith(p + ".") and len(p) >= best_len:
                best, best_len = i, len(p)
    if best is None:
        raise KeyError(module)
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """The project modules a file imports, anywhere in it (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)
    return {m for m in out if m.split(".")[0] in PACKAGES}


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def upward_imports(graph: dict[str, set[str]], modules: set[str]) -> list[str]:
    """'a (layer) -> b (layer)' for every import of a module from a higher layer."""
    found = []
    for mod, targets in sorted(graph.items()):
        for target in sorted(targets):
            if target not in modules:
                continue  # a name imported from a module, not a module
            if layer_of(target) > layer_of(mod):
                found.append(f"{mod} ({LAYERS[layer_of(mod)][0]}) -> {target} ({LAYERS[layer_of(target)][0]})")
    return found


def test_every_module_has_a_layer():
    for name in project_modules():
        layer_of(name)


def test_no_module_imports_upwards():
    modules = project_modules()
    graph = {name: imports_of(path) for name, path in modules.items()}
    assert upward_imports(graph, set(modules)) == []


def test_an_upward_import_is_caught(tmp_path):
    graph = {"bench.core.stats": {"bench.runner.run"}, "bench.runner.run": {"bench.core.stats"}}
    found = upward_imports(graph, set(graph))
    assert found == ["bench.core.stats (core) -> bench.runner.run (runner)"]


def test_the_bottom_layers_do_not_import_torch():
    for name, path in project_modules().items():
        if layer_of(name) <= 1:  # core and data
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            names |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
            assert not names & {"torch", "diffusers", "transformers", "open_clip", "ultralytics"}, name


@pytest.mark.parametrize("module", ["bench.core.errors", "bench.metrics"])
def test_layer_lookup(module):
    assert LAYERS[layer_of(module)][0] in ("core", "data")
