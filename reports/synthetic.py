"""A small synthetic run directory, for the report's tests and for trying the report without a GPU.

    python -m reports.synthetic /tmp/synth-run && eraselab report /tmp/synth-run

It writes what the runner writes (results.parquet, aggregates.parquet/.csv, manifest.json, PNGs)
with known, seeded values and no model: three methods that behave as labelled ("fewshot-te"
erases and maps the concept to its parent, "esd" erases more slowly, "noop" fails to erase),
a catalog.yaml beside them, and tiny 32x32 images. "noop" repeats the original model's
detections image for image, so it can never pass as having erased anything. Numbers are made up; only the shapes are real.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

# Per method: P(detected) on target / related / unrelated prompts, mapping shares and edit cost.
BEHAVIOUR = {
    "original":   {"target": 0.92, "related": 0.85, "unrelated": 0.90, "self": 0.85, "parent": 0.10},
    "fewshot-te": {"target": 0.10, "related": 0.80, "unrelated": 0.88, "self": 0.10, "parent": 0.75,
                   "seconds": 2.1, "params": 2_359_296},
    "esd":        {"target": 0.25, "related": 0.60, "unrelated": 0.85, "self": 0.20, "parent": 0.40,
                   "seconds": 412.0, "params": 85_000_000},
    "noop":       {"target": 0.92, "related": 0.85, "unrelated": 0.90, "self": 0.85, "parent": 0.10,
                   "seconds": 0.01, "params": 0},
}
KID = {"fewshot-te": 0.004, "esd": 0.02, "noop": 0.0}
PARENT = "english springer"
OTHER = "tench"


def catalog_yaml(concepts: list[str]) -> str:
    lines = ["name: synthetic", "version: 1", "concepts:",
             f"  - {{name: {PARENT}, type: object, templates: ['a photo of a {{}}']}}",
             f"  - {{name: {OTHER}, type: object, templates: ['a photo of a {{}}']}}"]
    for c in concepts:
        lines.append(f"  - {{name: {json.dumps(c)}, type: instance, parent: {PARENT}, "
                     f"templates: ['a photo of {{}}', '{{}} in a park']}}")
    return "\n".join(lines) + "\n"


# The second judge sees what the detector sees and, where a method erases slowly ("esd"), half of
# what it misses on target prompts: the faint targets a detector lets through.
JUDGE_EXTRA = {"esd": 0.5}


def _judges(detected, method: str, prompt_set: str, rng) -> dict:
    """The judge columns of one row: the detector's confidence (threshold 0.25) and a second
    judge's verdict and confidence (threshold 0.5)."""
    if detected is None:
        return {"detector": None, "detected_score": None, "detector_threshold": None, "judge": None, "judge_detected": None,
                "judge_score": None, "judge_threshold": None}
    score = float(rng.uniform(0.3, 0.95) if detected else rng.uniform(0.0, 0.2))
    second = bool(detected) or (prompt_set == "target" and rng.random() < JUDGE_EXTRA.get(method, 0.0))
    return {"detector": "synthetic-detector", "detected_score": score, "detector_threshold": 0.25, "judge": "second-judge",
            "judge_detected": second, "judge_score": float(rng.uniform(0.6, 1.0) if second else rng.uniform(0, 0.4)),
            "judge_threshold": 0.5}


