"""Benchmark suites: the YAML files under ``datasets/suites/``, their strict schema and loading.

A suite declares the grid one ``eraselab run`` covers: models x methods x concepts x seeds, the
prompt sets each concept is judged on, the sampler and the scorers. ``include:`` builds a variant
from a base in three lines (bench/core/yamlio.py). Check a file without running anything:

    eraselab validate datasets/suites/mini-default.yaml
    python -c "from bench.suite import load_suite; print(load_suite('mini-default'))"

Every problem is one line naming the file and the key (``methods[2].name``), with "did you mean"
for typos; a bad suite is rejected before any model is loaded.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bench.core.errors import EraselabError, ValidationError, quoted, suggest
from bench.core.paths import SUITE_DIR
from bench.core.yamlio import key_problems, load_with_includes, unknown_key_hint
from bench.core.schema import JUDGE_ROLES, ORIGINAL, PROMPT_SETS
from bench.samplers import PRECISIONS, SCHEDULER_CLASSES

TOP_KEYS = {"suite", "version", "description", "smoke_sized", "catalog", "models", "methods",
            "concepts", "prompt_sets", "general_prompts", "sampler", "scorers", "preservation",
            "scorer_options", "seeds", "resurgence", "robustness"}
REQUIRED_TOP = ("suite", "catalog", "models", "methods", "concepts", "prompt_sets", "sampler", "seeds")
MODEL_KEYS = {"id", "path"}
METHOD_KEYS = {"name", "variant", "overrides", "label", "study", "sweep", "transfer_from"}
VARIANT_KEY = "variant"  # a sweep over it changes the variant, not a config key
SET_KEYS = {"prompts", "samples", "extra"}
SAMPLER_KEYS = {"scheduler", "steps", "guidance", "resolution", "batch_size", "precision"}
SCHEDULERS = ("default", *SCHEDULER_CLASSES)
MINIWORLD = "miniworld"  # model path meaning the shipped mini-world pipeline
# Model paths naming shipped mini-world pipelines -> their folder in datasets/miniworld/v1/. The
# second shares the first's text encoder (and VAE) with the earlier 3.2M-parameter UNet: the
# model an erased text encoder is transferred to.
SHIPPED_MODELS = {MINIWORLD: "pipeline", "miniworld-small-unet": "pipeline-small-unet"}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    id: str
    path: str          # "miniworld", a local folder (resolved) or a hub id


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """One arm of the run: a method, its variant and overrides, and how tables name it."""

    name: str
    variant: str | None = None
    overrides: tuple = ()  # sorted (key, value) pairs, hashable
    arm: str | None = None  # the entry's label (a sweep arm's, formatted); None: the variant
    study: str | None = None  # the study the arm belongs to (a sweep's, by default)
    swept: tuple = ()  # (key, value) pairs this arm of a sweep sets, in the sweep's key order
    transfer_from: str | None = None  # a model id: erase there, plug the text encoder in here

    @property
    def label(self) -> str:
        """The arm's name in every table (the results' ``variant`` column)."""
        return self.arm or self.variant or ""


@dataclasses.dataclass(frozen=True)
class PromptSetSpec:
    prompts: int
    samples: int
    extra: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    raw: dict                      # the resolved mapping (includes merged): the manifest copy
    catalog: object                # bench.catalog.Catalog
    models: tuple[ModelSpec, ...]
    methods: tuple[MethodSpec, ...]
    concepts: tuple[str, ...]
    prompt_sets: dict              # name -> PromptSetSpec
    general_prompts: tuple[str, ...]
    sampler: dict                  # scheduler, steps, guidance, resolution, batch_size
    scorers: tuple[str, ...]       # image scorers (detectors are added from the catalog)
    preservation: tuple[str, ...]  # pair / set scorers
    scorer_options: dict
    seeds: tuple[int, ...]
    smoke_sized: bool = False
    resurgence: object = None      # bench.runner.resurgence.Resurgence, or None
    robustness: object = None      # bench.runner.robustness.Robustness, or None


def resolve_suite_path(name_or_path) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate
    named = SUITE_DIR / f"{name_or_path}.yaml"
    if named.is_file():
        return named
    known = sorted(p.stem for p in SUITE_DIR.glob("*.yaml") if not p.stem.startswith("_"))
    raise EraselabError(f"unknown suite {quoted(str(name_or_path))}; {suggest(name_or_path, known)}")


def load_suite(name_or_path) -> Suite:
    """Load and validate a suite by name (datasets/suites/NAME.yaml) or path."""
    path = resolve_suite_path(name_or_path)
    raw = load_with_includes(path)
    suite, problems = build_suite(raw, path)
    if problems:
        raise ValidationError(problems)
    return suite


def validate_suite_file(path) -> list[str]:
    """Every problem of one suite file, one line each (empty when valid)."""
    try:
        load_suite(Path(path))
    except ValidationError as exc:
        return exc.problems
    except EraselabError as exc:
        return [str(exc)]
    return []


_unknown = unknown_key_hint


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def build_suite(raw: dict, path: Path) -> tuple[Suite | None, list[str]]:
    """(Suite, []) or (None, problems). Checks names against the METHODS / SCORERS registries
    and the catalog, method configs against each method's typed Config, and local model paths."""
    problems: list[str] = []

    def bad(key: str, msg: str) -> None:
        problems.append(f"{path}: key {quoted(key)}: {msg}")

    for key, msg in key_problems(raw, TOP_KEYS, REQUIRED_TOP):
        bad(key, msg)
    name = raw.get("suite", path.stem)
    if not isinstance(name, str) or not name.strip():
        bad("suite", f"expected a non-empty name, got {quoted(name)}")

    # catalog + concepts
    catalog = None
    if "catalog" in raw:
        from bench.catalog import load_catalog
        try:
            catalog = load_catalog(raw["catalog"])
        except ValidationError as exc:
            bad("catalog", f"catalog {quoted(raw['catalog'])} is invalid ({len(exc.problems)} problems; "
                           f"run eraselab validate on it)")
        except EraselabError as exc:
            bad("catalog", str(exc))
    concepts_raw = raw.get("concepts", [])
    if concepts_raw == "all" and catalog is not None:
        concepts_raw = list(catalog.concepts)
    concepts: list[str] = []
    if not isinstance(concepts_raw, list) or not concepts_raw:
        bad("concepts", "expected a non-empty list of catalog concept names (or 'all')")
    else:
        for i, c in enumerate(concepts_raw):
            if not isinstance(c, str):
                bad(f"concepts[{i}]", f"expected a concept name, got {quoted(c)}")
            elif catalog is not None and c not in catalog:
                hint = suggest(c, catalog.concepts, fallback=False)
                hint = f"; {hint}" if hint else ""
                bad(f"concepts[{i}]", f"no concept {quoted(c)} in catalog {quoted(catalog.name)}{hint}")
            elif c in concepts:
                bad(f"concepts[{i}]", f"duplicate concept {quoted(c)}")
            else:
                concepts.append(c)

    models = _models(raw.get("models"), path, bad)
    methods = _methods(raw.get("methods"), bad)
    ids = [mo.id for mo in models]
    for m in methods:
        if m.transfer_from is not None and m.transfer_from not in ids:
            bad("methods", f"arm {m.label!r}: transfer_from {quoted(m.transfer_from)} is no model of this "
                           f"suite; {_unknown(m.transfer_from, ids)}")
        elif m.transfer_from is not None and len(ids) < 2:
            bad("methods", f"arm {m.label!r}: transfer_from needs a second model to plug the edit into")
    scorers, preservation, options = _scorers(raw, catalog, concepts, bad)
    sets, general = _prompt_sets(raw, bad)
    sampler = _sampler(raw.get("sampler"), bad)

    seeds = raw.get("seeds", [])
    if not isinstance(seeds, list) or not seeds or not all(_is_int(s) and s >= 0 for s in seeds):
        bad("seeds", f"expected a non-empty list of non-negative integers, got {quoted(seeds)}")
        seeds = []
    elif len(set(seeds)) != len(seeds):
        bad("seeds", "duplicate seed")
    smoke_sized = raw.get("smoke_sized", False)
    if not isinstance(smoke_sized, bool):
        bad("smoke_sized", f"expected true or false, got {quoted(smoke_sized)}")
        smoke_sized = False
    version = raw.get("version", 1)
    if not _is_int(version) or version < 1:
        bad("version", f"expected a positive integer, got {quoted(version)}")

    resurgence = None
    if raw.get("resurgence") is not None:
        from bench.runner.resurgence import parse
        resurgence = parse(raw["resurgence"], methods, catalog, concepts, "resurgence", Path(path), bad)
    robustness = None
    if raw.get("robustness") is not None:
        from bench.runner.robustness import parse as parse_robustness
        robustness = parse_robustness(raw["robustness"], methods, catalog, concepts, "robustness", bad)

    if problems:
        return None, problems
    suite = Suite(name=name, path=Path(path), raw=raw, catalog=catalog, models=tuple(models),
                  methods=tuple(methods), concepts=tuple(concepts), prompt_sets=sets,
                  general_prompts=tuple(general), sampler=sampler, scorers=tuple(scorers),
                  preservation=tuple(preservation), scorer_options=options, seeds=tuple(seeds),
                  smoke_sized=smoke_sized, resurgence=resurgence, robustness=robustness)
    # A run too small to report must say it is a smoke run (bench.metrics.size_problems).
    from bench.metrics import size_problems
    from bench.runner.plan import images_per_group
    too_small = size_problems(images_per_group(suite), len(seeds))
    if not smoke_sized and too_small:
        bad("smoke_sized", f"{too_small[0]}: set smoke_sized: true to declare a smoke-sized run, "
                           f"or enlarge it")
        return None, problems
    return suite, []


