"""Few-shot images of a concept, for methods that learn from real images (fewshot-te, ga, ...).

``load_fewshot_images(concept, k, seed, images_dir=None)`` returns ``k`` RGB PIL images: from
``images_dir`` when given, else from the concept's catalog image source, either
``{folder: PATH}`` (relative to the datasets/ folder) or ``{renderer: miniworld}`` (rendered by
bench/miniworld/render.py; a style concept is rendered on random objects in that style).
A folder with more than ``k`` images gives a seeded sample of ``k``; fewer gives all of them.
Every file in the folder must be a readable image: an empty folder, a broken or non-image file
is a one-line error naming it (a silently skipped file would change what is erased).

A folder may also hold ``captions.jsonl`` (``{"file": NAME, "caption": TEXT, ...}`` per line, as
``eraselab miniworld render`` writes it): it is not an image, it is read and checked (every
``file`` it names must be in the folder), and each image's caption is attached to it as
``image.info["caption"]`` for methods that can use one (the shipped methods prompt with the
catalog's templates and do not). Images the file does not list are used without a caption, with
a note on stderr.

Size rule: methods resize every few-shot image (bicubic, no crop) to the model's resolution, so
any size works, but an image under ``MIN_SIDE`` pixels on a side carries nothing to learn from
and is refused; one over PIL's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) is refused
before it is decoded.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from bench.core.errors import EraselabError, quoted
from bench.core.files import read_jsonl_objects
from bench.core.images import read_image
from bench.core.paths import DATASETS_DIR

CAPTIONS_FILE = "captions.jsonl"
MIN_SIDE = 16


def _read_image(path: Path):
    image = read_image(path)
    if min(image.size) < MIN_SIDE:
        raise EraselabError(f"{path}: image is {image.size[0]}x{image.size[1]}; few-shot images need "
                            f"at least {MIN_SIDE} pixels a side (they are resized to the model's "
                            f"resolution)")
    return image


def read_captions(path: Path, names: set[str]) -> dict[str, str]:
    """{file name: caption} from a captions.jsonl; every listed file must be among ``names``."""
    captions: dict[str, str] = {}
    for number, record in read_jsonl_objects(path):
        if not isinstance(record.get("file"), str) \
                or not isinstance(record.get("caption"), str):
            raise EraselabError(f"{path}: line {number}: expected {{\"file\": NAME, \"caption\": TEXT}}")
        if record["file"] not in names:
            raise EraselabError(f"{path}: line {number}: file {quoted(record['file'])} is not in "
                                f"the folder")
        captions[record["file"]] = record["caption"]
    return captions


def check_image_folder(folder) -> int:
    """Read every image of a few-shot folder (and its captions file) now, before any model is
    loaded: a bad file is then a one-line error in a second. Returns the number of images."""
    return len(images_from_folder(folder, k=10**9, seed=0, notes=False))


def images_from_folder(folder, k: int, seed: int, notes: bool = True) -> list:
    folder = Path(folder)
    if not folder.is_dir():
        raise EraselabError(f"{folder}: image folder not found")
    files = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file()
                   and p.name != CAPTIONS_FILE)
    if not files:
        raise EraselabError(f"{folder}: image folder is empty")
    images = [_read_image(p) for p in files]  # all of them: a broken file is an error, not a skip
    if (folder / CAPTIONS_FILE).is_file():
        captions = read_captions(folder / CAPTIONS_FILE, {p.name for p in files})
        unlisted = [p.name for p in files if p.name not in captions]
        if unlisted and notes:
            print(f"eraselab: note: {len(unlisted)} images in {folder} have no line in "
                  f"{CAPTIONS_FILE} and are used without a caption (first: {unlisted[0]})",
                  file=sys.stderr)
        for path, image in zip(files, images):
            if path.name in captions:
                image.info["caption"] = captions[path.name]
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
        raise EraselabError(f"few-shot image count must be a positive integer, got {quoted(k)}")
    if images_dir is not None:
        return images_from_folder(images_dir, k, seed)
    source = getattr(concept, "images", None) or {}
    if "folder" in source:
        folder = Path(source["folder"])
        return images_from_folder(folder if folder.is_absolute() else DATASETS_DIR / folder, k, seed)
    if source.get("renderer") == "miniworld":
        return _rendered(concept, k, seed)
    raise EraselabError(f"concept {concept.name!r} has no image source in its catalog; pass --images DIR")
