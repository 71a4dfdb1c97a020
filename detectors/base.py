"""The one interface every eraselab scorer follows, and the image loader they share.

A scorer is a class registered in ``detectors.SCORERS`` with a ``name`` and a ``version``. Its
constructor takes backend options only (``device``, weight paths, thresholds) and loads nothing
heavy until first use; models are cached once per process by ``functools.lru_cache`` loaders.

Three kinds (``Scorer.kind``):

* ``"image"`` -- ``score(images, prompts, concepts) -> list[dict]``: one dict of columns per
  image. ``images`` are PIL images, ``prompts[i]`` the prompt image i was generated from (or
  None), ``concepts[i]`` the catalog ``Concept`` it was generated for (or None: the
  concept-dependent columns, e.g. ``detected``, are then None).
* ``"pair"`` -- ``score(edited, original) -> list[dict]``: one dict per (edited image, its
  same-seed original twin).
* ``"set"`` -- ``score(edited, original) -> dict``: one dict for two image sets (KID/FID).

Every returned dict also carries ``"<name>.version"`` (e.g. ``"clip-score.version": "1"``) and
``"<name>.backend"`` (the weights that produced it), so a results table never mixes scores of
different scorer versions or models unknowingly. Bump ``version`` whenever a score's meaning or
values change.

Images come from files through ``load_images(paths, size)``: a missing, unreadable or wrongly
sized file is a one-line ``EraselabError`` naming the file -- never a silent skip, because a
skipped image would read as a perfectly erased one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from bench.core.errors import EraselabError, quoted, shorten

from bench.core.images import read_image
from bench.core.schema import JUDGE_COLUMNS, JUDGE_ROLES


def load_images(paths: Sequence[str | Path], size: int | tuple[int, int] | None = None) -> list:
    """Open every path as an RGB PIL image; ``size`` (side or (width, height)) is enforced."""
    want = (size, size) if isinstance(size, int) else (tuple(size) if size is not None else None)
    images = []
    for path in paths:
        image = read_image(path)
        if want is not None and image.size != want:
            raise EraselabError(f"{path}: image is {image.size[0]}x{image.size[1]}, "
                                f"expected {want[0]}x{want[1]}")
        images.append(image)
    return images


def check_images(images: Sequence, where: str = "image") -> list:
    """Reject anything that is not a PIL image (e.g. a None from a failed render) and make RGB."""
    from PIL import Image

    out = []
    for i, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise EraselabError(f"{where} #{i}: expected a PIL image, got {type(image).__name__}")
        out.append(image if image.mode == "RGB" else image.convert("RGB"))
    return out


def read_description(folder, weights_file: str, meta_file: str, fmt: str, what: str) -> dict:
    """The JSON description beside a scorer's safetensors weights, after checking that both files
    are there and that it declares format ``fmt``: one-line errors naming the file."""
    import json

    folder = Path(folder)
    for name in (weights_file, meta_file):
        if not (folder / name).is_file():
            raise EraselabError(f"{folder / name}: {what} file not found")
    try:
        meta = json.loads((folder / meta_file).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EraselabError(f"{folder / meta_file}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise EraselabError(f"{folder / meta_file}: format {quoted(found)}, expected {fmt!r}")
    return meta


def read_safetensors(path, load_file) -> dict:
    """``load_file(path)`` (safetensors' numpy or torch reader: never unpickled), or one line."""
    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise EraselabError(f"{path}: unreadable safetensors file ({shorten(str(exc))})") from None


def resolve_device(device: str | None) -> str:
    """``"auto"``/None -> ``"cuda"`` when available, else ``"cpu"``; anything else unchanged."""
    if device in (None, "auto"):
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


class Scorer:
    """Base class: subclasses set ``name``, ``version``, ``columns`` and implement ``_score``."""

    name: str = ""
    version: str = "1"
    kind: str = "image"
    columns: tuple[str, ...] = ()
    # a judge's operating point on its ``concept_score`` (None: its top label decides, or no judge)
    threshold: float | None = None

    def __init__(self, device: str | None = "cpu", batch_size: int = 64):
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)

    @property
    def backend(self) -> str:
        """A short name of the weights this scorer uses (recorded next to every score)."""
        return ""

    def provenance(self) -> dict:
        return {f"{self.name}.version": str(self.version), f"{self.name}.backend": self.backend}

    def score(self, images, prompts=None, concepts=None) -> list[dict]:
        images = check_images(images)
        n = len(images)
        prompts = list(prompts) if prompts is not None else [None] * n
        concepts = list(concepts) if concepts is not None else [None] * n
        if len(prompts) != n or len(concepts) != n:
            raise ValueError(f"{self.name}: {n} images but {len(prompts)} prompts and "
                             f"{len(concepts)} concepts")
        if n == 0:
            return []
        rows = []
        for start in range(0, n, self.batch_size):
            stop = start + self.batch_size
            rows.extend(self._score(images[start:stop], prompts[start:stop], concepts[start:stop]))
        extra = self.provenance()
        return [{**row, **extra} for row in rows]

    def _score(self, images: list, prompts: list, concepts: list) -> list[dict]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r}, device={self.device!r})"