def _models(models_raw, path: Path, bad) -> list[ModelSpec]:
    out: list[ModelSpec] = []
    if not isinstance(models_raw, list) or not models_raw:
        bad("models", "expected a non-empty list of {id, path}")
        return out
    for i, m in enumerate(models_raw):
        if isinstance(m, str):
            m = {"id": m, "path": m}
        if not isinstance(m, dict):
            bad(f"models[{i}]", f"expected a mapping {{id, path}}, got {quoted(m)}")
            continue
        for key in m:
            if key not in MODEL_KEYS:
                bad(f"models[{i}].{key}", f"unknown key; {_unknown(key, MODEL_KEYS)}")
        mid, mpath = m.get("id"), m.get("path", m.get("id"))
        if not isinstance(mid, str) or not mid.strip():
            bad(f"models[{i}].id", f"expected a non-empty id, got {quoted(mid)}")
            continue
        if any(o.id == mid for o in out):
            bad(f"models[{i}].id", f"duplicate model id {quoted(mid)}")
        if not isinstance(mpath, str) or not mpath.strip():
            bad(f"models[{i}].path", f"expected a folder, hub id or 'miniworld', got {quoted(mpath)}")
            continue
        resolved = _model_path(mpath, path)
        problem = _model_path_problem(resolved)
        if problem:
            bad(f"models[{i}].path", problem)
            continue
        out.append(ModelSpec(id=mid, path=resolved))
    return out


