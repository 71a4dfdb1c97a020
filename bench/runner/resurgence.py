"""The ``resurgence:`` section of a suite: does an erased concept come back?

    resurgence:
      arms: [fewshot-te, esd-x]          # arms of `methods` (labels, or names of one-arm methods)
      steps: [0, 5, 10, 25, 50, 100]     # the checkpoint ladder of every fine-tuning chain
      images: 32                         # pairs per benign chain (relearning uses its shots)
      chains:                            # lists inside an entry expand to their product
        - {data: unrelated, module: [unet, text_encoder], mode: [lora, full]}
        - {data: relearn, shots: [1, 4], module: unet, mode: lora}
      recipe: {unet: {lora: {lr: 1.0e-3}}}   # overrides of bench/finetune.py RECIPE_DEFAULTS
      sources: {unrelated: PATH}         # real models: image-caption data (bench/finetune_data.py)
      prompt_sets: {target: {prompts: 2, samples: 8}}   # smaller sets per checkpoint (optional)
      intermediate_sets: [target]        # drawn between the first and last step (default: all)
      drift: [{scheduler: ddim, steps: 25}, {guidance: 1.0}]   # other samplers, per arm
      sequential: [snoopy, church, van gogh]                  # erase one after another, per arm

Every chain runs on every listed arm and, as the control, on the original model, with the same
data and seeds; drift settings run on the arms and the original; a sequence erases its concepts
one after another with each arm's method. Validation is part of the suite's
(bench/runner/suite.py): every problem is one line naming the key. Planning is in
bench/runner/plan.py, the fine-tuning in bench/finetune.py.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

from bench.core.errors import quoted
from bench.core.yamlio import key_problems, unknown_key_hint

KEYS = {"arms", "steps", "images", "chains", "recipe", "sources", "prompt_sets", "intermediate_sets",
        "drift", "sequential"}
CHAIN_KEYS = {"data", "module", "mode", "shots"}
DATA_KINDS = ("unrelated", "related", "relearn")
MODULES = ("unet", "text_encoder")
MODES = ("lora", "full")
DRIFT_KEYS = ("scheduler", "steps", "guidance")
RECIPE_KEYS = {"lr", "batch_size", "rank", "weight_decay", "grad_clip"}
# How tables name a module: short, as the method subsets do ("te-mlp")
MODULE_WORD = {"unet": "unet", "text_encoder": "te"}


@dataclasses.dataclass(frozen=True)
class Chain:
    """One fine-tuning chain: what data, which module, LoRA or full."""

    data: str
    module: str
    mode: str
    shots: int | None = None   # relearning: images of the concept itself

    @property
    def label(self) -> str:
        data = f"relearn k={self.shots}" if self.data == "relearn" else self.data
        return f"{data} {MODULE_WORD[self.module]} {self.mode}"


@dataclasses.dataclass(frozen=True)
class Resurgence:
    arms: tuple            # MethodSpec of each studied arm
    steps: tuple
    images: int
    chains: tuple          # of Chain
    recipe: dict           # module -> mode -> {key: value}: overrides of RECIPE_DEFAULTS
    sources: dict          # data kind -> path
    prompt_sets: dict      # set name -> PromptSetSpec, or {} for the suite's
    intermediate_sets: tuple | None  # the sets drawn between the first and last step; None: all
    drift: tuple           # of (label, {scheduler/steps/guidance overrides})
    sequential: tuple      # concept names, in erasure order


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def study_arms(names, methods, fail) -> list:
    """The MethodSpec of each arm a study section names (by label, or by the name of a method with
    one arm); each problem is reported through ``fail(key, message)``."""
    from bench.core.schema import ORIGINAL
    arms = []
    studied = [m for m in methods if m.name != ORIGINAL]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        fail("arms", f"expected a non-empty list of arm labels or method names, got {quoted(names)}")
        names = []
    for i, n in enumerate(names):
        by_label = [m for m in studied if m.label == n]
        by_name = [m for m in studied if m.name == n]
        found = by_label or (by_name if len(by_name) == 1 else [])
        if not found:
            known = sorted({m.label or m.name for m in studied})
            extra = f" (method {n!r} has {len(by_name)} arms: name one by its label)" if len(by_name) > 1 else ""
            fail(f"arms[{i}]", f"no arm {quoted(n)} in this suite's methods{extra}; "
                               f"{unknown_key_hint(n, known)}")
        elif found[0] in arms:
            fail(f"arms[{i}]", f"arm {quoted(n)} listed twice")
        elif found[0].transfer_from is not None:
            fail(f"arms[{i}]", f"arm {quoted(n)} is a transfer; study the arm it was made from")
        else:
            arms.append(found[0])
    return arms


def drift_label(setting: dict) -> str:
    return " ".join(f"{k}={setting[k]}" for k in DRIFT_KEYS if k in setting)


def parse(raw, methods, catalog, concepts, where: str, suite_path: Path, bad) -> Resurgence | None:
    """The section as a Resurgence, or None after reporting each problem through ``bad``."""
    from bench.samplers import SCHEDULER_CLASSES

    if not isinstance(raw, dict) or not raw:
        bad(where, "expected a mapping {arms, steps, chains, ...}")
        return None
    ok = [True]

    def fail(key, msg):
        ok[0] = False
        bad(f"{where}.{key}" if key else where, msg)

    for key, msg in key_problems(raw, KEYS, ("arms",)):
        fail(key, msg)
    arms = study_arms(raw.get("arms"), methods, fail)

    steps = raw.get("steps", [0])
    if not isinstance(steps, list) or not steps or not all(_is_int(s) and s >= 0 for s in steps):
        fail("steps", f"expected a list of non-negative integers, got {quoted(steps)}")
        steps = [0]
    elif any(b <= a for a, b in zip(steps, steps[1:])):
        fail("steps", f"the step ladder must increase, got {steps}")
    images = raw.get("images", 32)
    if not _is_int(images) or images < 1:
        fail("images", f"expected a positive integer, got {quoted(images)}")

    chains = []
    for i, entry in enumerate(raw.get("chains", []) or []):
        chains += _chains(entry, f"chains[{i}]", fail)
    if len(set(chains)) != len(chains):
        fail("chains", "a chain is declared twice")
    if raw.get("chains") is not None and not isinstance(raw.get("chains"), list):
        fail("chains", "expected a list of {data, module, mode, shots}")
    if chains and len(steps) < 2:
        fail("steps", "a fine-tuning chain needs at least one step after 0")

    recipe = raw.get("recipe", {}) or {}
    if not isinstance(recipe, dict):
        fail("recipe", "expected a mapping module -> mode -> {lr, batch_size, rank, ...}")
        recipe = {}
    for module, modes in recipe.items():
        if module not in MODULES:
            fail(f"recipe.{module}", f"unknown module; {unknown_key_hint(module, MODULES)}")
            continue
        if not isinstance(modes, dict):
            fail(f"recipe.{module}", "expected a mapping mode -> {lr, batch_size, ...}")
            continue
        for mode, values in modes.items():
            if mode not in MODES or not isinstance(values, dict):
                fail(f"recipe.{module}.{mode}", f"expected a mode ({', '.join(MODES)}) with a mapping")
                continue
            for k, v in values.items():
                if k not in RECIPE_KEYS:
                    fail(f"recipe.{module}.{mode}.{k}", f"unknown key; {unknown_key_hint(k, RECIPE_KEYS)}")
                elif isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 \
                        or (k in ("batch_size", "rank") and not _is_int(v)):
                    fail(f"recipe.{module}.{mode}.{k}", f"expected a positive number, got {quoted(v)}")

    sources = raw.get("sources", {}) or {}
    if not isinstance(sources, dict):
        fail("sources", "expected a mapping data kind -> path")
        sources = {}
    resolved_sources = {}
    for kind, p in sources.items():
        if kind not in DATA_KINDS:
            fail(f"sources.{kind}", f"unknown data kind; {unknown_key_hint(kind, DATA_KINDS)}")
            continue
        problem, path = _source_problem(p, suite_path)
        if problem:
            fail(f"sources.{kind}", problem)
        else:
            resolved_sources[kind] = str(path)

    if catalog is not None:
        for kind in sorted({c.data for c in chains if c.data != "relearn"} - set(resolved_sources)):
            problem = _unrendered_problem(catalog, concepts, kind)
            if problem:
                fail("sources", problem)
                break

    prompt_sets = {}
    if raw.get("prompt_sets") is not None:
        from bench.runner.suite import _prompt_sets
        sets, _ = _prompt_sets({"prompt_sets": raw["prompt_sets"]},
                               lambda key, msg: fail(key, msg))
        prompt_sets = sets

    intermediate = raw.get("intermediate_sets")
    from bench.core.schema import PROMPT_SETS
    if intermediate is not None and (not isinstance(intermediate, list) or not intermediate
                                     or any(n not in PROMPT_SETS for n in intermediate)):
        fail("intermediate_sets", f"expected a non-empty list of prompt sets from {list(PROMPT_SETS)}, "
                                  f"got {quoted(intermediate)}")
        intermediate = None

    drift = []
    for i, s in enumerate(raw.get("drift", []) or []):
        if not isinstance(s, dict) or not s:
            fail(f"drift[{i}]", f"expected a mapping with some of {', '.join(DRIFT_KEYS)}, got {quoted(s)}")
            continue
        for k, v in s.items():
            if k not in DRIFT_KEYS:
                fail(f"drift[{i}].{k}", f"unknown key; {unknown_key_hint(k, DRIFT_KEYS)}")
            elif k == "scheduler" and v not in ("default", *SCHEDULER_CLASSES):
                fail(f"drift[{i}].scheduler", f"unknown scheduler {quoted(v)}; "
                                              f"{unknown_key_hint(str(v), ('default', *SCHEDULER_CLASSES))}")
            elif k == "steps" and (not _is_int(v) or v < 1):
                fail(f"drift[{i}].steps", f"expected a positive integer, got {quoted(v)}")
            elif k == "guidance" and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
                fail(f"drift[{i}].guidance", f"expected a non-negative number, got {quoted(v)}")
        setting = {k: (float(v) if k == "guidance" and not isinstance(v, bool) and isinstance(v, (int, float)) else v)
                   for k, v in s.items() if k in DRIFT_KEYS}
        drift.append((drift_label(setting), setting))
    if len({label for label, _ in drift}) != len(drift):
        fail("drift", "a drift setting is declared twice")

    sequence = raw.get("sequential", []) or []
    if not isinstance(sequence, list) or not all(isinstance(c, str) for c in sequence):
        fail("sequential", f"expected a list of concept names, got {quoted(sequence)}")
        sequence = []
    for i, c in enumerate(sequence):
        if catalog is not None and c not in catalog:
            fail(f"sequential[{i}]", f"no concept {quoted(c)} in catalog {quoted(catalog.name)}; "
                                     f"{unknown_key_hint(c, list(catalog.concepts))}")
    if len(set(sequence)) != len(sequence):
        fail("sequential", "a concept is erased twice in the sequence")
    if sequence and len(sequence) < 2:
        fail("sequential", "a sequence erases at least two concepts")
    if not (chains or drift or sequence) and ok[0]:
        fail("", "declares no chains, drift settings or sequence: nothing to study")
    if not ok[0]:
        return None
    return Resurgence(arms=tuple(arms), steps=tuple(steps), images=images, chains=tuple(chains),
                      recipe={m: {k: dict(v) for k, v in modes.items()} for m, modes in recipe.items()},
                      sources=resolved_sources, prompt_sets=prompt_sets,
                      intermediate_sets=None if intermediate is None else tuple(intermediate), drift=tuple(drift),
                      sequential=tuple(sequence))


def _chains(entry, where: str, fail) -> list[Chain]:
    if not isinstance(entry, dict):
        fail(where, f"expected a mapping {{data, module, mode, shots}}, got {quoted(entry)}")
        return []
    for key, msg in key_problems(entry, CHAIN_KEYS, ("data",)):
        fail(f"{where}.{key}", msg)
    def values(key, default):
        v = entry.get(key, default)
        return v if isinstance(v, list) else [v]
    out = []
    data, modules, modes = values("data", None), values("module", "unet"), values("mode", "lora")
    shots = values("shots", None)
    for kind in data:
        if kind not in DATA_KINDS:
            fail(f"{where}.data", f"unknown data {quoted(kind)}; {unknown_key_hint(str(kind), DATA_KINDS)}")
            return []
    for m in modules:
        if m not in MODULES:
            fail(f"{where}.module", f"unknown module {quoted(m)}; {unknown_key_hint(str(m), MODULES)}")
            return []
    for m in modes:
        if m not in MODES:
            fail(f"{where}.mode", f"unknown mode {quoted(m)}; {unknown_key_hint(str(m), MODES)}")
            return []
    for kind, module, mode, k in itertools.product(data, modules, modes, shots):
        if kind == "relearn" and (not _is_int(k) or k < 1):
            fail(f"{where}.shots", f"relearning needs shots: a positive number of concept images, got {quoted(k)}")
            return []
        if kind != "relearn" and k is not None:
            fail(f"{where}.shots", f"shots is for relearning only ({kind!r} data uses `images`)")
            return []
        out.append(Chain(kind, module, mode, k if kind == "relearn" else None))
    return out


def _source_problem(p, suite_path: Path):
    """(problem, None) or (None, the resolved path) of one ``sources`` entry."""
    from bench.finetune_data import source_problem
    if not isinstance(p, str) or not p.strip():
        return f"expected a path, got {quoted(p)}", None
    path = Path(p).expanduser()
    if not path.is_absolute():
        path = Path(suite_path).parent / path
    path = path.resolve()
    problem = source_problem(path)
    return (problem, None) if problem else (None, path)


def _unrendered_problem(catalog, concepts, kind: str) -> str | None:
    """Why ``kind`` data cannot be rendered for some concept (its source concepts have no
    renderer), or None."""
    from bench.finetune_data import source_concepts
    for concept in concepts:
        for n in source_concepts(catalog, concept, kind):
            if (catalog[n].images or {}).get("renderer") != "miniworld":
                return (f"{kind} data for {concept!r} needs {quoted(n)} rendered, and the catalog renders "
                        f"no images for it; give sources.{kind} (a folder or JSONL of image-caption pairs)")
    return None


def chain_recipe(resurgence: Resurgence, chain: Chain, family: str):
    """The bench.finetune.Recipe a chain trains with on a model of ``family``."""
    from bench.finetune import RECIPE_DEFAULTS, Recipe
    base = RECIPE_DEFAULTS.get(family, RECIPE_DEFAULTS["sd"])[chain.module][chain.mode]
    values = {**base, **resurgence.recipe.get(chain.module, {}).get(chain.mode, {})}
    return Recipe(module=chain.module, mode=chain.mode, steps=resurgence.steps, **values)
