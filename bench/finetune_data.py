"""The image-caption pairs a resurgence study fine-tunes on, for one erased concept.

    from bench.finetune_data import finetune_pairs
    pairs = finetune_pairs(catalog, "snoopy", "unrelated", n=32, seed=0)   # [(PIL image, caption)]

Three kinds of data (docs/protocol.md, "Resurgence"):

* ``unrelated``: concepts far from the erased one: every catalog concept that is not the concept,
  its parent, its related concepts or its children (the rule of the unrelated prompt set);
* ``related``: the concept's parent, related concepts and children, never the concept itself;
* ``relearn``: ``n`` images of the erased concept itself, captioned with its name.

For the benign kinds no caption may name the erased concept (word match, any case): a render
whose caption does (an instance captioned with its parent class) is drawn again with the next
seed. On the mini world the pairs are rendered (bench/miniworld/render.py, the world's own
captions; a style is rendered on a seeded random object), with seeds of their own, so relearning
images are never the few-shot images the concept was erased with. For real models the benign
kinds come from a path: a folder of images with ``captions.jsonl`` (``{"file", "caption"}`` per
line, every image listed) or a JSONL file of ``{"image": PATH, "caption": TEXT}`` lines (paths
relative to the file); relearning uses the concept's catalog few-shot images, captioned with its
templates.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from bench.core.errors import EraselabError, quoted

KINDS = ("unrelated", "related", "relearn")


def neighbourhood(catalog, name: str) -> set[str]:
    """The concept, its parent, its related concepts and its children."""
    c = catalog[name]
    return {c.name, *([c.parent] if c.parent else []), *c.related,
            *(k.name for k in catalog.children(c.name))}


def source_concepts(catalog, name: str, kind: str) -> list[str]:
    """The catalog concepts whose images make ``kind`` data for erased concept ``name``."""
    if kind == "relearn":
        return [name]
    near = neighbourhood(catalog, name)
    if kind == "related":
        return sorted(near - {name})
    if kind == "unrelated":
        return sorted(n for n in catalog.concepts if n not in near)
    raise EraselabError(f"unknown fine-tuning data {quoted(kind)}; expected one of {', '.join(KINDS)}")


def names_concept(caption: str, name: str) -> bool:
    return re.search(rf"(?<![a-z]){re.escape(name.lower())}(?![a-z])", caption.lower()) is not None


def rendered_pairs(catalog, name: str, kind: str, n: int, seed: int) -> list[tuple]:
    """``n`` mini-world renders for ``kind`` data of concept ``name`` (round-robin over the
    source concepts, seeded by (concept, kind, seed))."""
    from PIL import Image

    from bench.miniworld import render as world

    sources = source_concepts(catalog, name, kind)
    if not sources:
        raise EraselabError(f"concept {quoted(name)} has no {kind} concepts in catalog "
                            f"{quoted(catalog.name)} to fine-tune on")
    rng = random.Random(f"finetune:{kind}:{name}:{seed}")
    pairs = []
    for i in range(n):
        source = catalog[sources[i % len(sources)]]
        for attempt in range(50):
            render_seed = world.stable_seed("finetune", kind, name, seed, i, attempt)
            if source.is_style:
                sample = world.render(rng.choice(sorted(world.OBJECTS)), style=source.name, seed=render_seed)
            else:
                sample = world.render(source.name, style="plain", seed=render_seed)
            if kind == "relearn" or not names_concept(sample.caption, name):
                break
        else:
            raise EraselabError(f"concept {quoted(source.name)}: every render's caption names "
                                f"{quoted(name)}; it cannot be benign data for it")
        pairs.append((Image.fromarray(sample.image).convert("RGB"), sample.caption))
    return pairs


def _folder_files(path: Path) -> list[Path]:
    from bench.fewshot import CAPTIONS_FILE
    return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.name != CAPTIONS_FILE)


def source_problem(path) -> str | None:
    """Why ``path`` cannot be fine-tuning data (checked cheaply, before any model work), or None."""
    from bench.fewshot import CAPTIONS_FILE

    path = Path(path)
    if path.is_dir():
        if not _folder_files(path):
            return f"{path}: image folder is empty"
        if not (path / CAPTIONS_FILE).is_file():
            return f"{path}: no {CAPTIONS_FILE}; fine-tuning data needs a caption per image"
        return None
    if path.is_file():
        return None
    return f"{path}: fine-tuning data not found (expected a folder with {CAPTIONS_FILE} or a JSONL file)"


def read_pairs(path) -> list[tuple]:
    """Image-caption pairs from a folder with captions.jsonl or from a JSONL file."""
    from bench.core.files import read_jsonl_objects
    from bench.fewshot import CAPTIONS_FILE, _read_image, read_captions

    path = Path(path)
    problem = source_problem(path)
    if problem:
        raise EraselabError(problem)
    if path.is_dir():
        files = _folder_files(path)
        captions = read_captions(path / CAPTIONS_FILE, {p.name for p in files})
        missing = [p.name for p in files if p.name not in captions]
        if missing:
            raise EraselabError(f"{path / CAPTIONS_FILE}: no caption for {quoted(missing[0])}")
        return [(_read_image(p).convert("RGB"), captions[p.name]) for p in files]
    else:
        pairs = []
        for number, record in read_jsonl_objects(path):
            image, caption = record.get("image"), record.get("caption")
            if not isinstance(image, str) or not isinstance(caption, str):
                raise EraselabError(f"{path}: line {number}: expected {{\"image\": PATH, \"caption\": TEXT}}")
            file = Path(image) if Path(image).is_absolute() else path.parent / image
            if not file.is_file():
                raise EraselabError(f"{path}: line {number}: image {quoted(image)} not found")
            pairs.append((_read_image(file).convert("RGB"), caption))
        if not pairs:
            raise EraselabError(f"{path}: no image-caption pairs")
        return pairs


def finetune_pairs(catalog, name: str, kind: str, n: int, seed: int, source=None,
                   fewshot_source=None) -> list[tuple]:
    """The ``kind`` pairs of concept ``name``: from ``source`` (a path) when given, else rendered
    (mini world) or, for ``relearn``, the concept's catalog few-shot images (or
    ``fewshot_source(concept, k, seed)``'s: the smoke run's stand-ins)."""
    if kind not in KINDS:
        raise EraselabError(f"unknown fine-tuning data {quoted(kind)}; expected one of {', '.join(KINDS)}")
    concept = catalog[name]
    if source is not None:
        pairs = read_pairs(source)
        if kind != "relearn":
            named = [c for _, c in pairs if names_concept(c, name)]
            if named:
                raise EraselabError(f"{source}: caption {quoted(named[0])} names {quoted(name)}; "
                                    f"{kind} data must not")
        if len(pairs) > n:
            keep = sorted(random.Random(f"finetune:{kind}:{name}:{seed}").sample(range(len(pairs)), n))
            pairs = [pairs[i] for i in keep]
        return pairs
    if (concept.images or {}).get("renderer") == "miniworld":
        return rendered_pairs(catalog, name, kind, n, seed)
    if kind == "relearn":
        from bench.fewshot import load_fewshot_images
        from methods.common import fill, training_templates
        images = (fewshot_source(concept, n, seed + 1000) if fewshot_source is not None
                  else load_fewshot_images(concept, n, seed + 1000))  # not the erasure's draw
        templates = concept.templates or training_templates(concept)
        return [(im, fill(templates[i % len(templates)], concept.name)) for i, im in enumerate(images)]
    raise EraselabError(f"concept {quoted(name)}: no {kind} fine-tuning data: the catalog renders no "
                        f"images for it; give resurgence.sources.{kind} (a folder or JSONL of "
                        f"image-caption pairs)")
