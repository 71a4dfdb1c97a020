"""Scorers (CLIP score, detectors, classifiers, probes, mapping), registered in ``SCORERS``."""

from bench.core.registry import Registry

SCORERS = Registry("scorer")

# Lazy declarations: `eraselab ls detectors` lists these without importing torch; each module's
# @SCORERS.register decorator fulfils its line on first use.
# kind: "image" scorers take (images, prompts, concepts); "pair" and "set" take (edited, original).
_LAZY = [
    ("clip-score", "detectors.clip_score:ClipScore", "cosine(CLIP image, CLIP prompt) with the evaluation CLIP"),
    ("clip-zero-shot", "detectors.zero_shot:ClipZeroShot", "CLIP zero-shot detector over the catalog labels"),
    ("mapping", "detectors.zero_shot:Mapping", "what each image became: zero-shot label distribution"),
    ("yolo", "detectors.yolo:YoloDetector", "ultralytics YOLO object detector (weights by path)"),
    ("miniworld-yolo", "detectors.yolo:MiniWorldYolo", "the mini world's YOLO object detector"),
    ("imagenet-classifier", "detectors.imagenet:ImageNetClassifier", "timm ImageNet top-1 = imagenet_id (paper)"),
    ("miniworld-style-probe", "detectors.style_probe:StyleProbeScorer", "logistic style probe on CLIP features"),
    ("miniworld-cnn-judge", "detectors.cnn_judge:JudgeScorer", "the mini world's independent CNN judge (objects, styles)"),
    ("clip-image-similarity", "detectors.preservation:ClipImageSimilarity", "same-seed CLIP image cosine vs original"),
    ("kid-clip", "detectors.preservation:KidClip", "KID/FID on CLIP features, edited vs original sets"),
]
_KINDS = {"clip-image-similarity": "pair", "kid-clip": "set"}
for _name, _target, _summary in _LAZY:
    SCORERS.register_lazy(_name, _target, summary=_summary, kind=_KINDS.get(_name, "image"))
del _name, _target, _summary
