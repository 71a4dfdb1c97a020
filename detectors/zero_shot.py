"""CLIP zero-shot classification over the catalog's labels: ``clip-zero-shot`` and ``mapping``.

Each label is one unit-norm text embedding: the mean over its prompts (``zero_shot_prompts``: a
catalog concept's own templates filled with its name, and, for a concept that is not a style, its
first prompt in each of the catalog's styles, prompt ensembling as in CLIP's zero-shot evaluation;
``template`` for labels from elsewhere, e.g. detector classes), plus a ``"nothing"`` label (the
catalog's ``nothing_prompts``, else an empty picture / noise) so that an image showing nothing
recognisable is not forced onto some concept. Probabilities are softmax(logit_scale * cosine).
The mini-world model card measures its CLIP with these same prompts.

* ``clip-zero-shot`` is a *detector*: ``detected`` = the top label is the concept's own label
  (styles compete only with styles, everything else with everything but styles). The paper's
  catalog judges instances, logos and styles this way.
* ``mapping`` reports what each image became: ``mapped_to``, ``mapped_p`` and the whole
  distribution ``mapping_dist`` over every label (catalog + extra labels + nothing). The per-concept
  before/after analysis of these rows is ``detectors.mapping.mapping_analysis``.
"""

from __future__ import annotations

from functools import cached_property

from detectors import SCORERS
from detectors.base import concept_label
from detectors.clip_score import ClipBackedScorer

NOTHING = "nothing"
NOTHING_PROMPTS = ("an empty picture", "a picture of nothing", "noise")
DEFAULT_TEMPLATE = "a photo of a {}"


def zero_shot_prompts(catalog, extra_labels=(), template: str = DEFAULT_TEMPLATE,
                      nothing: bool = True) -> dict[str, list[str]]:
    """label -> its prompts, in a fixed order: catalog concepts, extra labels, nothing."""
    styles = [c.name for c in catalog.of_type("style")]
    out: dict[str, list[str]] = {}
    for concept in catalog.concepts.values():
        prompts = concept.prompts()
        if not concept.is_style:
            prompts += [f"{prompts[0]} in the style of {style}" for style in styles]
        out[concept.name] = prompts
    for label in extra_labels:
        out.setdefault(label, [template.replace("{}", label)])
    if nothing:
        out[NOTHING] = list(catalog.nothing_prompts or NOTHING_PROMPTS)
    return out


class ZeroShotBase(ClipBackedScorer):
    def __init__(self, device: str | None = "cpu", batch_size: int = 64, clip_model: str = "miniworld-clip",
                 clip_pretrained: str | None = None, clip_root: str | None = None,
                 catalog: str = "miniworld", extra_labels: tuple[str, ...] | list[str] = (),
                 template: str = DEFAULT_TEMPLATE, nothing: bool = True):
        super().__init__(device, batch_size, clip_model, clip_pretrained, clip_root)
        self.catalog_name = catalog
        self.extra_labels = tuple(extra_labels)
        self.template = template
        self.nothing = bool(nothing)

    @cached_property
    def catalog(self):
        from bench.catalog import load_catalog
        return load_catalog(self.catalog_name) if isinstance(self.catalog_name, str) else self.catalog_name

    @cached_property
    def label_prompts(self) -> dict[str, list[str]]:
        """label -> its prompts (``zero_shot_prompts``)."""
        return zero_shot_prompts(self.catalog, self.extra_labels, self.template, self.nothing)

    @cached_property
    def style_labels(self) -> set[str]:
        return {c.name for c in self.catalog.of_type("style")}

    def _probabilities(self, image_emb, labels: list[str]):
        """(N, len(labels)) softmax probabilities over ``labels`` for unit-norm image embeddings."""
        text = self.clip.label_embeddings([self.label_prompts[l] for l in labels])
        logits = self.clip.logit_scale() * image_emb @ text.T
        return logits.softmax(dim=-1)


@SCORERS.register("clip-zero-shot")
class ClipZeroShot(ZeroShotBase):
    """CLIP zero-shot detector: the top catalog label is the concept's own (styles vs styles)."""

    name = "clip-zero-shot"
    version = "1"
    columns = ("detected", "zs_label", "zs_p")

    def _score(self, images, prompts, concepts):
        objects = [l for l in self.label_prompts if l not in self.style_labels]
        styles = sorted(self.style_labels) + ([NOTHING] if self.nothing else [])
        emb = self.clip.encode_images(images)  # once: both label sets reuse it
        probs_obj = self._probabilities(emb, objects)
        probs_sty = self._probabilities(emb, styles) if self.style_labels else None
        rows = []
        for i, concept in enumerate(concepts):
            is_style = concept is not None and concept.is_style and probs_sty is not None
            labels, probs = (styles, probs_sty[i]) if is_style else (objects, probs_obj[i])
            top = int(probs.argmax())
            target = concept_label(concept, self.name) if concept is not None else None
            if concept is not None and target is None:
                target = concept.name  # judged by another detector; still report the zero-shot view
            rows.append({"detected": (labels[top] == target) if target is not None else None,
                         "zs_label": labels[top], "zs_p": float(probs[top])})
        return rows


@SCORERS.register("mapping")
class Mapping(ZeroShotBase):
    """What each image became: CLIP zero-shot distribution over every catalog label."""

    name = "mapping"
    version = "1"
    columns = ("mapped_to", "mapped_p", "mapping_dist")

    def _score(self, images, prompts, concepts):
        labels = list(self.label_prompts)
        probs = self._probabilities(self.clip.encode_images(images), labels)
        rows = []
        for row in probs.tolist():
            top = max(range(len(labels)), key=row.__getitem__)
            rows.append({"mapped_to": labels[top], "mapped_p": float(row[top]),
                         "mapping_dist": {l: float(p) for l, p in zip(labels, row)}})
        return rows
