"""The tuning rule: choose a method's hyperparameters on a held-apart tuning split, never on what
the benchmark evaluates. An API and the ``eraselab tune`` command.

    eraselab tune --method fewshot-te --grid steps=20,40,80 --grid lr=3e-5,1e-4,3e-4 --out tune.json
    eraselab tune --method fewshot-te --variant te-layer0-mlp --set steps=40 --grid lr=1e-4,1e-3

    from bench.tuning import tune
    result = tune("fewshot-te", {"lr": [1e-4, 3e-4]}, out="tune.json")   # result["chosen"]

The split is held apart from every evaluation three ways:

- concepts: notre dame (instance), apple (object), neon (style); none of them is in mini-default,
  mini-methods or the ablation and sweep suites, and the original model draws each of them
  often enough that erasing it can be measured;
- prompts: the training captions' bare phrasing ("a drawing of notre dame"), which no catalog
  evaluation template uses ("a photo of {}" and the like, datasets/catalogs/_templates.yaml);
- image seeds: derived from "tune:" ids, disjoint from the runner's and the model card's.

Per tuning concept: 32 target images (2 prompts x 16 samples) and 64 unrelated ones (8 objects
unrelated to every tuning concept x 2 phrasings x 4 samples, seeded per concept, so the three
concepts' 192 unrelated images are all different). The tolerance of the rule below is 10 points;
192 images put it at ``tolerance_in_standard_errors()`` = 3.3 standard errors of an unpaired
difference of two rates at 0.9 (the mini world's unrelated detection rates are 0.94-1.0).

The rule, fixed before looking: among settings whose unrelated detection rate (mean over the three
concepts) stays within 10 points of the original model's, take the lowest target detection rate;
ties (within one target image per concept, 1/32) go to the smaller value of the first grid key,
then of the next (list the cost-deciding key first). No setting within the tolerance: nothing is
chosen, and the result says so.

Images are sampled as mini-default samples them (12-step DPM-Solver++, guidance 6, precision
auto), judged by each subject's catalog detector. The result file is rewritten after every
setting (``"complete": false`` until the end); a rerun with the same method, variant, base
overrides, model (by content fingerprint), judges (by their weights' checksums), split and sampler
keeps every setting measured: an interrupted sweep resumes, another grid adds only what is new, and
the rule chooses among all. A record without the judges' checksums is measured afresh: it cannot
show which judges scored it.
"""

from __future__ import annotations

import itertools
import json
import math
import platform
import time
from pathlib import Path

from bench.core.errors import EraselabError

TUNING_CONCEPTS = ("notre dame", "apple", "neon")
# Bare training-caption phrasing (bench/miniworld/render.py _BARE_PREFIXES): no evaluation template.
TARGET_PROMPTS = {
    "notre dame": ["a drawing of notre dame", "a rendering of notre dame"],
    "apple": ["a drawing of an apple", "a rendering of an apple"],
    "neon": ["a drawing of a parachute in the style of neon",
             "a rendering of a golf ball in the style of neon"],
}
# Not a parent, child or related concept of any tuning concept (datasets/catalogs/miniworld.yaml).
UNRELATED_SUBJECTS = {"french horn": "a french horn", "gas pump": "a gas pump", "chain saw": "a chain saw",
                      "cassette player": "a cassette player", "tench": "a tench",
                      "garbage truck": "a garbage truck", "english springer": "an english springer",
                      "parachute": "a parachute"}
PHRASINGS = ("a drawing of", "a rendering of")
TARGET_SAMPLES, UNRELATED_SAMPLES = 16, 4
TOLERANCE = 0.10
TIE = 1 / (TARGET_SAMPLES * 2)
DESIGN_RATE = 0.9  # the unrelated rate the split is sized at (tolerance_in_standard_errors)
SAMPLER = {"scheduler": "dpm", "steps": 12, "guidance": 6.0, "batch_size": 32, "precision": "auto"}
# The shipped folders the judges read: the detector (miniworld-yolo), the style probe and the mini
# CLIP whose image tower it reads, and the CNN judge, so that retraining any judge measures afresh.
JUDGE_FOLDERS = ("detector", "probe", "clip", "judge")


