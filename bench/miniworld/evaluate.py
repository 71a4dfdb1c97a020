"""`eraselab miniworld eval`: measure the mini world's quality bars and write its model card.

Every number comes from fresh renders or fresh generations whose seeds were never used in
training (seed namespaces 'card-*'), at least 64 images per concept over 2 seeds, with bootstrap
95% intervals. Sections whose weights are not trained yet are reported as such, never guessed.
Writes datasets/miniworld/v1/MODEL_CARD.md, eval.json and card_sheet.png (generated images).
The card's training record comes from each stage's metrics.json: steps, seconds and devices of
every round behind the shipped weights, and the notes those rounds recorded (why a round was
kept, what it replaced). ``rewrite_card`` rebuilds MODEL_CARD.md from eval.json alone, without
measuring again, after a change to the card's text.

    eraselab miniworld eval [--json] [--n-per-concept 64]
    eraselab miniworld eval --only judges,pipeline         # these sections; the rest as recorded
    python -m bench.miniworld.evaluate --rewrite-card      # MODEL_CARD.md from eval.json

Sections: clip (zero-shot top-1), probe (style accuracy), detector (mAP50), judges (each judge's
recall on clean and degraded renders, bench/miniworld/degrade.py, and its false alarms on
distractors), pipeline (the mini SD's generations judged by each concept's detector and by the
independent CNN judge), sae (concept-steerers' text-encoder SAE: its reconstruction of fresh
captions' layer outputs).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from bench.core.errors import EraselabError
from bench.core.files import write_png, write_text
from bench.core.paths import MINIWORLD_DIR
from bench.core.stats import bootstrap_ci
from bench.miniworld import render as mw
from bench.miniworld.weights import read_sums

BARS = {"clip_zero_shot": 0.90, "detector_map50": 0.80, "probe_accuracy": 0.90,
        "sd_mean_detection": 0.80, "sd_min_detection": 0.60}
CARD_SEEDS = (0, 1)


def _have(relpath: str, root: Path) -> bool:
    try:
        return relpath in read_sums(root)
    except EraselabError:
        return False


def _ci(hits) -> dict:
    mean, lo, hi = bootstrap_ci([float(h) for h in hits])
    return {"mean": round(mean, 4), "lo": round(lo, 4), "hi": round(hi, 4), "n": len(hits)}


def eval_clip(root: Path, n_per_label: int) -> dict:
    from bench.miniworld.clip_model import load_clip, zero_shot_predict
    from bench.miniworld.train_clip import clip_labels, eval_style
    clip = load_clip(root / "clip")
    labels = clip_labels()
    per_label, per_style, all_hits = {}, {}, []
    for label in labels:
        images, styles = [], []
        for seed in CARD_SEEDS:
            for i in range(n_per_label // len(CARD_SEEDS)):
                styles.append(eval_style(label, i))
                images.append(mw.render(label, styles[-1], mw.stable_seed("card-clip", seed, label, i)).image)
        hits = [p == label for p in zero_shot_predict(clip, np.stack(images), labels)]
        per_label[label] = _ci(hits)
        for style, hit in zip(styles, hits):
            per_style.setdefault(style, []).append(hit)
        all_hits += hits
    return {"overall": _ci(all_hits), "per_label": per_label, "bar": BARS["clip_zero_shot"],
            "per_style": {s: _ci(h) for s, h in per_style.items()},
            "style_mix": "70% plain, 30% spread over the four styles (the training mix)"}


def eval_probe(root: Path, n_per_style: int) -> dict:
    from detectors.style_probe import StyleProbeScorer
    from PIL import Image
    scorer = StyleProbeScorer(probe_dir=str(root / "probe"), clip_root=str(root))
    concepts = list(mw.OBJECTS) + list(mw.INSTANCES)
    per_style, all_hits = {}, []
    for style in mw.STYLES:
        images = [Image.fromarray(mw.render(concepts[i % len(concepts)], style,
                                            mw.stable_seed("card-probe", seed, style, i)).image)
                  for seed in CARD_SEEDS for i in range(n_per_style // len(CARD_SEEDS))]
        predicted = [row["style_pred"] for row in scorer.score(images)]
        expected = "nothing" if style == "plain" else style
        hits = [p == expected for p in predicted]
        per_style[style] = _ci(hits)
        all_hits += hits
    return {"overall": _ci(all_hits), "per_style": per_style, "bar": BARS["probe_accuracy"]}


def eval_sae(root: Path, n_per_concept: int) -> dict:
    """The text-encoder SAE's fraction of variance explained (and dead latents) on the layer
    outputs of fresh training-grammar captions (namespace 'card-sae', none drawn for training)."""
    from bench.miniworld import train_sae
    from bench.miniworld.weights import verified_dir, verified_path
    from bench.pipeline_io import load_pipeline
    from methods.ksae import KSparseAutoencoder
    pipe = load_pipeline(str(verified_dir("pipeline", root)), progress=False)
    sae = KSparseAutoencoder.load(verified_path("sae/sae.safetensors", root), where="sae")
    layer = train_sae.LAYER if sae.layer is None else sae.layer
    texts = train_sae.held_out_captions(renders=n_per_concept * len(CARD_SEEDS), namespace="card-sae")
    acts = train_sae.activations(pipe, texts, layer)
    every = train_sae.reconstruction(sae, acts.reshape(-1, acts.shape[-1]))
    words = train_sae.reconstruction(sae, acts[train_sae.prompt_positions(pipe, texts)])
    return {"layer": layer, "k": sae.k, "n_latents": sae.n_latents, "n_captions": len(texts),
            "fve": every["fve"], "fve_caption_positions": words["fve"], "dead_share": every["dead_share"],
            "l0": every["l0"], "bar": train_sae.FVE_BAR}


def eval_detector(root: Path, workdir: Path) -> dict:
    from bench.offline import setup_ultralytics_offline
    from bench.miniworld import train_detector
    setup_ultralytics_offline()
    from detectors.yolo import MINI_DETECTOR, load_yolo
    # Fresh validation scenes: the same writer as training, another seed.
    data_yaml = train_detector.write_yolo_dataset(workdir / "card_detector_data", progress=False,
                                                  seed=1000 + train_detector.SEED)
    model = load_yolo(str(root / MINI_DETECTOR))
    # ultralytics logs its validation to stdout (a handler bound at import), which
    # `eval --json` reserves for JSON: silence its info messages for this call.
    from ultralytics.utils import LOGGER
    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        val = _validate(model, data_yaml, workdir)
    finally:
        LOGGER.setLevel(level)
    names = train_detector.detector_classes()
    return {"map50": round(float(val.box.map50), 4), "bar": BARS["detector_map50"],
            "per_class_map50": {n: round(float(v), 4) for n, v in zip(names, val.box.ap50)}}


def _validate(model, data_yaml, workdir: Path):
    from bench.miniworld import train_detector
    from bench.offline import keep_torch_threads
    with keep_torch_threads():  # ultralytics would leave the generation below on one thread
        return model.val(data=str(data_yaml), split="val", imgsz=train_detector.IMGSZ, device="cpu",
                         plots=False, workers=0, verbose=False, project=str(workdir / "yolo"),
                         name="card", exist_ok=True)


def eval_judges(root: Path, n_per_concept: int) -> dict:
    """Each judge's recall on clean and degraded renders (bench/miniworld/degrade.py), and how
    often it sees a concept in a distractor ("nothing") render: a judge that misses faint or
    half-drawn targets makes erasure look stronger than it is.

    Objects and instances are judged by the detector and the CNN judge's object head, styles by
    the style probe and the CNN judge's style head; every judge reads the same images."""
    from bench.catalog import load_catalog
    from bench.miniworld.degrade import DEGRADATIONS, degrade, load_pipeline_vae, vae_roundtrip
    from detectors import SCORERS
    from PIL import Image
    catalog = load_catalog("miniworld")
    vae = load_pipeline_vae(root)
    judges = {"objects": [("miniworld-yolo", SCORERS.get("miniworld-yolo")(miniworld_root=str(root)))],
              "styles": [("miniworld-style-probe", SCORERS.get("miniworld-style-probe")(
                  probe_dir=str(root / "probe"), clip_root=str(root)))]}
    if _have("judge/judge.json", root):
        cnn = SCORERS.get("miniworld-cnn-judge")(miniworld_root=str(root))
        judges["objects"].append(("miniworld-cnn-judge", cnn))
        judges["styles"].append(("miniworld-cnn-judge", cnn))
    per_n = max(1, n_per_concept // len(CARD_SEEDS))
    samples, concepts = [], []
    for concept in catalog.concepts.values():
        for seed in CARD_SEEDS:
            for i in range(per_n):
                style = concept.name if concept.is_style else mw.STYLES[i % len(mw.STYLES)]
                name = mw.OBJECTS[i % len(mw.OBJECTS)] if concept.is_style else concept.name
                samples.append(mw.render(name, style, mw.stable_seed("card-judge", seed, concept.name, i)))
                concepts.append(concept)
    # distractors: in any style for the object judges, unstyled for the style judges (a styled
    # blank is an image of that style)
    nothing = {"objects": [mw.render(mw.NOTHING, mw.STYLES[i % len(mw.STYLES)], mw.stable_seed("card-judge-nothing", i))
                           for i in range(n_per_concept)],
               "styles": [mw.render(mw.NOTHING, "plain", mw.stable_seed("card-judge-nothing-plain", i))
                          for i in range(n_per_concept)]}
    space_concepts = {space: [c for c in catalog.concepts.values() if c.is_style == (space == "styles")]
                      for space in judges}
    out: dict = {"degradations": list(DEGRADATIONS), "n_distractors": n_per_concept, "judges": {}}
    for kind in DEGRADATIONS:
        rng = np.random.default_rng(mw.stable_seed("card-judge-degrade", kind))

        def degraded(items):
            images = np.stack([s.image for s in items])
            if kind == "vae":
                return vae_roundtrip(vae, images)
            return np.stack([degrade(kind, im, tuple(s.boxes[0][1:5]) if s.boxes else None, rng)
                             for im, s in zip(images, items)])
        images = [Image.fromarray(im) for im in degraded(samples)]
        for space, entries in judges.items():
            idx = [i for i, c in enumerate(concepts) if c.is_style == (space == "styles")]
            blanks = [Image.fromarray(im) for im in degraded(nothing[space])]
            options = space_concepts[space]
            for name, scorer in entries:
                rows = scorer.score([images[i] for i in idx], [None] * len(idx), [concepts[i] for i in idx])
                record = out["judges"].setdefault(f"{name} ({space})", {"recall": {}, "false_alarm": {}})
                record["recall"][kind] = _ci([bool(r["detected"]) for r in rows])
                # a distractor is a false alarm when the judge sees any concept of the space in it
                fa = scorer.score([b for b in blanks for _ in options], [None] * len(blanks) * len(options),
                                  options * len(blanks))
                seen = np.array([bool(r["detected"]) for r in fa]).reshape(len(blanks), len(options)).any(axis=1)
                record["false_alarm"][kind] = _ci(seen.tolist())
    return out


CARD_SAMPLER = {"scheduler": "default", "steps": 25, "guidance": 6.0}


def eval_pipeline(root: Path, n_per_concept: int, sheet_path: Path | None, sampler: dict | None = None) -> dict:
    """Generate from each catalog concept's prompts and judge with the detector or style probe.

    ``sampler`` (scheduler, steps, guidance, precision; default CARD_SAMPLER) lets a benchmark measure the
    same bars under another sampler; the card itself always uses CARD_SAMPLER."""
    from bench.catalog import load_catalog
    from bench.core.ids import image_seed
    from bench.generate import generate
    from bench.pipeline_io import load_pipeline
    from bench.samplers import resolve_precision, sampling
    from detectors import SCORERS
    catalog = load_catalog("miniworld")
    sampler = {**CARD_SAMPLER, **(sampler or {})}
    sampler["precision"] = resolve_precision(sampler.get("precision", "fp32"))
    pipe = load_pipeline(str(root / "pipeline"), progress=False)  # eval has its own bars
    detector = SCORERS.get("miniworld-yolo")(miniworld_root=str(root))
    probe = SCORERS.get("miniworld-style-probe")(probe_dir=str(root / "probe"), clip_root=str(root))
    judge = SCORERS.get("miniworld-cnn-judge")(miniworld_root=str(root)) if _have("judge/judge.json", root) else None
    per_concept, per_concept_judge, agreement, sheet_rows = {}, {}, {}, []
    for concept in catalog.concepts.values():
        prompts = concept.prompts()
        jobs = [(prompts[i % len(prompts)], image_seed(f"card:{concept.name}:{i}", i, seed))
                for seed in CARD_SEEDS for i in range(n_per_concept // len(CARD_SEEDS))]
        with sampling(pipe, sampler):
            images = generate(pipe, [p for p, _ in jobs], [s for _, s in jobs], steps=sampler["steps"],
                              guidance=sampler["guidance"], batch_size=32)
        scorer = probe if concept.is_style else detector
        rows = scorer.score(images, [p for p, _ in jobs], [concept] * len(images))
        per_concept[concept.name] = _ci([bool(r["detected"]) for r in rows])
        if judge is not None:
            second = judge.score(images, [p for p, _ in jobs], [concept] * len(images))
            per_concept_judge[concept.name] = _ci([bool(r["detected"]) for r in second])
            agreement[concept.name] = round(float(np.mean([bool(a["detected"]) == bool(b["detected"])
                                                           for a, b in zip(rows, second)])), 4)
        sheet_rows.append((concept.name, images[:8]))
    if sheet_path is not None:
        _write_sheet(sheet_rows, sheet_path)
    means = [v["mean"] for v in per_concept.values()]
    return {"mean_detection": round(float(np.mean(means)), 4), "min_detection": round(float(np.min(means)), 4),
            "per_concept": per_concept, "per_concept_judge": per_concept_judge, "agreement": agreement,
            "bars": {"mean": BARS["sd_mean_detection"], "min": BARS["sd_min_detection"]}}


def _write_sheet(rows, path: Path) -> None:
    from PIL import Image, ImageDraw
    label_w, cell = 120, 64
    sheet = Image.new("RGB", (label_w + 8 * cell, cell * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (name, images) in enumerate(rows):
        draw.text((4, r * cell + cell // 2 - 5), name, fill="black")
        for c, im in enumerate(images):
            sheet.paste(im.resize((cell, cell)), (label_w + c * cell, r * cell))
    write_png(path, sheet)


CARD_SECTIONS = ("clip", "probe", "detector", "judges", "pipeline", "sae")


def evaluate_and_write_card(n_per_concept: int = 64, out: Path | None = None,
                            root: Path = MINIWORLD_DIR, only=None) -> dict:
    """Measure every section (or the ``only`` ones, keeping the others from the recorded
    eval.json, which must then exist and have been measured at the same size) and write the card."""
    import tempfile
    out = Path(out) if out is not None else root
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    report: dict = {"n_per_concept": n_per_concept, "seeds": list(CARD_SEEDS), "sections": {}}
    sections = report["sections"]
    wanted = set(CARD_SECTIONS if only is None else only)
    unknown = sorted(wanted - set(CARD_SECTIONS))
    if unknown:
        raise EraselabError(f"--only {','.join(unknown)}: unknown card section; expected some of {', '.join(CARD_SECTIONS)}")
    if only is not None:
        recorded = _recorded_report(out / "eval.json", n_per_concept)
        sections.update({k: v for k, v in recorded["sections"].items() if k not in wanted})
    with tempfile.TemporaryDirectory() as tmp:
        if "clip" in wanted:
            sections["clip"] = eval_clip(root, n_per_concept) if _have("clip/model.safetensors", root) else None
        if "probe" in wanted:
            sections["probe"] = eval_probe(root, n_per_concept) if _have("probe/probe.json", root) else None
        if "detector" in wanted:
            sections["detector"] = eval_detector(root, Path(tmp)) if _have("detector/model.safetensors", root) else None
        ready = all(_have(p, root) for p in ("pipeline/model_index.json", "detector/model.safetensors", "probe/probe.json"))
        if "judges" in wanted:
            sections["judges"] = eval_judges(root, n_per_concept) if ready else None
        if "pipeline" in wanted:
            sections["pipeline"] = eval_pipeline(root, n_per_concept, out / "card_sheet.png") if ready else None
        if "sae" in wanted:
            sections["sae"] = eval_sae(root, n_per_concept) if _have("sae/sae.safetensors", root) else None
    report["stages"] = {stage: _stage_metrics(root / relpath) for stage, relpath in STAGE_RECORDS}
    report["seconds"] = round(time.time() - t0, 1)
    report["summary"] = _summary(report)
    write_text(out / "eval.json", json.dumps(report, indent=2))
    write_text(out / "MODEL_CARD.md", model_card(report))
    return report


def _recorded_report(path: Path, n_per_concept: int) -> dict:
    if not path.is_file():
        raise EraselabError(f"{path}: no recorded card to keep the other sections from; run without --only")
    report = json.loads(path.read_text())
    if report.get("n_per_concept") != n_per_concept:
        raise EraselabError(f"{path}: recorded at {report.get('n_per_concept')} images per concept, not "
                            f"{n_per_concept}; measure every section at one size")
    return report


# Each training stage's metrics file; the fine-tuning stages write beside the stage they refine.
STAGE_RECORDS = (("clip", "clip/metrics.json"), ("clip-image", "clip/image_finetune_metrics.json"),
                 ("vae", "vae/metrics.json"), ("decoder", "vae/decoder_metrics.json"),
                 ("unet", "pipeline/metrics.json"), ("detector", "detector/metrics.json"),
                 ("probe", "probe/metrics.json"), ("judge", "judge/metrics.json"), ("sae", "sae/metrics.json"))


def _stage_metrics(path: Path) -> dict | None:
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    base = metrics
    while isinstance(base, dict):  # a warm-started run keeps its bases' metrics, minus histories
        base.pop("history", None)
        base = base.get("base_metrics")
    return metrics


def _rounds(m: dict) -> tuple[str, str, str]:
    """A stage's steps, training seconds and devices; warm-started runs list their bases first
    ("9200 + 2400", "NVIDIA H200 + cpu")."""
    steps = str(m.get("steps", m.get("epochs", "")))
    seconds = str(m.get("train_seconds_total", m.get("train_seconds_this_run", m.get("seconds", ""))))
    device = str(m.get("device_name", m.get("device", "cpu")))
    base = m.get("base_metrics")
    if isinstance(base, dict):
        base_steps, base_seconds, base_device = _rounds(base)
        steps, seconds = f"{base_steps} + {steps}", f"{base_seconds} + {seconds}"
        device = base_device if base_device.split(" + ")[-1] == device else f"{base_device} + {device}"
    return steps, seconds, device


def _verdict(value, bar) -> str:
    return "MET" if value >= bar else "NOT MET"


def _summary(report: dict) -> str:
    s = report["sections"]
    lines = []
    if s["clip"]:
        v = s["clip"]["overall"]
        lines.append(f"mini CLIP zero-shot top-1: {v['mean']:.1%} [{v['lo']:.1%}, {v['hi']:.1%}] "
                     f"(bar {BARS['clip_zero_shot']:.0%}: {_verdict(v['mean'], BARS['clip_zero_shot'])})")
    if s.get("probe"):
        v = s["probe"]["overall"]
        lines.append(f"style probe accuracy: {v['mean']:.1%} (bar {BARS['probe_accuracy']:.0%}: "
                     f"{_verdict(v['mean'], BARS['probe_accuracy'])})")
    if s["detector"]:
        v = s["detector"]["map50"]
        lines.append(f"detector mAP50: {v:.3f} (bar {BARS['detector_map50']}: {_verdict(v, BARS['detector_map50'])})")
    if s.get("judges"):
        for name, record in s["judges"]["judges"].items():
            recall = record["recall"]
            lines.append(f"{name} recall: clean {recall['clean']['mean']:.1%}, weakest degraded "
                         f"{min(v['mean'] for v in recall.values()):.1%} "
                         f"({min(recall, key=lambda k: recall[k]['mean'])})")
    if s["pipeline"]:
        p = s["pipeline"]
        lines.append(f"mini SD detection: mean {p['mean_detection']:.1%} (bar 80%: "
                     f"{_verdict(p['mean_detection'], BARS['sd_mean_detection'])}), min {p['min_detection']:.1%} "
                     f"(bar 60%: {_verdict(p['min_detection'], BARS['sd_min_detection'])})")
    if s.get("sae"):
        v = s["sae"]
        lines.append(f"text-encoder SAE (layer {v['layer']}) FVE on fresh captions: {v['fve']:.1%} (bar "
                     f"{v['bar']:.0%}: {_verdict(v['fve'], v['bar'])}), dead latents {v['dead_share']:.1%}")
    missing = [k for k in CARD_SECTIONS if s.get(k) is None]
    if missing:
        lines.append(f"not evaluated (weights not trained yet): {', '.join(missing)}")
    return "\n".join(lines)


def model_card(report: dict) -> str:
    s = report["sections"]
    out = ["# Mini world v1: model card", "",
           "Measured by `eraselab miniworld eval` on fresh renders and generations (seed namespaces "
           f"never used in training), {report['n_per_concept']} images per concept over seeds "
           f"{report['seeds']}, 95% bootstrap intervals.", "", "## Summary", "", "```",
           report["summary"], "```", ""]
    if s["clip"]:
        out += ["## Mini CLIP zero-shot top-1 (rendered images, all styles)", "", "| label | top-1 | 95% CI |",
                "|---|---|---|"]
        out += [f"| {k} | {v['mean']:.1%} | [{v['lo']:.1%}, {v['hi']:.1%}] |" for k, v in s["clip"]["per_label"].items()]
        out += ["", f"By style ({s['clip']['style_mix']}):", "", "| style | top-1 | 95% CI | n |", "|---|---|---|---|"]
        out += [f"| {k} | {v['mean']:.1%} | [{v['lo']:.1%}, {v['hi']:.1%}] | {v['n']} |"
                for k, v in s["clip"]["per_style"].items()]
        out.append("")
    if s["probe"]:
        out += ["## Style probe accuracy", "", "| style | accuracy |", "|---|---|"]
        out += [f"| {k} | {v['mean']:.1%} |" for k, v in s["probe"]["per_style"].items()]
        out.append("")
    if s["detector"]:
        out += ["## Detector mAP50 (fresh validation scenes)", "", "| class | mAP50 |", "|---|---|"]
        out += [f"| {k} | {v:.3f} |" for k, v in s["detector"]["per_class_map50"].items()]
        out.append("")
    if s.get("judges"):
        out += _judges_card(s["judges"])
    if s["pipeline"]:
        second = s["pipeline"].get("per_concept_judge") or {}
        agree = s["pipeline"].get("agreement") or {}
        out += ["## Mini Stable Diffusion: concept detected in generations", "",
                "Judged by each concept's catalog detector (the YOLO detector, or the style probe for a "
                "style)" + (" and by the independent CNN judge, with the share of images on which the two "
                            "agree" if second else "") + ".", ""]
        if second:
            out += ["| concept | detected | 95% CI | CNN judge | 95% CI | agreement |", "|---|---|---|---|---|---|"]
            out += [f"| {k} | {v['mean']:.1%} | [{v['lo']:.1%}, {v['hi']:.1%}] | {second[k]['mean']:.1%} | "
                    f"[{second[k]['lo']:.1%}, {second[k]['hi']:.1%}] | {agree.get(k, float('nan')):.1%} |"
                    for k, v in s["pipeline"]["per_concept"].items() if k in second]
        else:
            out += ["| concept | detected | 95% CI |", "|---|---|---|"]
            out += [f"| {k} | {v['mean']:.1%} | [{v['lo']:.1%}, {v['hi']:.1%}] |"
                    for k, v in s["pipeline"]["per_concept"].items()]
        out += ["", "![generated images per concept](card_sheet.png)", ""]
    if s.get("sae"):
        v = s["sae"]
        out += ["## Text-encoder SAE (concept-steerers)", "",
                f"A k-sparse autoencoder on the mini SD text encoder's layer {v['layer']} output "
                f"({v['n_latents']} latents, k = {v['k']}; bench/miniworld/train_sae.py), on {v['n_captions']} "
                "fresh training-grammar captions that its training did not draw; fraction of variance "
                "explained over every position, and over the caption's own positions (words and end "
                "token, no start token or padding); dead latents: never among a token's top k.", "",
                "| FVE (every position) | FVE (caption positions) | dead latents | latents per token | bar |",
                "|---|---|---|---|---|",
                f"| {v['fve']:.1%} | {v['fve_caption_positions']:.1%} | {v['dead_share']:.1%} | {v['l0']} | "
                f"{v['bar']:.0%}: {_verdict(v['fve'], v['bar'])} |", ""]
    out += ["## Training record", "", "| stage | parameters (trained) | steps | seconds | device | files |",
            "|---|---|---|---|---|---|"]
    for stage, m in report["stages"].items():
        if m is None:
            out.append(f"| {stage} | not trained yet | | | | |")
            continue
        files = ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in (m.get("file_bytes") or {}).items())
        steps, seconds, device = _rounds(m)
        out.append(f"| {stage} | {m.get('parameters', m.get('trained_parameters', ''))} | "
                   f"{steps} | {seconds} | {device} | {files} |")
    out += _before_after(report["stages"])
    out += _rounds_record(report["stages"])
    return "\n".join(out) + "\n"


# Free-text fields a stage's metrics.json may carry about its own round.
NOTE_KEYS = ("history_note", "returned_as", "selection", "outcome", "record_corrected")


def _round_summary(m: dict) -> str:
    """One round of a stage in a line: recipe, steps, device, starting point, its notes."""
    parts = [f"recipe {m['recipe']}"] if m.get("recipe") else []
    steps = m.get("steps", m.get("epochs"))
    if steps is not None:
        parts.append(f"{steps} steps")
    parts.append(f"on {m.get('device_name', m.get('device', 'cpu'))}")
    if m.get("started_from"):
        parts.append(f"started from {m['started_from']}")
    after = m.get("val_zero_shot_after") or m.get("held_out_psnr_db_after")
    if isinstance(after, dict) and "pixel art" in after:
        unit = "validation zero-shot" if "val_zero_shot_after" in m else "held-out PSNR (dB)"
        parts.append(f"{unit} after: pixel art {after['pixel art']}")
    notes = [str(m[k]) for k in NOTE_KEYS if m.get(k)]
    return ", ".join(parts) + (f"; {'; '.join(notes)}" if notes else "")


def _rounds_record(stages: dict) -> list[str]:
    """Every round behind each stage's shipped weights, newest first: the rounds it was trained
    on top of (``base_metrics``) and the runs whose output it replaced (``replaced_run``)."""
    lines = []
    for stage, m in stages.items():
        if not m:
            continue
        entries, depth, node = [], 0, m
        while isinstance(node, dict):
            entries.append(("  " * depth) + f"- {stage}: " + _round_summary(node) if depth == 0 else
                           ("  " * depth) + "- on top of: " + _round_summary(node))
            node, depth = node.get("base_metrics"), depth + 1
        node, depth = m.get("replaced_run"), 1
        while isinstance(node, dict):
            entries.append(("  " * depth) + "- replaced an earlier run: " + _round_summary(node))
            node, depth = node.get("replaced_run"), depth + 1
        if len(entries) > 1 or any(m.get(k) for k in NOTE_KEYS):
            lines += entries
    if not lines:
        return []
    return ["", "Rounds behind the shipped weights (from each stage's metrics.json; CHANGELOG.md tells "
                "the story, bench/miniworld/train_*.py the current recipes):", ""] + lines


def _judges_card(section: dict) -> list[str]:
    """The judges' recall on clean and degraded renders and their false alarms on distractors."""
    kinds = section["degradations"]
    head = "| judge | " + " | ".join(kinds) + " |"
    out = ["## Judges on clean and degraded renders", "",
           "Recall: the share of fresh renders of a concept (every object and instance in every style; "
           "every style on objects) in which the judge sees it, clean, through the mini SD's VAE, at low "
           "contrast (35% of the deviation from the mean colour kept), blurred (Gaussian, radius 1.5 px) "
           "and with 40% of the concept's box covered (bench/miniworld/degrade.py). False alarms: the "
           f"share of {section.get('n_distractors', '')} distractor renders (noise, blobs, strokes, empty "
           "scenes) in which it sees any concept of its kind. 95% bootstrap intervals.", "",
           "Recall:", "", head, "|---|" + "---|" * len(kinds)]
    for name, record in section["judges"].items():
        out.append(f"| {name} | " + " | ".join(
            f"{record['recall'][k]['mean']:.1%} [{record['recall'][k]['lo']:.0%}, {record['recall'][k]['hi']:.0%}]"
            for k in kinds) + " |")
    out += ["", "False alarms on distractors:", "", head, "|---|" + "---|" * len(kinds)]
    for name, record in section["judges"].items():
        out.append(f"| {name} | " + " | ".join(f"{record['false_alarm'][k]['mean']:.1%}" for k in kinds) + " |")
    return out + [""]


def rewrite_card(root: Path = MINIWORLD_DIR) -> Path:
    """Rebuild MODEL_CARD.md from the recorded eval.json (no measuring); returns its path."""
    path = Path(root) / "MODEL_CARD.md"
    report = json.loads((Path(root) / "eval.json").read_text())
    write_text(path, model_card(report))
    return path


def _before_after(stages: dict) -> list[str]:
    """What each fine-tuning stage changed, per style, as its own stage measured it."""
    rows = []
    for stage, before_key, after_key, what in (
            ("clip-image", "val_zero_shot_before", "val_zero_shot_after", "validation zero-shot top-1"),
            ("decoder", "held_out_psnr_db_before", "held_out_psnr_db_after", "held-out PSNR (dB)")):
        m = stages.get(stage)
        if not m:
            continue
        before, after = m[before_key], m[after_key]
        parts = ([f"recipe {m['recipe']}"] if m.get("recipe") else []) + \
            ([f"started from {m['started_from']}"] if m.get("started_from") else [])
        origin = f" ({', '.join(parts)})" if parts else ""
        rows += ["", f"{stage}: {what}, before -> after{origin}:", "", "| | " + " | ".join(before) + " |",
                 "|---" * (len(before) + 1) + "|",
                 "| before | " + " | ".join(str(before[k]) for k in before) + " |",
                 "| after | " + " | ".join(str(after.get(k)) for k in before) + " |"]
    return rows


if __name__ == "__main__":
    import sys
    if sys.argv[1:] != ["--rewrite-card"]:
        raise SystemExit("usage: python -m bench.miniworld.evaluate --rewrite-card "
                         "(measuring is `eraselab miniworld eval`)")
    print(rewrite_card())
