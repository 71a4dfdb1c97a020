"""Concept catalogs: the YAML files under ``datasets/catalogs/`` and their strict schema.

A catalog lists the concepts a benchmark can erase: objects, named instances of an object
(``snoopy`` -> ``english springer``), logos and styles, with their prompt templates, the detector
label that recognises each (``detector``) and a second, independent judge (``judge``), and where
its few-shot images come from. Load one with
``load_catalog("miniworld")`` (a name under datasets/catalogs/) or a path; check files with
``eraselab validate PATH``. Every schema problem is one line naming the file, concept and key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.core.errors import EraselabError, ValidationError, quoted, shorten, suggest
from bench.core.paths import CATALOG_DIR
from bench.core.schema import JUDGE_ROLES
from bench.core.yamlio import key_problems, load_with_includes

CONCEPT_TYPES = ("object", "instance", "style", "logo")
TOP_LEVEL_KEYS = {"name", "version", "description", "templates", "defaults", "concepts",
                  "nothing_prompts"}
CONCEPT_KEYS = {"name", "type", "parent", "related", "templates", "detector", "judge", "images",
                "imagenet_id", "aliases", "description", "translations"}
REQUIRED_CONCEPT_KEYS = ("name", "type")
PROBE_ONLY_FIELDS = ("description", "translations")
DETECTOR_KEYS = {"name", "label"}
IMAGE_SOURCE_KEYS = {"renderer", "folder"}
DEFAULT_KEYS = {"detector", "judge", "images"}


@dataclass(frozen=True)
class Concept:
    name: str
    type: str
    templates: tuple[str, ...]
    parent: str | None = None
    related: tuple[str, ...] = ()
    detector: dict = field(default_factory=dict)  # {"name": scorer, "label": its label}
    judge: dict = field(default_factory=dict)     # the second, independent judge: the same shape
    images: dict = field(default_factory=dict)    # {"renderer": "miniworld"} or {"folder": path}
    imagenet_id: int | None = None
    aliases: tuple[str, ...] = ()
    description: str = ""   # what the concept looks like, without its name (the description probe)
    translations: dict = field(default_factory=dict)  # language code -> the name in that language

    @property
    def judge_names(self) -> tuple[str, ...]:
        """The scorers that judge this concept: its detector, then its second judge (if any)."""
        return tuple(n for n in ((getattr(self, role) or {}).get("name") for role in JUDGE_ROLES) if n)

    @property
    def is_style(self) -> bool:
        return self.type == "style"

    def prompts(self) -> list[str]:
        """Every template filled with this concept's name."""
        return [t.replace("{}", self.name) for t in self.templates]

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "parent": self.parent,
                "related": list(self.related), "templates": list(self.templates),
                "detector": dict(self.detector), "judge": dict(self.judge), "images": dict(self.images),
                "imagenet_id": self.imagenet_id, "aliases": list(self.aliases),
                "description": self.description, "translations": dict(self.translations)}

    def identity(self) -> dict:
        """What of the concept an erasure depends on (part of every edit's address): everything
        but the words only the prompt probes read (description, translations), so that writing
        a description does not erase again."""
        return {k: v for k, v in self.to_dict().items() if k not in PROBE_ONLY_FIELDS}


@dataclass(frozen=True)
class Catalog:
    name: str
    version: int
    path: Path
    concepts: dict[str, Concept]
    description: str = ""
    # Zero-shot prompts of the "nothing recognisable" label (empty: the scorers' generic ones).
    nothing_prompts: tuple[str, ...] = ()

    def __getitem__(self, name: str) -> Concept:
        if name not in self.concepts:
            hint = suggest(name, self.concepts, fallback=False)
            hint = f"; {hint}" if hint else ""
            raise EraselabError(f"{self.path}: no concept {quoted(name)} in catalog {quoted(self.name)}{hint}")
        return self.concepts[name]

    def __contains__(self, name: str) -> bool:
        return name in self.concepts

    def of_type(self, *types: str) -> list[Concept]:
        return [c for c in self.concepts.values() if c.type in types]

    def labels(self) -> list[str]:
        """Every concept name: the label set of zero-shot mapping."""
        return list(self.concepts)

    def children(self, name: str) -> list[Concept]:
        return [c for c in self.concepts.values() if c.parent == name]