def unrelated_prompts() -> list[tuple[str, str]]:
    """(prompt, subject) of the unrelated tuning prompts, in a fixed order."""
    return [(f"{how} {noun}", subject) for subject, noun in UNRELATED_SUBJECTS.items() for how in PHRASINGS]


def tuning_jobs(concept: str) -> list[tuple[str, str, str, int]]:
    """(set, prompt, subject concept, seed) for one tuning concept's images."""
    from bench.core.ids import image_seed
    jobs = [("target", p, concept, image_seed(f"tune:{p}", i, 1000))
            for p in TARGET_PROMPTS[concept] for i in range(TARGET_SAMPLES)]
    jobs += [("unrelated", p, s, image_seed(f"tune:{concept}:{p}", i, 1000))
             for p, s in unrelated_prompts() for i in range(UNRELATED_SAMPLES)]
    return jobs


def tolerance_in_standard_errors(n_unrelated: int | None = None, rate: float = DESIGN_RATE) -> float:
    """The tolerance over the standard error of an unpaired difference of two unrelated detection
    rates at ``rate``, each over ``n_unrelated`` images (default: the split's)."""
    n = n_unrelated or len(TUNING_CONCEPTS) * len(unrelated_prompts()) * UNRELATED_SAMPLES
    return TOLERANCE / math.sqrt(2 * rate * (1 - rate) / n)


def judges_fingerprint(root=None) -> str:
    """The judges' identity: a digest of the mini world's checksum lines of ``JUDGE_FOLDERS``
    (every judge checks its files against those lines when it loads)."""
    from bench.core.paths import MINIWORLD_DIR
    from bench.miniworld.weights import folders_digest
    return "miniworld-judges:" + folders_digest(JUDGE_FOLDERS, root or MINIWORLD_DIR)[:16]


def split_description() -> dict:
    """What the result file records of the split (a rerun resumes only into the same one)."""
    return {"concepts": list(TUNING_CONCEPTS), "target_prompts": TARGET_PROMPTS,
            "unrelated_prompts": [p for p, _ in unrelated_prompts()],
            "images_per_concept": {"target": TARGET_SAMPLES * 2,
                                   "unrelated": len(unrelated_prompts()) * UNRELATED_SAMPLES},
            "tolerance": TOLERANCE,
            "tolerance_in_standard_errors": round(tolerance_in_standard_errors(), 2)}


class Judges:
    """Each subject's catalog detector, loaded once."""

    def __init__(self, catalog, device: str = "cpu"):
        self.catalog, self.device, self._loaded = catalog, device, {}

    def _scorer(self, name: str):
        from detectors import SCORERS
        if name not in self._loaded:
            self._loaded[name] = SCORERS.get(name)(device=self.device)
        return self._loaded[name]

    def detected(self, images, prompts, subjects) -> list[bool]:
        from detectors.base import score_by_detector
        judged = score_by_detector(images, prompts, [self.catalog[s] for s in subjects], self._scorer)
        return [bool(j is not None and j[1]["detected"]) for j in judged]


def measure_concept(pipe, concept: str, judges: Judges, sampler: dict) -> dict:
    """Target and unrelated detection of one tuning concept's images, with each image's hit as a
    0/1 string (same order and seeds for every setting: the original's string is the twin)."""
    from bench.generate import generate
    from bench.samplers import sampling
    jobs = tuning_jobs(concept)
    with sampling(pipe, sampler):
        images = generate(pipe, [j[1] for j in jobs], [j[3] for j in jobs], steps=sampler["steps"],
                          guidance=sampler["guidance"], batch_size=sampler["batch_size"],
                          device=str(pipe.unet.device))
    hits = judges.detected(images, [j[1] for j in jobs], [j[2] for j in jobs])
    out = {}
    for set_name in ("target", "unrelated"):
        mine = [h for j, h in zip(jobs, hits) if j[0] == set_name]
        out[set_name] = sum(mine) / len(mine)
        out[f"{set_name}_hits"] = "".join("1" if h else "0" for h in mine)
    return out


