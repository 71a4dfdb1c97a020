"""``clip-score``: cosine between the evaluation CLIP's image embedding and its prompt's text
embedding (raw cosine in [-1, 1], not x100 and not clipped at 0, as the paper reports it).

Always the evaluation CLIP, never the text encoder of the model under test: an erased text
encoder scoring its own images would hide the erasure.

    from detectors import SCORERS
    rows = SCORERS.get("clip-score")().score(images, prompts, concepts)   # [{"clip_score": 0.31, ...}]
"""

from __future__ import annotations

from detectors import SCORERS
from detectors.base import Scorer
from detectors.clip_backend import MINI_CLIP, UsesEvaluationClip


class ClipBackedScorer(UsesEvaluationClip, Scorer):
    """Shared constructor of scorers that use the evaluation CLIP."""

    def __init__(self, device: str | None = "cpu", batch_size: int = 64, clip_model: str = MINI_CLIP,
                 clip_pretrained: str | None = None, clip_root: str | None = None):
        super().__init__(device, batch_size)
        self._init_clip(clip_model, clip_pretrained, clip_root)


@SCORERS.register("clip-score")
class ClipScore(ClipBackedScorer):
    """CLIP score: cosine(CLIP image, CLIP prompt text) with the evaluation CLIP."""

    name = "clip-score"
    version = "1"
    columns = ("clip_score",)

    def _score(self, images, prompts, concepts):
        image_emb = self.clip.encode_images(images)
        known = [i for i, p in enumerate(prompts) if p is not None]
        scores = [None] * len(images)
        if known:
            text_emb = self.clip.encode_texts([prompts[i] for i in known])
            cos = (image_emb[known] * text_emb).sum(-1).tolist()
            for i, value in zip(known, cos):
                scores[i] = float(value)
        return [{"clip_score": s} for s in scores]