def resolve_catalog_path(name_or_path: str | Path) -> Path:
    """A catalog name (``miniworld``) resolves under datasets/catalogs/; else it is a path."""
    if not isinstance(name_or_path, (str, Path)) or not str(name_or_path).strip():
        raise EraselabError(f"catalog: expected a catalog name or a YAML path, got {quoted(name_or_path)}")
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate
    named = CATALOG_DIR / f"{name_or_path}.yaml"
    if named.is_file():
        return named
    known = sorted(p.stem for p in CATALOG_DIR.glob("*.yaml") if not p.stem.startswith("_"))
    raise EraselabError(f"unknown catalog {str(name_or_path)!r}; known: {', '.join(known)}")


def load_catalog(name_or_path: str | Path) -> Catalog:
    """Load and validate a catalog; raises ValidationError listing every problem."""
    path = resolve_catalog_path(name_or_path)
    raw = load_with_includes(path, merge_lists={"concepts": "name"})
    catalog, problems = _build(raw, path)
    if problems:
        raise ValidationError(problems)
    return catalog


def validate_catalog_file(path: Path) -> list[str]:
    """Every problem of one catalog file, one line each (empty when valid).

    A file without ``concepts`` is a fragment meant to be included (``_templates.yaml``):
    its own keys and templates are checked.
    """
    try:
        raw = load_with_includes(path, merge_lists={"concepts": "name"})
        if not raw:
            return [f"{path}: empty; a catalog needs name, version and concepts "
                    f"(a fragment for include: needs templates)"]
        if "concepts" not in raw:
            return _fragment_problems(raw, Path(path))
        load_catalog(path)
    except ValidationError as exc:
        return exc.problems
    except EraselabError as exc:
        return [str(exc)]
    return []


def _fragment_problems(raw: dict, path: Path) -> list[str]:
    problems = [f"{path}: unknown top-level key {quoted(k)}; expected one of {sorted(TOP_LEVEL_KEYS)}"
                for k in raw if k not in TOP_LEVEL_KEYS | {"include"}]
    templates = raw.get("templates", {})
    if not isinstance(templates, dict):
        return problems + [f"{path}: key 'templates': expected a mapping"]
    for ctype, tlist in templates.items():
        if ctype not in CONCEPT_TYPES:
            problems.append(f"{path}: key 'templates.{shorten(ctype)}': unknown concept type")
        problems.extend(f"{path}: key 'templates.{shorten(ctype)}': {p}" for p in _template_problems(tlist))
    return problems