def _looks_local(p: str) -> bool:
    return p.startswith((".", "/", "~")) or p.count("/") != 1 or Path(p).exists()


def _model_path(p: str, suite_path: Path) -> str:
    """``miniworld`` and hub ids (``org/name``) stay; a relative folder is relative to the suite."""
    if p in SHIPPED_MODELS or not _looks_local(p):
        return p
    local = Path(p).expanduser()
    if not local.is_absolute() and not local.exists():
        local = (Path(suite_path).parent / local)
    return str(local.resolve())


def _model_path_problem(p: str) -> str | None:
    if p in SHIPPED_MODELS or not _looks_local(p):
        return None  # the shipped model is checked when a run starts; a hub id when it loads
    local = Path(p)
    if not local.is_dir():
        return f"{p}: model folder not found (expected a diffusers pipeline folder, a hub id " \
               f"'org/name' or 'miniworld')"
    if not (local / "model_index.json").is_file():
        return f"{p}: not a diffusers pipeline folder (no model_index.json)"
    return None


def _methods(methods_raw, bad) -> list[MethodSpec]:
    """The arms of the suite's ``methods`` list: an entry is one arm, or with ``sweep:`` one arm
    per combination of the swept values (docs/contributing.md, "Sweeps and studies")."""
    from methods import METHODS
    out: list[MethodSpec] = []
    if not isinstance(methods_raw, list) or not methods_raw:
        bad("methods", "expected a non-empty list of {name, variant, overrides}")
        return out
    for i, m in enumerate(methods_raw):
        if isinstance(m, str):
            m = {"name": m}
        if not isinstance(m, dict):
            bad(f"methods[{i}]", f"expected a mapping {{name, variant, overrides}}, got {quoted(m)}")
            continue
        for key in m:
            if key not in METHOD_KEYS:
                bad(f"methods[{i}].{key}", f"unknown key; {_unknown(key, METHOD_KEYS)}")
        name = m.get("name")
        if name == ORIGINAL:  # the base model: always planned, listed or not; nothing to configure
            if any(m.get(k) for k in ("variant", "overrides", "sweep", "label", "study")):
                bad(f"methods[{i}]", f"{ORIGINAL!r} is the unedited base model: it takes no variant, "
                                     f"overrides, label, study or sweep")
            elif MethodSpec(ORIGINAL) not in out:
                out.append(MethodSpec(ORIGINAL))
            continue
        if not isinstance(name, str) or name not in METHODS:
            bad(f"methods[{i}].name", METHODS.unknown_message(name) if isinstance(name, str)
                else f"expected a method name, got {quoted(name)}")
            continue
        variant = m.get("variant")
        if variant is not None and not isinstance(variant, str):
            variant = str(variant)
        overrides = m.get("overrides") or {}
        if not isinstance(overrides, dict):
            bad(f"methods[{i}].overrides", f"expected a mapping of config keys, got {quoted(overrides)}")
            continue
        for key in ("label", "study", "transfer_from"):
            if m.get(key) is not None and (not isinstance(m[key], str) or not m[key].strip()):
                bad(f"methods[{i}].{key}", f"expected a non-empty text, got {quoted(m[key])}")
        source = m.get("transfer_from")
        cls = METHODS.get(name)
        if source is not None and (cls.component != "text_encoder" or cls.inference_time):
            bad(f"methods[{i}].transfer_from", f"{name!r} does not edit the text encoder alone; only a "
                                               f"text-encoder edit transfers to another model")
            continue
        arms = _arms(METHODS.get(name), m, variant, overrides, f"methods[{i}]", bad)
        for arm_variant, arm_overrides, label, study, swept in arms:
            # keys, types and variants do not depend on the model family: check against "sd"
            try:
                from methods.erase import resolve_method_config
                resolve_method_config(METHODS.get(name), "sd", arm_variant, arm_overrides)
            except EraselabError as exc:
                bad(f"methods[{i}]" + (f" (arm {label!r})" if swept else ""), str(exc))
                continue
            if source and not m.get("label"):
                label = f"{label + ' ' if label else (arm_variant + ' ' if arm_variant else '')}from {source}"
            spec = MethodSpec(name=name, variant=arm_variant,
                              overrides=tuple(sorted((k, _freeze(v)) for k, v in arm_overrides.items())),
                              arm=label, study=study, swept=swept, transfer_from=source)
            if any(o.name == name and o.label == spec.label for o in out):
                bad(f"methods[{i}]", f"duplicate arm: method {quoted(name)} labelled {quoted(spec.label)} "
                                     f"twice (give the entries distinct labels)")
                continue
            out.append(spec)
    return out