class PairScorer(Scorer):
    """Scores each edited image against its same-seed original twin."""

    kind = "pair"

    def score(self, edited, original) -> list[dict]:  # type: ignore[override]
        edited, original = check_images(edited, "edited image"), check_images(original, "original image")
        if len(edited) != len(original):
            raise EraselabError(f"{self.name}: {len(edited)} edited images but {len(original)} "
                                f"originals; each edited image needs its same-seed twin")
        rows = []
        for start in range(0, len(edited), self.batch_size):
            stop = start + self.batch_size
            rows.extend(self._score_pairs(edited[start:stop], original[start:stop]))
        extra = self.provenance()
        return [{**row, **extra} for row in rows]

    def _score_pairs(self, edited: list, original: list) -> list[dict]:
        raise NotImplementedError


class SetScorer(Scorer):
    """Compares two image sets as distributions (one dict for the pair of sets)."""

    kind = "set"

    def score(self, edited, original) -> dict:  # type: ignore[override]
        edited, original = check_images(edited, "edited image"), check_images(original, "original image")
        return {**self._score_sets(edited, original), **self.provenance()}

    def _score_sets(self, edited: list, original: list) -> dict:
        raise NotImplementedError


def concept_label(concept, scorer_name: str) -> str | None:
    """The label ``concept`` is judged by when its catalog detector (or its second judge) is
    ``scorer_name``.

    None when the concept is unknown or the catalog names other scorers for it: that scorer's
    ``detected`` column is then None (not applicable), not False.
    """
    if concept is None:
        return None
    for role in JUDGE_ROLES:
        entry = getattr(concept, role, None) or {}
        if entry.get("name") == scorer_name:
            return entry.get("label") or concept.name
    return None


def judge_columns(images: Sequence, prompts: Sequence[str], concepts: Sequence, scorer_for) -> list[dict]:
    """Per image, the verdicts of its concept's catalog judges under their own columns
    (``bench.core.schema.JUDGE_COLUMNS``: the detector's ``detected``, ``detected_score``, ...,
    the second judge's ``judge_detected``, ``judge_score``, ...; None where there is none), plus
    each judge's other columns. The one place a judge's output becomes row columns."""
    rows = [dict() for _ in images]
    for role, (name_col, detected_col, score_col, threshold_col) in JUDGE_COLUMNS.items():
        for row, judged in zip(rows, score_by_detector(images, prompts, concepts, scorer_for, role)):
            if judged is None:
                continue
            out = dict(judged[1])
            row[detected_col] = out.pop("detected", None)
            row[score_col] = out.pop("concept_score", None)
            row.update(out)
            row[name_col] = judged[0]
            row[threshold_col] = scorer_for(judged[0]).threshold
    for row in rows:
        for column in (c for columns in JUDGE_COLUMNS.values() for c in columns):
            row.setdefault(column, None)
    return rows


def score_by_detector(images: Sequence, prompts: Sequence[str], concepts: Sequence, scorer_for,
                      role: str = "detector") -> list:
    """Each image judged by its concept's own catalog judge of ``role`` (``concept.detector`` or
    ``concept.judge``), one batch per scorer: in image order, None for an image whose concept is
    None or names no such judge, else (scorer name, its output row). ``scorer_for(name)`` returns
    the (cached) scorer of that name."""
    out: list = [None] * len(images)
    by_detector: dict[str, list[int]] = {}
    for i, concept in enumerate(concepts):
        name = (getattr(concept, role, None) or {}).get("name") if concept is not None else None
        if name:
            by_detector.setdefault(name, []).append(i)
    for name, idx in sorted(by_detector.items()):
        outs = scorer_for(name).score([images[i] for i in idx], [prompts[i] for i in idx],
                                      [concepts[i] for i in idx])
        for i, row in zip(idx, outs):
            out[i] = (name, row)
    return out