def _build(raw: dict, path: Path) -> tuple[Catalog | None, list[str]]:
    problems: list[str] = []
    where = str(path)

    def bad(msg: str) -> None:
        problems.append(f"{where}: {msg}")

    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            bad(f"unknown top-level key {quoted(key)}; expected one of {sorted(TOP_LEVEL_KEYS)}")
    for key in ("name", "version", "concepts"):
        if key not in raw:
            bad(f"missing required top-level key {quoted(key)}")
    version = raw.get("version")
    if "version" in raw and (not isinstance(version, int) or isinstance(version, bool) or version < 1):
        bad(f"key 'version': expected a positive integer, got {quoted(version)}")

    templates = raw.get("templates", {}) or {}
    if not isinstance(templates, dict):
        bad("key 'templates': expected a mapping from concept type to a list of templates")
        templates = {}
    for ctype, tlist in templates.items():
        if ctype not in CONCEPT_TYPES:
            bad(f"key 'templates.{shorten(ctype)}': unknown concept type; expected one of {list(CONCEPT_TYPES)}")
        problems.extend(f"{where}: key 'templates.{shorten(ctype)}': {p}" for p in _template_problems(tlist))

    defaults = raw.get("defaults", {}) or {}
    if not isinstance(defaults, dict):
        bad("key 'defaults': expected a mapping")
        defaults = {}
    for key in defaults:
        if key not in DEFAULT_KEYS:
            bad(f"key 'defaults.{shorten(key)}': unknown key; expected one of {sorted(DEFAULT_KEYS)}")

    nothing_prompts = raw.get("nothing_prompts", []) or []
    if not (isinstance(nothing_prompts, list) and all(isinstance(t, str) and t.strip() for t in nothing_prompts)):
        bad("key 'nothing_prompts': expected a list of non-empty strings")
        nothing_prompts = []

    concepts_raw = raw.get("concepts", []) or []
    if not isinstance(concepts_raw, list):
        bad("key 'concepts': expected a list of concept mappings")
        concepts_raw = []
    elif "concepts" in raw and not concepts_raw:
        bad("key 'concepts': empty; a catalog needs at least one concept")

    concepts: dict[str, Concept] = {}
    for i, record in enumerate(concepts_raw):
        concept, cproblems = _build_concept(record, i, templates, defaults, where)
        problems.extend(cproblems)
        if concept is None:
            continue
        if concept.name in concepts:
            problems.append(f"{where}: concept {quoted(concept.name)}: key 'name': duplicate concept name")
            continue
        concepts[concept.name] = concept

    problems.extend(_reference_problems(concepts, where))
    if problems:
        return None, problems
    return Catalog(name=str(raw["name"]), version=version, path=path, concepts=concepts,
                   description=str(raw.get("description", "")),
                   nothing_prompts=tuple(nothing_prompts)), []


def _template_problems(tlist) -> list[str]:
    if not isinstance(tlist, list) or not tlist:
        return ["expected a non-empty list of templates"]
    out = []
    for t in tlist:
        if not isinstance(t, str) or not t.strip():
            out.append(f"empty template {quoted(t)}")
        elif t.count("{}") != 1:
            out.append(f"template {quoted(t)} must contain exactly one '{{}}' placeholder")
    return out


