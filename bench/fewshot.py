"""Few-shot images of a concept, for methods that learn from real images (fewshot-te, ga, ...).

``load_fewshot_images(concept, k, seed, images_dir=None)`` returns ``k`` RGB PIL images: from
``images_dir`` when given, else from the concept's catalog image source, either
``{folder: PATH}`` (relative to the datasets/ folder) or ``{renderer: miniworld}`` (rendered by
bench/miniworld/render.py; a style concept is rendered on random objects in that style).
A folder with more than ``k`` images gives a seeded sample of ``k``; fewer gives all of them.
Every file in the folder must be a readable image: an empty folder, a broken or non-image file
is a one-line error naming it (a silently skipped file would change what is erased).
"""

from __future__ import annotations

import random
from pathlib import Path

from bench.core.errors import EraselabError
from bench.core.paths import DATASETS_DIR


def _read_image(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except UnidentifiedImageError:
        raise EraselabError(f"{path}: not an image file") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise EraselabError(f"{path}: unreadable image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def images_from_folder(folder, k: int, seed: int) -> list:
    folder = Path(folder)
    if not folder.is_dir():
        raise EraselabError(f"{folder}: image folder not found")
    files = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file())
    if not files:
        raise EraselabError(f"{folder}: image folder is empty")
    images = [_read_image(p) for p in files]  # all of them: a broken file is an error, not a skip
    if len(images) > k:
        chosen = sorted(random.Random(f"fewshot:{folder.name}:{seed}").sample(range(len(images)), k))
        images = [images[i] for i in chosen]
    return images


def _rendered(concept, k: int, seed: int) -> list:
    from PIL import Image

    try:
        from bench.miniworld import render as render_module
    except ImportError as exc:
        raise EraselabError(f"concept {concept.name!r}: the mini-world renderer is not available "
                            f"({exc}); pass --images DIR") from None
    rng = random.Random(f"fewshot-render:{concept.name}:{seed}")
    out = []
    for i in range(k):
        sample_seed = render_module.stable_seed("fewshot", concept.name, seed, i)
        if concept.is_style:
            subject = rng.choice(sorted(render_module.OBJECTS))
            sample = render_module.render(subject, style=concept.name, seed=sample_seed)
        else:
            sample = render_module.render(concept.name, style="plain", seed=sample_seed)
        out.append(Image.fromarray(sample.image).convert("RGB"))
    return out


def load_fewshot_images(concept, k: int, seed: int, images_dir=None) -> list:
    """``k`` few-shot images of ``concept`` (a bench.catalog.Concept) as RGB PIL images."""
    if not isinstance(k, int) or k < 1:
        raise EraselabError(f"few-shot image count must be a positive integer, got {k!r}")
    if images_dir is not None:
        return images_from_folder(images_dir, k, seed)
    source = getattr(concept, "images", None) or {}
    if "folder" in source:
        folder = Path(source["folder"])
        return images_from_folder(folder if folder.is_absolute() else DATASETS_DIR / folder, k, seed)
    if source.get("renderer") == "miniworld":
        return _rendered(concept, k, seed)
    raise EraselabError(f"concept {concept.name!r} has no image source in its catalog; pass --images DIR")
