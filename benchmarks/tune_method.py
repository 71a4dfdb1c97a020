"""Choose a method's mini-world hyperparameters on a held-apart tuning split.

    python -m benchmarks.tune_method --method fewshot-te --grid steps=8,40 --grid lr=1e-5,1e-4,1e-3
    python -m benchmarks.tune_method --method esd-x --grid steps=25,100 --grid lr=1e-5,1e-4,1e-3

The authors' recipes were set for Stable Diffusion (fewshot-te's for CLIP ViT-L/14); the mini
world's models are far smaller, so its defaults (methods/defaults.py) must be chosen again, and
never on what the benchmark evaluates. The tuning split is held apart three ways:

- concepts: notre dame (instance), apple (object), neon (style); none of them is in the
  mini-methods table (snoopy, church, van gogh) or in mini-default, and the original model
  draws each of them often enough that erasing it can be measured;
- prompts: the training captions' bare phrasing ("a drawing of notre dame"), which no catalog
  evaluation template uses ("a photo of {}" and the like, datasets/catalogs/_templates.yaml);
- image seeds: derived from "tune:" ids, disjoint from the runner's and the model card's.

Each setting of the grid (every combination of the --grid values) erases each tuning concept
(seed 0), then generates 16 images of the concept's tuning prompts and 16 of fixed unrelated
tuning prompts, judged by the mini detector (the style probe for the style). The rule, fixed
before looking: among settings whose unrelated detection rate (mean over the three concepts) stays
within 10 points of the original model's, take the lowest target detection rate; ties (within
1/16) go to the smaller value of the first --grid key, then of the next (list the cost-deciding
key first). Writes benchmarks/results/tune_<method>.json after every setting (marked
"complete": false until the end); a rerun with the same method and model reuses every setting
it measured that the new grid holds: an interrupted sweep resumes, an extended grid adds only
what is new.
Not a test.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

from benchmarks.results_io import RESULTS_DIR, machine, model_label, write_result

TUNING_CONCEPTS = ("notre dame", "apple", "neon")
# Bare training-caption phrasing (bench/miniworld/render.py _BARE_PREFIXES): no evaluation template.
TARGET_PROMPTS = {
    "notre dame": ["a drawing of notre dame", "a rendering of notre dame"],
    "apple": ["a drawing of an apple", "a rendering of an apple"],
    "neon": ["a drawing of a parachute in the style of neon",
             "a rendering of a golf ball in the style of neon"],
}
# Unrelated to every tuning concept (not a parent, child or related concept of any of them).
UNRELATED_PROMPTS = [("a drawing of a french horn", "french horn"), ("a rendering of a gas pump", "gas pump"),
                     ("a drawing of a chain saw", "chain saw"), ("a rendering of a cassette player", "cassette player")]
TARGET_SAMPLES, UNRELATED_SAMPLES = 8, 4
UNRELATED_TOLERANCE = 0.10
TIE = 1 / 16


def tuning_jobs(concept: str, catalog) -> list[tuple[str, str, object, int]]:
    """(set, prompt, subject concept, seed) for one tuning concept's images."""
    from bench.core.ids import image_seed
    jobs = [("target", p, catalog[concept], image_seed(f"tune:{p}", i, 1000))
            for p in TARGET_PROMPTS[concept] for i in range(TARGET_SAMPLES)]
    jobs += [("unrelated", p, catalog[s], image_seed(f"tune:{p}", i, 1000))
             for p, s in UNRELATED_PROMPTS for i in range(UNRELATED_SAMPLES)]
    return jobs


def detection_rates(pipe, jobs, detector, probe) -> dict[str, float]:
    from bench.generate import generate
    images = generate(pipe, [j[1] for j in jobs], [j[3] for j in jobs], steps=25, guidance=6.0,
                      batch_size=32)
    detected = [None] * len(jobs)
    for is_style, scorer in ((True, probe), (False, detector)):  # one batch per scorer
        picked = [i for i, job in enumerate(jobs) if job[2].is_style == is_style]
        if picked:
            rows = scorer.score([images[i] for i in picked], [jobs[i][1] for i in picked],
                                [jobs[i][2] for i in picked])
            for i, row in zip(picked, rows):
                detected[i] = bool(row["detected"])
    hits: dict[str, list[bool]] = {}
    for (set_name, *_), hit in zip(jobs, detected):
        hits.setdefault(set_name, []).append(hit)
    return {k: sum(v) / len(v) for k, v in hits.items()}


def choose(settings: list[dict], original: dict, keys: list[str]) -> dict | None:
    floor = original["unrelated"] - UNRELATED_TOLERANCE
    ok = [s for s in settings if s["unrelated"] >= floor]
    if not ok:
        return None
    best = min(s["target"] for s in ok)
    tied = [s for s in ok if s["target"] <= best + TIE + 1e-9]
    return min(tied, key=lambda s: tuple(s["overrides"][k] for k in keys))


def parse_grid(items: list[str]) -> dict[str, list]:
    """["lr=1e-5,1e-4", "steps=8,40"] -> {"lr": [1e-05, 0.0001], "steps": [8, 40]} (order kept)."""
    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise SystemExit(f"--grid {item!r}: expected key=value1,value2,...")
        grid[key.strip()] = [_number(v.strip()) for v in values.split(",")]
    return grid