def _arms(method_cls, m: dict, variant, overrides: dict, where: str, bad) -> list[tuple]:
    """(variant, overrides, label, study, swept) of each arm one ``methods`` entry declares."""
    label, study, sweep = m.get("label"), m.get("study"), m.get("sweep")
    if sweep is None:
        return [(variant, overrides, label, study, ())]
    if not isinstance(sweep, dict) or not sweep:
        bad(f"{where}.sweep", f"expected a mapping key -> [values], got {quoted(sweep)}")
        return []
    fields = {f.name for f in dataclasses.fields(method_cls.Config)}
    keys = fields | ({VARIANT_KEY} if method_cls.variants or method_cls.variant_field else set())
    ok = True
    for key, values in sweep.items():
        if key not in keys:
            bad(f"{where}.sweep.{key}", f"unknown key of {quoted(m['name'])}; {_unknown(key, sorted(keys))}")
            ok = False
        elif not isinstance(values, list) or not values:
            bad(f"{where}.sweep.{key}", f"expected a non-empty list of values, got {quoted(values)}")
            ok = False
        elif len(set(map(repr, values))) != len(values):
            bad(f"{where}.sweep.{key}", "duplicate value")
            ok = False
        elif key in overrides or (key == VARIANT_KEY and variant is not None):
            bad(f"{where}.sweep.{key}", f"{key!r} is both swept and fixed in this entry")
            ok = False
    if label is not None and isinstance(label, str) and "{}" not in label:
        bad(f"{where}.label", "a sweep's label is a template with one '{}' for each arm's values")
        ok = False
    if not ok:
        return []
    import itertools
    study = study or f"{m['name']}: " + " x ".join(sweep)
    arms = []
    for values in itertools.product(*sweep.values()):
        swept = tuple((k, _freeze(v)) for k, v in zip(sweep, values))
        text = ", ".join(str(v) if k == VARIANT_KEY else f"{k}={v}" for k, v in swept)
        arm_variant = dict(swept).get(VARIANT_KEY, variant)
        arm_overrides = {**overrides, **{k: v for k, v in swept if k != VARIANT_KEY}}
        arms.append((None if arm_variant is None else str(arm_variant), arm_overrides,
                     label.replace("{}", text) if label else text, study, swept))
    return arms


