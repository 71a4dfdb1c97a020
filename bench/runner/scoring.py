"""Scorers of a run: which ones, with which options, and scoring one batch of images.

Image scorers are the suite's ``scorers`` plus, for ``detected``, each prompt subject's catalog
detector (``detector.name``): an image of "a photo of snoopy" is judged by Snoopy's detector
whatever concept was erased, so erasure (target) and preservation (related, unrelated) read the
same column. The subject's second judge (``judge.name``) fills ``judge_detected`` the same way,
and each judge's ``concept_score`` and operating threshold are kept beside its verdict
(``detected_score``, ``detector_threshold``; ``judge_score``, ``judge_threshold``) so a report
can ask which verdicts depend on the threshold. Pair / set scorers (``preservation``) compare edited images with their twins.
``spec()`` is the part of every score's content address: change a scorer or its options and the
scores are recomputed (the images are not).
"""

from __future__ import annotations

import inspect
import json
import math

from detectors.base import judge_columns


class Scoring:
    def __init__(self, suite, device: str = "cpu", smoke: bool = False, subjects=()):
        from detectors import SCORERS
        self.suite, self.device, self.smoke = suite, device, smoke
        catalog = suite.catalog
        detectors = sorted({j for name in subjects if name is not None for j in catalog[name].judge_names})
        self.image_names = list(dict.fromkeys([*suite.scorers, *detectors]))
        self.pair_names = [n for n in suite.preservation if SCORERS.entry(n).tags.get("kind") == "pair"]
        self.set_names = [n for n in suite.preservation if SCORERS.entry(n).tags.get("kind") == "set"]
        self._instances: dict = {}

    def options(self, name: str) -> dict:
        from detectors import SCORERS
        cls = SCORERS.get(name)
        params = set(inspect.signature(cls.__init__).parameters)
        opts = {"device": self.device} if "device" in params else {}
        if "catalog" in params:
            opts["catalog"] = str(self.suite.catalog.path)  # a path: a suite may name its catalog by file
        opts.update(self.suite.scorer_options.get(name, {}))
        if self.smoke:
            from bench.runner import smoke
            opts.update(smoke.scorer_options(name, cls))
        return opts

    def get(self, name: str):
        if name not in self._instances:
            from detectors import SCORERS
            self._instances[name] = SCORERS.get(name)(**self.options(name))
        return self._instances[name]

    def spec(self, names) -> dict:
        """Name, version and options of each scorer: what a score's content address includes.

        The suite's options, not the smoke stand-ins' (those hold per-process temp paths and
        would make every rerun rescore); a smoke run is marked as such instead."""
        from detectors import SCORERS
        return {n: {"version": SCORERS.get(n).version, "smoke": self.smoke,
                    "options": dict(sorted(self.suite.scorer_options.get(n, {}).items()))}
                for n in names}

    def score_images(self, images: list, items: list) -> list[dict]:
        """Columns per image (``items[i]`` is its plan.Image) from every image scorer."""
        catalog = self.suite.catalog
        prompts = [it.prompt for it in items]
        concepts = [catalog[it.subject] if it.subject else None for it in items]
        rows = [dict() for _ in items]
        for name in self.suite.scorers:
            for row, out in zip(rows, self.get(name).score(images, prompts, concepts)):
                out = dict(out)
                # a verdict and its confidence come from the subject's own catalog judges only
                out.pop("detected", None)
                out.pop("concept_score", None)
                row.update(out)
        for row, judged in zip(rows, judge_columns(images, prompts, concepts, self.get)):
            row.update(judged)
        return [{k: _cell(v) for k, v in row.items()} for row in rows]


def _cell(v):
    """Lists and dicts as JSON strings: every part then has the same column types."""
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, sort_keys=True)
    if isinstance(v, float) and math.isnan(v):
        return None
    return v
