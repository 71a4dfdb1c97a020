"""Preservation against the original model: ``clip-image-similarity`` and ``kid-clip``.

* ``clip-image-similarity`` (pair scorer): cosine between the evaluation CLIP's embeddings of an
  edited image and its same-seed original twin (1.0: unchanged in CLIP's eyes).
* ``kid-clip`` (set scorer): KID between the edited and the original image sets, and FID when
  there are more images than feature dimensions (below that the covariance is singular and FID
  is noise), both from torchmetrics' ``KernelInceptionDistance`` / ``FrechetInceptionDistance``
  with a custom ``feature`` module. The Inception weights those metrics default to cannot be
  downloaded here, so the features are the evaluation CLIP's image embeddings: these are CLIP-
  feature distances, hence the name ``kid-clip`` / ``fid_clip``; never compare them with
  published (Inception) FIDs. KID's subset size adapts to small sets: min(1000, n // 2), at least 2.
  Half the set, not all of it, so that the subsets differ: subsets of all n images are the same
  set in another order, and their std (the spread the report shows) would be a false zero.

``kid_fid(edited, original, feature)`` is the metric on tensors with any feature module.
"""

from __future__ import annotations

import warnings

from bench.core.errors import EraselabError
from detectors import SCORERS
from detectors.base import PairScorer, SetScorer
from detectors.clip_backend import MINI_CLIP, UsesEvaluationClip, clip_features_module


def kid_fid(edited, original, feature, subsets: int = 100, seed: int = 0, with_fid: bool = True,
            batch_size: int = 256) -> dict:
    """KID (mean, std over subsets) and, when n allows, FID between two (N, ...) input batches.

    ``feature`` maps a batch to (N, D) features and has ``num_features`` = D.
    """
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    n_e, n_o = len(edited), len(original)
    if min(n_e, n_o) < 2:
        raise EraselabError(f"KID needs at least 2 images in each set, got {n_e} edited and {n_o} original")
    subset_size = min(1000, max(2, min(n_e, n_o) // 2))  # why half: the module docstring
    with warnings.catch_warnings():  # "will save all extracted features": expected, sets are small
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=feature, subsets=subsets, subset_size=subset_size)
    dim = int(getattr(feature, "num_features", 0) or 0)
    do_fid = with_fid and dim > 0 and min(n_e, n_o) > dim
    fid = FrechetInceptionDistance(feature=feature) if do_fid else None
    for batch_start in range(0, max(n_e, n_o), batch_size):
        for images, real in ((original, True), (edited, False)):
            chunk = images[batch_start:batch_start + batch_size]
            if len(chunk):
                kid.update(chunk, real=real)
                if fid is not None:
                    fid.update(chunk, real=real)
    # KID draws its subsets with the global RNG: fork it so the score is reproducible and the
    # caller's random stream is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {"kid_clip": float(kid_mean), "kid_clip_std": float(kid_std), "kid_subset_size": subset_size,
            "fid_clip": float(fid.compute()) if fid is not None else None,
            "n_edited": n_e, "n_original": n_o}


@SCORERS.register("clip-image-similarity")
class ClipImageSimilarity(UsesEvaluationClip, PairScorer):
    """Same-seed CLIP image-image cosine between an edited image and its original twin."""

    name = "clip-image-similarity"
    version = "1"
    columns = ("clip_image_cosine",)

    def __init__(self, device: str | None = "cpu", batch_size: int = 64, clip_model: str = MINI_CLIP,
                 clip_pretrained: str | None = None, clip_root: str | None = None):
        PairScorer.__init__(self, device, batch_size)
        self._init_clip(clip_model, clip_pretrained, clip_root)

    def _score_pairs(self, edited, original):
        cos = (self.clip.encode_images(edited) * self.clip.encode_images(original)).sum(-1)
        return [{"clip_image_cosine": float(c)} for c in cos.tolist()]


@SCORERS.register("kid-clip")
class KidClip(UsesEvaluationClip, SetScorer):
    """KID (and FID where n > feature dim) on CLIP image features, edited vs original sets."""

    name = "kid-clip"
    version = "2"  # 2: subsets of half the set (1 used all of it: zero std)
    columns = ("kid_clip", "kid_clip_std", "kid_subset_size", "fid_clip", "n_edited", "n_original")

    def __init__(self, device: str | None = "cpu", batch_size: int = 256, clip_model: str = MINI_CLIP,
                 clip_pretrained: str | None = None, clip_root: str | None = None,
                 subsets: int = 100, seed: int = 0):
        SetScorer.__init__(self, device, batch_size)
        self._init_clip(clip_model, clip_pretrained, clip_root)
        self.subsets, self.seed = int(subsets), int(seed)

    def _score_sets(self, edited, original):
        clip = self.clip
        return kid_fid(clip.image_tensor(edited), clip.image_tensor(original), clip_features_module(clip),
                       subsets=self.subsets, seed=self.seed, batch_size=self.batch_size)