def summarise(per: dict) -> dict:
    return {"target": sum(r["target"] for r in per.values()) / len(per),
            "unrelated": sum(r["unrelated"] for r in per.values()) / len(per), "per_concept": per}


def choose(settings: list[dict], original: dict, keys: list[str]) -> dict | None:
    """The rule of the module docstring; None when no setting keeps unrelated prompts."""
    floor = original["unrelated"] - TOLERANCE
    ok = [s for s in settings if s["unrelated"] >= floor - 1e-9]
    if not ok:
        return None
    best = min(s["target"] for s in ok)
    tied = [s for s in ok if s["target"] <= best + TIE + 1e-9]
    return min(tied, key=lambda s: tuple(_sort_value(s["overrides"].get(k)) for k in keys))


def _sort_value(v):
    return (0, v) if isinstance(v, (int, float)) else (1, str(v))


def check_grid(method: str, grid: dict, variant: str | None = None, base: dict | None = None) -> list[dict]:
    """Every setting of ``grid`` (key -> values; the product), each checked against the method's
    Config before any model loads: an empty grid or an unknown key is a one-line error."""
    from methods import METHODS
    from methods.erase import resolve_method_config
    method_cls = METHODS.get(method)
    if not grid or any(not isinstance(v, (list, tuple)) or not v for v in grid.values()):
        raise EraselabError(f"{method}: empty tuning grid; give every key one value or more "
                            f"(--grid lr=1e-4,3e-4)")
    settings = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    for s in settings:
        resolve_method_config(method_cls, "sd", variant, base, grid=s)
    return settings


def result_path(method: str, variant: str | None = None) -> Path:
    """The default result file: runs/tune/<method>[.<variant>].json."""
    name = method + (f".{variant}" if variant else "")
    return Path("runs") / "tune" / f"{name.replace('/', '_')}.json"