def _build_concept(record, index: int, templates: dict, defaults: dict, where: str):
    if not isinstance(record, dict):
        return None, [f"{where}: concept #{index}: expected a mapping, got {type(record).__name__}"]
    name = record.get("name")
    label = f"concept {quoted(name)}" if isinstance(name, str) and name else f"concept #{index}"
    problems = []

    def bad(key: str, msg: str) -> None:
        problems.append(f"{where}: {label}: key {quoted(key)}: {msg}")

    for key, msg in key_problems(record, CONCEPT_KEYS, REQUIRED_CONCEPT_KEYS):
        bad(key, msg)
    if "name" in record and (not isinstance(name, str) or not name.strip() or name != name.strip()):
        bad("name", f"expected a non-empty name without surrounding spaces, got {quoted(name)}")
    ctype = record.get("type")
    if "type" in record and ctype not in CONCEPT_TYPES:
        bad("type", f"expected one of {list(CONCEPT_TYPES)}, got {quoted(ctype)}")
    parent = record.get("parent")
    if ctype == "instance" and not parent:
        bad("parent", "an instance needs a parent concept")
    if parent is not None and not isinstance(parent, str):
        bad("parent", f"expected a concept name, got {quoted(parent)}")
    if ctype in ("object", "style") and parent:
        bad("parent", f"a {shorten(ctype)} has no parent; use 'related' instead")
    related = record.get("related", []) or []
    if not isinstance(related, list) or not all(isinstance(r, str) and r for r in related):
        bad("related", "expected a list of concept names")
        related = []
    aliases = record.get("aliases", []) or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        bad("aliases", "expected a list of non-empty strings")
        aliases = []

    own_templates = record.get("templates")
    if own_templates is not None:
        tproblems = _template_problems(own_templates)
        for p in tproblems:
            bad("templates", p)
        concept_templates = own_templates if not tproblems else []
    else:
        concept_templates = templates.get(ctype, []) if ctype in CONCEPT_TYPES else []
        if ctype in CONCEPT_TYPES and not concept_templates:
            bad("templates", f"no templates of its own and none for type {quoted(ctype)} in the catalog")

    detector, judge = (_judge_entry(record, defaults, key, name, bad) for key in JUDGE_ROLES)
    if judge and judge.get("name") == detector.get("name"):
        bad("judge", f"names the detector's own scorer {quoted(judge.get('name'))}; the second judge "
                     f"must be another scorer (or null: none)")

    images = record.get("images", defaults.get("images", {})) or {}
    # No source is allowed: methods that need images then ask for --images.
    if not isinstance(images, dict) or len(images) > 1 or not set(images) <= IMAGE_SOURCE_KEYS:
        bad("images", "expected exactly one of {renderer: NAME} or {folder: PATH}")
        images = {}

    imagenet_id = record.get("imagenet_id")
    if imagenet_id is not None and (not isinstance(imagenet_id, int) or isinstance(imagenet_id, bool)
                                    or not 0 <= imagenet_id < 1000):
        bad("imagenet_id", f"expected an ImageNet class index 0..999, got {quoted(imagenet_id)}")
    description = record.get("description", "")
    if not isinstance(description, str):
        bad("description", "expected a string")
    translations = record.get("translations", {}) or {}
    if not isinstance(translations, dict) or not all(
            isinstance(k, str) and k.strip() and isinstance(v, str) and v.strip() for k, v in translations.items()):
        bad("translations", "expected a mapping language code -> name, e.g. {de: Kirche, fr: église}")
        translations = {}

    if problems:
        return None, problems
    return Concept(name=name, type=ctype, templates=tuple(concept_templates), parent=parent,
                   related=tuple(related), detector=detector, judge=judge, images=images,
                   imagenet_id=imagenet_id, aliases=tuple(aliases),
                   description=description, translations=dict(translations)), []


def _judge_entry(record: dict, defaults: dict, key: str, name, bad) -> dict:
    """A concept's ``detector`` or ``judge``: {name: scorer, label: its label}, from the concept or
    the catalog's defaults (``null`` on a concept: none); the label defaults to the concept's name."""
    entry = record.get(key, defaults.get(key, {})) or {}
    if not isinstance(entry, dict):
        bad(key, "expected a mapping with 'name' and 'label'")
        return {}
    for k in entry:
        if k not in DETECTOR_KEYS:
            bad(f"{key}.{shorten(k)}", f"unknown key; expected one of {sorted(DETECTOR_KEYS)}")
    if entry and "name" not in entry:
        bad(f"{key}.name", "missing required key")
    entry = dict(entry)
    if entry and "label" not in entry and isinstance(name, str):
        entry["label"] = name  # the default label is the concept's own name
    return entry


def _reference_problems(concepts: dict[str, Concept], where: str) -> list[str]:
    problems = []
    for c in concepts.values():
        if c.parent is not None and c.parent not in concepts:
            problems.append(f"{where}: concept {quoted(c.name)}: key 'parent': {quoted(c.parent)} is not a "
                            f"concept in this catalog")
        for r in c.related:
            if r not in concepts:
                problems.append(f"{where}: concept {quoted(c.name)}: key 'related': {quoted(r)} is not a "
                                f"concept in this catalog")
            elif r == c.name:
                problems.append(f"{where}: concept {quoted(c.name)}: key 'related': names itself")
    # parent cycles: follow each chain; a name seen twice is a cycle
    reported = set()
    for c in concepts.values():
        seen = [c.name]
        node = c
        while node.parent is not None and node.parent in concepts:
            if node.parent in seen:
                cycle = seen[seen.index(node.parent):] + [node.parent]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    problems.append(f"{where}: concept {quoted(c.name)}: key 'parent': cycle "
                                    f"{' -> '.join(cycle)}")
                break
            seen.append(node.parent)
            node = concepts[node.parent]
    return problems