def make_run(folder, concepts=("snoopy", "apple logo"), methods=tuple(BEHAVIOUR), samples: int = 4,
             seed: int = 0, run_name: str = "synthetic", shift: float = 0.0) -> Path:
    """Write a synthetic run into ``folder``; ``shift`` moves every method's target detection (for
    --compare tests: a positive shift is a regression)."""
    import numpy as np
    import pandas as pd
    from PIL import Image, ImageDraw

    from bench.manifest import EditRecord, RunManifest
    from bench.metrics import aggregate

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    judge_rng = np.random.default_rng(seed + 1)  # its own stream: the other columns stay as they were
    labels = list(concepts) + [PARENT, OTHER, "nothing"]
    rows = []
    twin: dict[tuple, bool] = {}  # the original model's outcome per image, for the no-op method
    methods = sorted(methods, key=lambda m: m != "original")
    for concept in concepts:
        prompts = {"target": [f"a photo of {concept}", f"{concept} in a park"],
                   "related": [f"a photo of a {PARENT}"],
                   "unrelated": [f"a photo of a {OTHER}", "a red car on a road"]}
        for method in methods:
            b = BEHAVIOUR[method]
            edit_id = "" if method == "original" else f"{method}-{concept}"
            for prompt_set, plist in prompts.items():
                for p_index, prompt in enumerate(plist):
                    prompt_id = f"{prompt_set}-{p_index}"
                    for sample in range(samples):
                        # Seeds depend on the prompt and sample only: every method has a same-seed twin.
                        image_seed = (sum(map(ord, concept + prompt_id)) * 31 + sample) % 100_000
                        p_det = min(1.0, max(0.0, b[prompt_set] + (shift if prompt_set == "target" else 0)))
                        detected = bool(rng.random() < p_det)
                        subject = {"target": concept, "related": PARENT}.get(prompt_set, OTHER)
                        if prompt == "a red car on a road":
                            subject = None  # a general prompt names no catalog concept: no detector
                        if method == "noop" and (concept, prompt_id, sample) in twin:
                            detected = twin[(concept, prompt_id, sample)]  # a true no-op: the same images
                        if method == "original":
                            twin[(concept, prompt_id, sample)] = detected
                        if prompt_set == "target":
                            shares = {concept: b["self"], PARENT: b["parent"]}
                        else:
                            shares = {OTHER: 0.7, PARENT: 0.2}
                        rest = max(0.0, 1 - sum(shares.values()))
                        raw = {l: shares.get(l, rest / (len(labels) - len(shares))) + 0.05 * rng.random()
                               for l in labels}
                        total = sum(raw.values())
                        dist = {l: v / total for l, v in raw.items()}
                        mapped_to = max(dist, key=dist.get) if rng.random() < 0.8 else \
                            str(rng.choice(labels, p=np.array(list(dist.values()))))
                        rel = f"images/{len(rows):05d}.png"
                        _draw(folder / rel, method, prompt_set, image_seed, detected, Image, ImageDraw)
                        rows.append({
                            "run": run_name, "model": "mini-sd", "method": method, "variant": "",
                            "concept": concept, "concept_type": "instance", "prompt_set": prompt_set,
                            "prompt_id": prompt_id, "prompt": prompt, "sample": sample, "seed": image_seed,
                            "image_path": rel, "edit_id": edit_id, "image_id": f"img{len(rows):05d}",
                            "subject": subject, "suite_seed": seed,
                            "detected": detected if subject else None,
                            **_judges(detected if subject else None, method, prompt_set, judge_rng),
                            "clip_score": float(0.30 - (0.08 if prompt_set == "target" and b["target"] < 0.5
                                                        else 0) + 0.02 * rng.standard_normal()),
                            "mapped_to": mapped_to, "mapped_p": float(dist[mapped_to]),
                            "mapping_dist": json.dumps(dist),
                            "clip_image_cosine": math.nan if method == "original" else
                            float(min(1.0, 0.9 - (0.1 if method == "esd" else 0) + 0.03 * rng.standard_normal())),
                        })
    df = pd.DataFrame(rows)
    df.to_parquet(folder / "results.parquet", index=False)
    (folder / "catalog.yaml").write_text(catalog_yaml(list(concepts)), encoding="utf-8")
    edits = {f"{m}-{c}": EditRecord(method=m, concept=c, model="mini-sd", seed=seed,
                                    seconds=BEHAVIOUR[m]["seconds"], peak_memory_mb=900.0,
                                    params_changed=BEHAVIOUR[m]["params"],
                                    delta_bytes=2 * BEHAVIOUR[m]["params"])
             for m in methods if m != "original" for c in concepts}
    # The KID parts the runner would write: fixed per method, no images behind them.
    kid = pd.DataFrame([{"model": "mini-sd", "method": m, "variant": "", "concept": c, "prompt_set": ps,
                         "kid_clip": KID[m], "kid_clip_std": 0.002, "n_edited": samples * 2}
                        for m in methods if m != "original" for c in concepts
                        for ps in ("related", "unrelated")])
    agg = aggregate(df, kid, edits)
    agg.to_parquet(folder / "aggregates.parquet", index=False)
    agg.to_csv(folder / "aggregates.csv", index=False)
    manifest = RunManifest(run=run_name, suite="synthetic-suite", catalog="catalog.yaml",
                           resolved_suite={"name": "synthetic-suite", "catalog": "catalog.yaml",
                                           "samples": samples},
                           versions={"python": sys.version.split()[0], "eraselab": "0.1.0"},
                           git_commit="0000000", hardware={"device": "synthetic (no model)"},
                           seconds_per_stage={"erase": 414.1, "generate": 1.0, "score": 1.0}, edits=edits)
    (folder / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
    return folder


def make_study_run(folder, arms: dict, original=(0.9, 0.9), concepts=("snoopy", "tench"),
                   images: int = 40, seeds=(0, 1), study: str = "ablation", method: str = "fewshot-te",
                   swept_key: str = "variant", transfer_from: dict | None = None) -> Path:
    """A run folder holding one study with exact, known detection rates: ``arms`` maps each arm's
    swept value (a variant, or a number for ``swept_key``) to its (target, unrelated) rate, and
    in every (concept, seed) group the first round(rate x images) images are the detected ones,
    so every pooled rate and paired change is known to the image. ``original`` is the base
    model's pair. Each arm's edits record a change in one text-encoder group named after it.
    ``transfer_from`` marks arms (by swept value) as transfers from the named model."""
    import pandas as pd
    from PIL import Image, ImageDraw

    from bench.manifest import EditRecord, RunManifest
    from bench.metrics import aggregate

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows, edits, arm_list = [], {}, []
    everyone = {"original": original, **arms}
    for value, rates in everyone.items():
        is_orig = value == "original"
        name = "original" if is_orig else method
        label = "" if is_orig else (str(value) if swept_key == "variant" else f"{swept_key}={value}")
        if not is_orig:
            arm_list.append({"method": method, "label": label,
                             "variant": str(value) if swept_key == "variant" else None,
                             "overrides": {} if swept_key == "variant" else {swept_key: value},
                             "study": study, "swept": [[swept_key, value]],
                             "transfer_from": (transfer_from or {}).get(value)})
        for concept in concepts:
            for seed in seeds:
                edit_id = "" if is_orig else f"{label}-{concept}-{seed}"
                if not is_orig:
                    layer = str(value).split("-")[1] if str(value).startswith("te-layer") else "layer0"
                    edits[edit_id] = EditRecord(method=method, concept=concept, variant=label, model="mini-sd",
                                                seed=seed, seconds=1.0, params_changed=1000,
                                                change_by_group=[{"component": "text_encoder", "block": layer,
                                                                  "kind": "mlp", "relative_change": 0.01}])
                for prompt_set, rate in zip(("target", "unrelated"), rates):
                    subject = concept if prompt_set == "target" else OTHER
                    for i in range(images):
                        detected = i < round(rate * images)
                        rel = f"images/{len(rows):05d}.png"
                        if not (folder / rel).exists():
                            _draw(folder / rel, "original", prompt_set, i, detected, Image, ImageDraw)
                        rows.append({"run": "study", "model": "mini-sd", "method": name, "variant": label,
                                     "concept": concept, "concept_type": "instance", "prompt_set": prompt_set,
                                     "prompt_id": f"{prompt_set}-{i % 4}", "prompt": f"a photo of {subject}",
                                     "sample": i // 4, "seed": 1000 * seed + i, "image_path": rel,
                                     "edit_id": edit_id, "image_id": f"img{len(rows):05d}", "subject": subject,
                                     "suite_seed": seed, "detected": detected, "clip_score": 0.3,
                                     "mapped_to": subject, "mapped_p": 0.9,
                                     "mapping_dist": json.dumps({subject: 0.9, "nothing": 0.1}),
                                     "clip_image_cosine": math.nan if is_orig else 0.9})
    df = pd.DataFrame(rows)
    df.to_parquet(folder / "results.parquet", index=False)
    (folder / "catalog.yaml").write_text(catalog_yaml([c for c in concepts if c != OTHER]), encoding="utf-8")
    agg = aggregate(df, None, edits)
    agg.to_parquet(folder / "aggregates.parquet", index=False)
    agg.to_csv(folder / "aggregates.csv", index=False)
    manifest = RunManifest(run="study", suite="synthetic-study", catalog="catalog.yaml",
                           resolved_suite={"name": "synthetic-study", "catalog": "catalog.yaml"},
                           effective={"arms": arm_list}, edits=edits)
    (folder / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
    return folder


def _draw(path: Path, method: str, prompt_set: str, seed: int, detected: bool, Image, ImageDraw) -> None:
    """A 32x32 stand-in image: the seed sets the background, a detected concept draws a white dog-ish blob."""
    shade = (seed * 37) % 160 + 60
    tint = {"original": (0, 0, 0), "fewshot-te": (30, 0, 0), "esd": (0, 30, 0), "noop": (0, 0, 30)}[method]
    im = Image.new("RGB", (32, 32), tuple(min(255, shade // 2 + t) for t in tint))
    d = ImageDraw.Draw(im)
    if prompt_set == "unrelated":
        d.rectangle([6, 16, 26, 24], fill=(200, 40, 40))
    elif detected:
        d.ellipse([8, 8, 24, 24], fill=(245, 245, 245))
        d.ellipse([6, 6, 12, 14], fill=(20, 20, 20))
        d.ellipse([20, 6, 26, 14], fill=(20, 20, 20))
    else:
        d.polygon([(16, 6), (26, 26), (6, 26)], fill=(150, 110, 60))
    im.save(path)


if __name__ == "__main__":
    out = make_run(sys.argv[1] if len(sys.argv) > 1 else "synthetic-run")
    print(out)