def tune(method: str, grid: dict, *, variant: str | None = None, base: dict | None = None,
         model=None, out=None, device: str = "cpu", progress: bool = True, log=print,
         original: dict | None = None) -> dict:
    """Measure every setting of ``grid`` on the split, choose by the rule, write ``out``; returns
    the result (``result["chosen"]``: the chosen setting's row, or None). ``original``: the
    original model's measurement from an earlier ``tune`` of this process on the same model and
    device (``result["original"]``), so that tuning several variants measures it once."""
    from bench.catalog import load_catalog
    from bench.pipeline_io import default_model, load_pipeline
    from bench.runner.models import fingerprint
    from bench.samplers import resolve_precision
    from methods.delta import reset_edits
    from methods.erase import erase

    base = dict(base or {})
    settings_wanted = check_grid(method, grid, variant, base)
    out = Path(out) if out else result_path(method, variant)
    label = str(model) if model else "miniworld"  # the record names no machine's folders
    model = str(model or default_model())
    sampler = {**SAMPLER, "precision": resolve_precision(SAMPLER["precision"], device)}
    import torch
    from methods.erase import get_method
    report = {"benchmark": "tune", "method": method, "method_version": get_method(method).version,
              "variant": variant, "base_overrides": base,
              "grid": grid, "model": label, "model_fingerprint": fingerprint(model),
              "judges": judges_fingerprint(),
              "split": split_description(), "sampler": sampler, "rule": rule_text(),
              "torch_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine()}
    earlier = _resumable(out, report)
    if earlier is None and out.is_file():
        log(f"{out}: measured another method version, model, judges, split or sampler; starting afresh")
    if earlier:  # an extended grid: the record's grid is every value either grid holds
        report["grid"] = {k: sorted(set(earlier["grid"].get(k, [])) | set(grid.get(k, [])), key=_sort_value)
                          for k in dict.fromkeys([*grid, *earlier["grid"]])}
    catalog = load_catalog("miniworld")
    pipe = load_pipeline(model, device=device, progress=False)
    judges = Judges(catalog, device)
    if earlier:
        original = earlier["original"]
    elif original is None:
        original = summarise({c: measure_concept(pipe, c, judges, sampler) for c in TUNING_CONCEPTS})
    log(f"original: target {original['target']:.3f} unrelated {original['unrelated']:.3f}")
    rows = earlier["settings"] if earlier else []
    report.update(original=original, settings=rows, complete=False)
    done = [r["overrides"] for r in rows]
    todo = [s for s in settings_wanted if s not in done]
    from tqdm import tqdm
    for overrides in tqdm(todo, desc=f"tune {method}", unit="setting", disable=not progress):
        per, seconds = {}, []
        for concept in TUNING_CONCEPTS:
            result = erase(pipe, method, concept, variant=variant, overrides={**base, **overrides},
                           seed=0, progress=False)
            seconds.append(result.seconds)
            per[concept] = measure_concept(result.pipeline, concept, judges, sampler)
            pipe = reset_edits(result.pipeline)
        row = {"overrides": overrides, "seconds_mean": round(sum(seconds) / len(seconds), 2), **summarise(per)}
        rows.append(row)
        _write(report, out)  # partial: a rerun resumes after this setting
        log(f"{overrides}: target {row['target']:.3f} unrelated {row['unrelated']:.3f} "
            f"({row['seconds_mean']} s per erasure)")
    rows.sort(key=lambda r: tuple(_sort_value(r["overrides"].get(k)) for k in grid))
    chosen = choose(rows, original, list(grid))  # over every setting measured, earlier grids' too
    report.update(chosen=chosen, complete=True, date=time.strftime("%Y-%m-%d"))
    _write(report, out)
    log("chosen: " + (str(chosen["overrides"]) if chosen else
                      "none: no setting keeps unrelated detection within the tolerance"))
    return report


def rule_text() -> str:
    """The selection rule as the module docstring states it (one line, for the result file)."""
    flat = " ".join(__doc__.split())
    return flat.split("The rule, fixed before looking: ")[1].split(" Images are sampled")[0]


def _write(report: dict, out: Path) -> None:
    from bench.core.files import write_text
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, json.dumps(report, indent=2) + "\n")


def _resumable(path: Path, report: dict) -> dict | None:
    """The earlier result at ``path`` if it measured the same method and method version (a fixed
    method bumps its version: settings measured before the fix are not reused), variant, base
    overrides, model (content fingerprint, not the path), judges, split and sampler (its settings
    are kept: a new grid adds to them, and the rule chooses among all); else None."""
    try:
        earlier = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    keys = ("method", "method_version", "variant", "base_overrides", "model_fingerprint", "judges", "split",
            "sampler")
    if not isinstance(earlier, dict):
        return None
    # a record from before versions were recorded is taken as the current version's
    if any(earlier.get(k, report[k] if k == "method_version" else None) != report[k] for k in keys):
        return None
    if not isinstance(earlier.get("settings"), list) or not isinstance(earlier.get("grid"), dict):
        return None
    return earlier


def parse_grid(items: list[str]) -> dict[str, list]:
    """``["lr=1e-5,1e-4", "steps=8,40"]`` -> ``{"lr": [1e-05, 0.0001], "steps": [8, 40]}`` (order kept)."""
    grid: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        parsed = [number(v.strip()) for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not parsed:
            raise EraselabError(f"--grid {item!r}: expected key=value1,value2,...")
        if key.strip() in grid:
            raise EraselabError(f"--grid {item!r}: key {key.strip()!r} given twice")
        grid[key.strip()] = parsed
    return grid


def number(text: str):
    """``"40"`` -> 40, ``"1e-4"`` -> 0.0001, anything else unchanged."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