def _number(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="fewshot-te")
    parser.add_argument("--grid", action="append", default=None,
                        help="key=v1,v2,... (repeatable; the first key breaks ties first)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--model", default=None, help="pipeline folder (default: the shipped mini world)")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/tune_<method>.json")
    args = parser.parse_args(argv)
    grid = parse_grid(args.grid or ["steps=8,40", "lr=1e-5,1e-4,1e-3"])
    out_path = args.out or str(RESULTS_DIR / f"tune_{args.method.replace('-', '_')}.json")

    import torch

    from bench.catalog import load_catalog
    from bench.miniworld.weights import verified_dir, verified_path
    from bench.pipeline_io import default_model, load_pipeline
    from detectors import SCORERS
    from methods.delta import reset_edits
    from methods.erase import erase

    if args.threads:
        torch.set_num_threads(args.threads)
    catalog = load_catalog("miniworld")
    model = args.model or default_model()
    pipe = load_pipeline(model, progress=False)
    root = verified_dir("probe").parent  # the shipped evaluators judge every model
    detector = SCORERS.get("miniworld-yolo")(miniworld_root=str(root))
    probe = SCORERS.get("miniworld-style-probe")(probe_dir=str(verified_path("probe/probe.json").parent),
                                                  clip_root=str(root))
    jobs = {c: tuning_jobs(c, catalog) for c in TUNING_CONCEPTS}

    def measure(p) -> dict:
        per = {c: detection_rates(p, jobs[c], detector, probe) for c in TUNING_CONCEPTS}
        return {"target": sum(r["target"] for r in per.values()) / len(per),
                "unrelated": sum(r["unrelated"] for r in per.values()) / len(per), "per_concept": per}

    from bench.runner.models import fingerprint
    report = {"benchmark": "tune_method", "method": args.method, "grid": grid, "model": model_label(model),
              "model_fingerprint": fingerprint(str(model)),
              "tuning_concepts": list(TUNING_CONCEPTS), "target_prompts": TARGET_PROMPTS,
              "unrelated_prompts": [p for p, _ in UNRELATED_PROMPTS],
              "images_per_concept": {"target": TARGET_SAMPLES * 2, "unrelated": UNRELATED_SAMPLES * 4},
              "rule": _rule_text(),
              "torch_threads": torch.get_num_threads(), "machine": machine()}
    earlier = _resumable(out_path, report)
    original = earlier["original"] if earlier else measure(pipe)
    print(f"original: target {original['target']:.2f} unrelated {original['unrelated']:.2f}")
    settings = earlier["settings"] if earlier else []
    report.update(original=original, settings=settings, complete=False)
    done = [s["overrides"] for s in settings]
    for values in itertools.product(*grid.values()):
        overrides = dict(zip(grid, values))
        if overrides in done:
            continue
        per, seconds = {}, []
        for concept in TUNING_CONCEPTS:
            result = erase(pipe, args.method, concept, overrides=overrides, seed=0, progress=False)
            seconds.append(result.seconds)
            per[concept] = detection_rates(result.pipeline, jobs[concept], detector, probe)
            pipe = reset_edits(result.pipeline)
        row = {"overrides": overrides, "seconds_mean": round(sum(seconds) / len(seconds), 2),
               "target": sum(r["target"] for r in per.values()) / len(per),
               "unrelated": sum(r["unrelated"] for r in per.values()) / len(per), "per_concept": per}
        settings.append(row)
        write_result(report, out_path)  # partial: a rerun resumes after this setting
        print(f"{overrides}: target {row['target']:.2f} unrelated {row['unrelated']:.2f} "
              f"({row['seconds_mean']} s per erasure)", flush=True)
    chosen = choose(settings, original, list(grid))
    print("chosen:", chosen["overrides"] if chosen else "none keeps unrelated prompts within tolerance")
    report.update(chosen=chosen, complete=True, date=time.strftime("%Y-%m-%d"))
    out = write_result(report, out_path)
    print(f"wrote {out}")
    return 0


def _rule_text() -> str:
    """The selection rule as the module docstring states it (one line, for the result file)."""
    flat = " ".join(__doc__.split())
    return flat.split("The rule, fixed before looking: ")[1].split(" Writes")[0]


def _resumable(path: str, report: dict) -> dict | None:
    """The earlier result at ``path`` if it measured the same method, model (by content
    fingerprint) and tuning split, with
    only the settings that the new grid also holds (so a grid can be extended, e.g. to lower
    learning rates when no setting kept unrelated prompts); else None."""
    try:
        earlier = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    # the fingerprint, not the path: another model saved at the same path must measure again
    same = all(earlier.get(k) == report[k] for k in ("method", "model", "model_fingerprint",
                                                      "tuning_concepts", "target_prompts",
                                                      "unrelated_prompts"))
    if not same:
        return None
    wanted = [dict(zip(report["grid"], values)) for values in itertools.product(*report["grid"].values())]
    earlier["settings"] = [s for s in earlier.get("settings", []) if s["overrides"] in wanted]
    return earlier


if __name__ == "__main__":
    raise SystemExit(main())