def _freeze(v):
    return tuple(_freeze(x) for x in v) if isinstance(v, list) else v


def _scorers(raw, catalog, concepts, bad):
    from detectors import SCORERS
    image, pair_set = [], []
    for key, kinds, dest in (("scorers", ("image",), image), ("preservation", ("pair", "set"), pair_set)):
        names = raw.get(key, [])
        if not isinstance(names, list):
            bad(key, f"expected a list of scorer names, got {quoted(names)}")
            continue
        for i, n in enumerate(names):
            if not isinstance(n, str) or n not in SCORERS:
                bad(f"{key}[{i}]", SCORERS.unknown_message(n))
                continue
            kind = SCORERS.entry(n).tags.get("kind", "image")
            if kind not in kinds:
                bad(f"{key}[{i}]", f"scorer {quoted(n)} is a {kind} scorer; {key} takes {'/'.join(kinds)} scorers")
                continue
            dest.append(n)
    if catalog is not None:
        # the detectors the catalog names for the concepts and the subjects of their prompts
        for c in catalog.concepts.values():
            for role in JUDGE_ROLES:
                det = (getattr(c, role) or {}).get("name")
                if det and det not in SCORERS:
                    bad("catalog", f"concept {quoted(c.name)}: {role} {SCORERS.unknown_message(det)}")
    options = raw.get("scorer_options", {}) or {}
    if not isinstance(options, dict):
        bad("scorer_options", "expected a mapping scorer -> {argument: value}")
        return image, pair_set, {}
    import inspect
    for n, opts in options.items():
        if n not in SCORERS:
            bad(f"scorer_options.{n}", SCORERS.unknown_message(n))
            continue
        if not isinstance(opts, dict):
            bad(f"scorer_options.{n}", "expected a mapping of constructor arguments")
            continue
        params = set(inspect.signature(SCORERS.get(n).__init__).parameters) - {"self"}
        for k in opts:
            if k not in params:
                bad(f"scorer_options.{n}.{k}", f"unknown argument of {quoted(n)}; {_unknown(k, params)}")
    return image, pair_set, {k: dict(v) for k, v in options.items() if isinstance(v, dict)}


