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
* ``mapping`` reports what each image became: ``mapped_to``, ``mapped_p``, the whole
  distribution ``mapping_dist`` over the labels of the image's label space, and that space's name
  ``mapping_space``. The per-concept before/after analysis of these rows is
  ``detectors.mapping.mapping_analysis``.

Label spaces (``bench.labels.label_space``: the one place that maps a concept type to its space):

* ``"objects"`` for objects, instances, logos and images of no catalog concept: every non-style
  catalog label, the extra labels and ``"nothing"``;
* ``"styles"`` for styles: every catalog style and ``"plain"`` (no style). A style label is the
  mean of its own prompts and of each non-style concept's first prompt "in the style of" it, and
  ``"plain"`` the mean of those first prompts unstyled, so the objects drawn average out and the
  style is what tells the labels apart. (Over object labels a van gogh picture of an apple is
  "apple", which says nothing about what erasing van gogh did.)
"""

from __future__ import annotations

from functools import cached_property

from bench.labels import (DEFAULT_TEMPLATE, NOTHING, OBJECTS_SPACE, STYLES_SPACE, label_space, space_prompts,
                          zero_shot_prompts)
from detectors import SCORERS
from detectors.base import concept_label
from detectors.clip_score import ClipBackedScorer



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
    version = "2"
    columns = ("detected", "concept_score", "zs_label", "zs_p")
    threshold = None  # the top label decides, not a probability

    def _score(self, images, prompts, concepts):
        objects = [l for l in self.label_prompts if l not in self.style_labels]
        styles = sorted(self.style_labels) + ([NOTHING] if self.nothing else [])
        emb = self.clip.encode_images(images)  # once: both label sets reuse it
        probs_obj = self._probabilities(emb, objects)
        probs_sty = self._probabilities(emb, styles) if self.style_labels else None
        rows = []
        for i, concept in enumerate(concepts):
            is_style = label_space(concept) == STYLES_SPACE and probs_sty is not None
            labels, probs = (styles, probs_sty[i]) if is_style else (objects, probs_obj[i])
            top = int(probs.argmax())
            target = concept_label(concept, self.name) if concept is not None else None
            if concept is not None and target is None:
                target = concept.name  # judged by another detector; still report the zero-shot view
            score = float(probs[labels.index(target)]) if target in labels else None
            rows.append({"detected": (labels[top] == target) if target is not None else None,
                         "concept_score": score if target is not None else None,
                         "zs_label": labels[top], "zs_p": float(probs[top])})
        return rows


@SCORERS.register("mapping")
class Mapping(ZeroShotBase):
    """What each image became: CLIP zero-shot distribution over its label space's labels."""

    name = "mapping"
    version = "2"
    columns = ("mapped_to", "mapped_p", "mapping_dist", "mapping_space")

    @cached_property
    def space_label_prompts(self) -> dict[str, dict[str, list[str]]]:
        """space -> label -> prompts (``space_prompts``)."""
        return {space: space_prompts(self.catalog, space, self.extra_labels, self.template, self.nothing)
                for space in (OBJECTS_SPACE, STYLES_SPACE)}

    def _space_probabilities(self, image_emb, space: str):
        prompts = self.space_label_prompts[space]
        labels = list(prompts)
        if space not in self._text_of_space:  # a style label averages ~20 prompts: encode once
            self._text_of_space[space] = self.clip.label_embeddings([prompts[l] for l in labels])
        text = self._text_of_space[space]
        return labels, (self.clip.logit_scale() * image_emb @ text.T).softmax(dim=-1)

    @cached_property
    def _text_of_space(self) -> dict:
        return {}

    def _score(self, images, prompts, concepts):
        spaces = [label_space(c) for c in concepts]
        emb = self.clip.encode_images(images)
        rows: list = [None] * len(images)
        for space in dict.fromkeys(spaces):  # each space once, for its images only
            idx = [i for i, s in enumerate(spaces) if s == space]
            labels, probs = self._space_probabilities(emb[idx], space)
            for i, row in zip(idx, probs.tolist()):
                top = max(range(len(labels)), key=row.__getitem__)
                rows[i] = {"mapped_to": labels[top], "mapped_p": float(row[top]),
                           "mapping_dist": {l: float(p) for l, p in zip(labels, row)},
                           "mapping_space": space}
        return rows