def _prompt_sets(raw, bad):
    sets_raw = raw.get("prompt_sets", {})
    sets: dict = {}
    if not isinstance(sets_raw, dict) or not sets_raw:
        bad("prompt_sets", f"expected a mapping with keys from {list(PROMPT_SETS)}")
        sets_raw = {}
    for name, spec in sets_raw.items():
        if name not in PROMPT_SETS:
            bad(f"prompt_sets.{name}", f"unknown prompt set; {_unknown(name, PROMPT_SETS)}")
            continue
        if not isinstance(spec, dict):
            bad(f"prompt_sets.{name}", "expected a mapping {prompts, samples, extra}")
            continue
        for key in spec:
            if key not in SET_KEYS:
                bad(f"prompt_sets.{name}.{key}", f"unknown key; {_unknown(key, SET_KEYS)}")
        ok = True
        for key in ("prompts", "samples"):
            v = spec.get(key)
            if not _is_int(v) or v < 1:
                bad(f"prompt_sets.{name}.{key}", f"expected a positive integer, got {quoted(v)}")
                ok = False
        extra = spec.get("extra", []) or []
        if not isinstance(extra, list) or not all(isinstance(e, str) and e.count("{}") == 1 for e in extra):
            bad(f"prompt_sets.{name}.extra", "expected a list of templates with one '{}' each")
            ok = False
        if ok:
            sets[name] = PromptSetSpec(prompts=spec["prompts"], samples=spec["samples"], extra=tuple(extra))
    general = raw.get("general_prompts", []) or []
    if not isinstance(general, list) or not all(isinstance(g, str) and g.strip() for g in general):
        bad("general_prompts", "expected a list of prompt strings")
        general = []
    return sets, general


def _sampler(s, bad) -> dict:
    if not isinstance(s, dict):
        bad("sampler", "expected a mapping {scheduler, steps, guidance, resolution, batch_size, precision}")
        return {}
    for key in s:
        if key not in SAMPLER_KEYS:
            bad(f"sampler.{key}", f"unknown key; {_unknown(key, SAMPLER_KEYS)}")
    out = {"scheduler": s.get("scheduler", "default"), "steps": s.get("steps"),
           "guidance": s.get("guidance", 7.5), "resolution": s.get("resolution"),
           "batch_size": s.get("batch_size", 16), "precision": s.get("precision", "fp32")}
    if out["scheduler"] not in SCHEDULERS:
        bad("sampler.scheduler", f"unknown scheduler {quoted(out['scheduler'])}; {_unknown(out['scheduler'], SCHEDULERS)}")
    if not _is_int(out["steps"]) or out["steps"] <= 0:
        bad("sampler.steps", f"expected a positive integer, got {quoted(out['steps'])}")
    if not _is_number(out["guidance"]) or out["guidance"] < 0:
        bad("sampler.guidance", f"expected a non-negative number, got {quoted(out['guidance'])}")
    r = out["resolution"]
    if r is not None and (not _is_int(r) or r <= 0 or r % 8):
        bad("sampler.resolution", f"expected null or a positive multiple of 8, got {quoted(r)}")
    if not _is_int(out["batch_size"]) or out["batch_size"] < 1:
        bad("sampler.batch_size", f"expected a positive integer, got {quoted(out['batch_size'])}")
    if out["precision"] not in PRECISIONS:
        bad("sampler.precision", f"expected one of {', '.join(PRECISIONS)}, got {quoted(out['precision'])}")
    out["guidance"] = float(out["guidance"]) if _is_number(out["guidance"]) else out["guidance"]
    return out
