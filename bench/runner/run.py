"""Execute a suite: erase -> generate -> score -> aggregate, resumable and shardable.

    from bench.runner.run import run_suite
    summary = run_suite(load_suite("mini-default"), "runs/mini-default", smoke=True)

Work is content-addressed (bench/runner/plan.py) and every file is written atomically
(bench/core/files.py), so a run killed at any moment resumes where it stopped: a batch whose
part file exists is never recomputed; a batch whose PNGs all exist is rescored from disk, not
regenerated. With ``shard=(i, n)`` a process does the edits of shard i only; whichever process
finds every batch done compacts the parts into results.parquet, scores preservation (pairs, KID),
writes aggregates and the manifest (idempotent, so two finishing shards at once is harmless).

One process per shard of a run folder: a second process on the same shard is refused with one
line (bench/core/files.py: flock, released by the kernel however the holder dies). An edit is
erased under its own lock, so shards of different layouts on one folder never erase it twice.
A run that fails before it finished any work (a bad model path, a model that does not load)
leaves nothing behind: no run folder it created, no log.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from bench.core.errors import EraselabError
from bench.core.ids import content_id
from bench.runner import plan as plan_mod
from bench.core import files as fs
from bench.runner import store as st
from bench.samplers import resolve_precision, sampling
from bench.core.schema import GROUP_KEY, ROW_COLUMNS, is_reference

log = logging.getLogger("eraselab.run")


class Timer:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0


@dataclasses.dataclass
class RunContext:
    """What every stage of one process's run shares: what it runs, where, and how."""

    suite: object                      # bench.runner.suite.Suite (the smoke stand-in with --smoke)
    store: st.RunStore
    shard: tuple[int, int]
    smoke: bool
    device: str
    progress: bool
    timer: Timer = dataclasses.field(default_factory=Timer)
    counts: dict = dataclasses.field(default_factory=lambda: {"erased": 0, "loaded_edits": 0,
                                                               "generated": 0, "rescored": 0})
    t_start: float = dataclasses.field(default_factory=time.perf_counter)
    paths: dict = dataclasses.field(default_factory=dict)   # model id -> resolved path
    plan: object = None                                      # bench.runner.plan.Plan
    scoring: object = None                                   # bench.runner.scoring.Scoring
    keys: dict = dataclasses.field(default_factory=dict)    # batch id -> its image part's key
    original_text_encoder: object = None                     # the loaded model's, unedited (attacks)
    original_unet: object = None                             # ... and its UNet (attacks that need it)

    def bar(self, total: int, desc: str, unit: str):
        return _bar(total, desc, self.progress, unit)


def _bar(total: int, desc: str, progress: bool, unit: str):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, disable=not progress, file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1)


def _setup_log(store: st.RunStore, shard) -> Path:
    path = store.log_path(shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return path


def prepare(suite, smoke: bool = False, device: str = "cpu"):
    """(suite, model paths, plan, scoring, image-part keys): everything before model work."""
    from bench.runner import models
    from bench.runner.scoring import Scoring
    from methods import METHODS

    if smoke:
        from bench.runner import smoke as smoke_mod
        smoke_mod.smoke_env()
        suite = smoke_mod.smoke_suite(suite)
    # "auto" becomes what this device runs fast, before any address is computed from the sampler
    suite = dataclasses.replace(suite, sampler={**suite.sampler, "precision": resolve_precision(
        suite.sampler.get("precision", "fp32"), device)})
    paths = {m.id: models.resolve(m.path) for m in suite.models}
    fingerprints = {mid: models.fingerprint(p) for mid, p in paths.items()}
    names = {m.name for m in suite.methods} - {plan_mod.ORIGINAL}  # the base model is no method
    versions = {n: str(METHODS.get(n).version) for n in names}
    extra = {}
    if smoke:
        from bench.runner.smoke import method_overrides
        for n in names:
            fields = {f.name for f in dataclasses.fields(METHODS.get(n).Config)}
            extra[n] = method_overrides(n, fields)
    from methods.defaults import DEFAULTS
    plan = plan_mod.build_plan(suite, fingerprints, versions, extra,
                               {n: DEFAULTS.get(n, {}) for n in names})
    scoring = Scoring(suite, device=device, smoke=smoke,
                      subjects={im.subject for im in plan.images.values()})
    spec = scoring.spec(scoring.image_names)
    keys = {b.id: content_id({"batch": b.id, "scorers": spec}) for b in plan.batches}
    return suite, paths, plan, scoring, keys


def run_suite(suite, out_dir, shard: tuple[int, int] = (0, 1), smoke: bool = False,
              device: str = "cpu", progress: bool = True) -> dict:
    """Run (or resume) ``suite`` into ``out_dir``; returns a summary dict."""
    ctx = RunContext(suite=suite, store=st.RunStore(out_dir), shard=shard, smoke=smoke, device=device,
                     progress=progress)
    store = ctx.store
    created = st.make_run_dir(store.root)
    try:
        with fs.file_lock(store.shard_lock(shard), what=f"shard {shard[0]}/{shard[1]} of this run"):
            return _run_locked(ctx, created)
    except fs.RunLocked:
        if created:
            _remove_if_empty(store.root)
        raise


def _run_locked(ctx: RunContext, created: bool) -> dict:
    store, shard, timer = ctx.store, ctx.shard, ctx.timer
    fs.clean_stale_temps(store.root)
    had_work = _has_work(store)
    log_path = _setup_log(store, shard)
    log.info("run %s into %s shard %d/%d smoke=%s device=%s", ctx.suite.name, store.root, shard[0],
             shard[1], ctx.smoke, ctx.device)
    try:
        with timer("plan"):
            ctx.suite, ctx.paths, ctx.plan, ctx.scoring, ctx.keys = prepare(ctx.suite, ctx.smoke, ctx.device)
    except BaseException:
        _discard_attempt(store, log_path, created, had_work)
        raise
    plan, keys, counts = ctx.plan, ctx.keys, ctx.counts
    mine = plan.shard_edits(*shard)
    todo = [b for b in plan.batches if b.edit_id in mine and not store.part("images", keys[b.id]).is_file()]
    log.info("plan: %d edits and the original model, %d images, %d batches; this shard: %d models, "
             "%d batches to do", plan.erasures, len(plan.images), len(plan.batches), len(mine), len(todo))
    try:
        _execute(ctx, todo)
    except EraselabError as exc:
        log.error("stopped: %s", exc)
        if not had_work and not _has_work(store):
            _discard_attempt(store, log_path, created, had_work)  # e.g. the model did not load
        else:
            _save_timings(ctx, status="error")
        raise
    missing = [b for b in plan.batches if not store.part("images", keys[b.id]).is_file()]
    summary = {"run_dir": str(store.root), "suite": ctx.suite.name, "shard": f"{shard[0]}/{shard[1]}",
               "edits": plan.erasures, "images": len(plan.images), "rows": len(plan.rows),
               **counts, "log": str(log_path), "complete": not missing}
    if missing:
        log.info("%d batches left for other shards; the last shard to finish compacts", len(missing))
        _save_timings(ctx, status="partial")
        summary["batches_left"] = len(missing)
        summary["seconds"] = round(time.perf_counter() - ctx.t_start, 2)
        return summary
    finalize(ctx)
    _save_timings(ctx, status="complete")
    write_manifest(ctx)
    summary["seconds"] = round(time.perf_counter() - ctx.t_start, 2)
    log.info("done in %.1f s", summary["seconds"])
    return summary


def _has_work(store) -> bool:
    """Whether the run folder holds any finished work (an edit, an image, a part, results)."""
    root = store.root
    return any((root / d).is_dir() and any((root / d).iterdir()) for d in ("edits", "images", "parts")) \
        or store.results.is_file()


def _discard_attempt(store, log_path: Path, created: bool, had_work: bool) -> None:
    """Remove what a run that did no work wrote: its log, and the run folder if it made it."""
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    if had_work or _has_work(store):
        return
    try:
        log_path.unlink()
    except OSError:
        pass
    _remove_if_empty(log_path.parent)
    if created:
        import shutil
        # nothing of value: only the (unlocked-at-close) lock files and empty folders are left
        for sub in (st.LOCK_DIR, "timings", "logs", "edits", "images", "parts"):
            shutil.rmtree(store.root / sub, ignore_errors=True)
        _remove_if_empty(store.root)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _execute(ctx: RunContext, todo: list) -> None:
    if not todo:
        return
    plan, timer = ctx.plan, ctx.timer
    from methods.delta import reset_edits

    by_edit: dict[str, list] = {}
    for b in todo:
        by_edit.setdefault(b.edit_id, []).append(b)
    order = sorted(by_edit, key=lambda e: (plan.edits[e].model, not plan.edits[e].is_base, e))
    bar_e = ctx.bar(len(order), "erase", "edit")
    bar_i = ctx.bar(sum(len(b.images) for b in todo), "generate+score", "img")
    pipes: dict[str, object] = {}
    try:
        for edit_id in order:
            edit = plan.edits[edit_id]
            if edit.model not in pipes:
                pipes.clear()  # one base model in memory at a time
                with timer("load"):
                    from bench.runner import models
                    pipes[edit.model] = models.load(ctx.paths[edit.model], ctx.device)
                    log.info("loaded model %s from %s", edit.model, ctx.paths[edit.model])
                    _keep_originals(ctx, pipes[edit.model])
            with timer("erase"):
                edited = _edited_pipeline(ctx, pipes[edit.model], edit)
            bar_e.update(1)
            try:
                for job in sorted({b.attack for b in by_edit[edit_id] if b.attack}):
                    _ensure_attack(ctx, edited, plan.attacks[job])
                for key in sorted({b.sampler for b in by_edit[edit_id]}):
                    with sampling(edited, plan.samplers[key]):
                        for batch in by_edit[edit_id]:
                            if batch.sampler == key:
                                _do_batch(ctx, edited, batch)
                                bar_i.update(len(batch.images))
            finally:
                reset_edits(edited)
    finally:
        bar_e.close()
        bar_i.close()


def _edited_pipeline(ctx: RunContext, pipe, edit):
    from methods.delta import load_edit

    store, counts = ctx.store, ctx.counts
    if edit.is_base:
        return pipe
    if edit.source is not None:
        return _transferred_pipeline(ctx, pipe, edit)
    if store.has_edit(edit.id):
        counts["loaded_edits"] += 1
        log.info("edit %s (%s %s) loaded from disk", edit.id, edit.method, edit.concept)
        return load_edit(pipe, store.edit_dir(edit.id))
    # One process erases a given edit: another (a shard of a different layout) waits here, then
    # finds the saved edit and loads it instead of erasing it again. A fine-tuning chain is
    # trained under one lock, whichever of its checkpoints asks first.
    lock = edit.finetune[0] if edit.finetune is not None else edit.id
    with fs.file_lock(store.edit_lock(lock), wait=True):
        if store.has_edit(edit.id):
            counts["loaded_edits"] += 1
            log.info("edit %s (%s %s) loaded from disk (saved by another process)", edit.id,
                     edit.method, edit.concept)
            return load_edit(pipe, store.edit_dir(edit.id))
        if edit.finetune is not None:
            return _finetuned_pipeline(ctx, pipe, edit)
        if edit.parent is not None:  # a sequence: erase on top of the edit before it
            pipe = _edited_pipeline(ctx, pipe, ctx.plan.edits[edit.parent])
        return _erase_and_save(ctx, pipe, edit)


def _finetuned_pipeline(ctx: RunContext, pipe, edit):
    """``pipe`` as fine-tuning checkpoint ``edit``: its chain is trained from its start edit once,
    every checkpoint of the ladder saved on the way (those saved already are not built again)."""
    from bench.finetune import finetune
    from bench.finetune_data import finetune_pairs
    from bench.runner.resurgence import chain_recipe
    from methods.defaults import detect_family
    from methods.delta import load_edit, reset_edits, save_edit

    store = ctx.store
    chain = ctx.plan.chains[edit.finetune[0]]
    start = _edited_pipeline(ctx, pipe, ctx.plan.edits[chain.parent])
    recipe = chain_recipe(ctx.suite.resurgence, chain.chain, detect_family(start))
    fewshot = None
    if ctx.smoke:  # seeded noise stands in for a real model's few-shot photos
        from bench.runner.smoke import fewshot_images as fewshot
    pairs = finetune_pairs(ctx.suite.catalog, chain.concept, chain.chain.data, chain.n, chain.seed, chain.source,
                           fewshot_source=fewshot)
    ids = dict(chain.checkpoints)

    def save(step, result):
        if step in ids and not store.has_edit(ids[step]):
            save_edit(result, store.edit_dir(ids[step]))

    with ctx.timer("finetune"):
        finetune(start, pairs, recipe, seed=chain.seed, on_checkpoint=save, progress=ctx.progress,
                 describe={"data": chain.chain.data, "concept": chain.concept, "chain": chain.chain.label},
                 skip=lambda step: step not in ids or store.has_edit(ids[step]))
    ctx.counts["finetuned"] = ctx.counts.get("finetuned", 0) + 1
    log.info("chain %s (%s from edit %s) fine-tuned: %d checkpoints", chain.id, chain.chain.label,
             chain.parent, len(ids))
    base = reset_edits(start)
    return load_edit(base, store.edit_dir(edit.id))


def _transferred_pipeline(ctx: RunContext, pipe, edit):
    """``pipe`` with the text-encoder edit made on another model (erased first when no process
    has saved it yet: that model is loaded for it, then let go)."""
    from methods.delta import load_edit
    store = ctx.store
    source = ctx.plan.edits[edit.source]
    if not store.has_edit(source.id):
        with fs.file_lock(store.edit_lock(source.id), wait=True):
            if not store.has_edit(source.id):
                from bench.runner import models
                with ctx.timer("load"):
                    source_pipe = models.load(ctx.paths[source.model], ctx.device)
                _erase_and_save(ctx, source_pipe, source)
                del source_pipe
    ctx.counts["loaded_edits"] += 1
    log.info("edit %s: the text encoder of edit %s (%s %s, made on %s) plugged into %s", edit.id,
             source.id, source.method, source.concept, source.model, edit.model)
    return load_edit(pipe, store.edit_dir(source.id), transfer=True)


def _erase_and_save(ctx: RunContext, pipe, edit):
    from methods.delta import save_edit
    from methods.erase import erase

    store = ctx.store
    fewshot = None
    if ctx.smoke:  # seeded noise stands in for the few-shot photos of the tiny model
        from bench.runner.smoke import fewshot_images as fewshot
    result = erase(pipe, edit.method, ctx.suite.catalog[edit.concept], variant=edit.variant,
                   overrides=dict(edit.overrides), seed=edit.seed or 0, catalog=ctx.suite.catalog,
                   progress=ctx.progress, fewshot_source=fewshot)
    try:
        save_edit(result, store.edit_dir(edit.id))
    except EraselabError:
        if not store.has_edit(edit.id):  # else another shard saved the same edit first
            raise
    except OSError as exc:  # a full disk (a rerun resumes), permissions, a read-only folder
        raise fs.os_error(store.edit_dir(edit.id), exc, "cannot save the edit") from None
    ctx.counts["erased"] += 1
    log.info("edit %s (%s %s seed %s) erased in %.2f s", edit.id, edit.method, edit.concept,
             edit.seed, result.record["seconds"])
    return result.pipeline


def _keep_originals(ctx: RunContext, pipe) -> None:
    """Frozen copies of the unedited text encoder and UNet, for the attacks that use them while
    the pipeline holds an edit (attacks.base.Probe.needs_original_text_encoder, needs_original_model)."""
    from attacks.base import get_probe, original_parts
    probes = [get_probe(job.probe) for job in ctx.plan.attacks.values()]
    ctx.original_text_encoder, ctx.original_unet = original_parts(pipe, probes)


def _ensure_attack(ctx: RunContext, pipe, job) -> None:
    """Run attack ``job`` against ``pipe`` (its edit) and save what it found, unless saved."""
    from attacks.base import Found, get_probe, run_attack

    store = ctx.store
    folder = store.attack_dir(job.id)
    if Found.is_saved(folder):
        return
    with fs.file_lock(store.attack_lock(job.id), wait=True):
        if Found.is_saved(folder):
            return
        concept = ctx.suite.catalog[job.concept]
        overrides = dict(job.overrides)
        if ctx.smoke:  # the contract in seconds (as the methods' smoke overrides), on seeded noise
            overrides = {**get_probe(job.probe).quick_overrides, **overrides}
        with ctx.timer("attack"):
            found = run_attack(pipe, job.probe, concept, job.base_prompt, seed=job.seed,
                               overrides=overrides, progress=ctx.progress, image_source=_image_source(ctx),
                               original_text_encoder=ctx.original_text_encoder, original_unet=ctx.original_unet,
                               clip=ctx.scoring.get("clip-score").clip if get_probe(job.probe).needs_selector else None)
        found.save(folder, {"probe": job.probe, "kind": job.kind, "edit": job.edit, "arm": job.arm,
                            "concept": job.concept, "base_prompt": job.base_prompt, "seed": job.seed})
    ctx.counts["attacked"] = ctx.counts.get("attacked", 0) + 1
    log.info("attack %s (%s on %s, %s, %r) in %.2f s: objective %.4g -> %.4g", job.id, job.probe, job.arm,
             job.concept, job.base_prompt, found.seconds, found.objective_before, found.objective_after)


def _image_source(ctx: RunContext):
    """Where attacks get their concept images: the catalog, or seeded noise in a smoke run."""
    if ctx.smoke:
        from bench.runner.smoke import fewshot_images
        return fewshot_images
    return None


def _generate_batch(ctx: RunContext, pipe, batch) -> list:
    """The images of ``batch``, drawn from its prompts or from what its attack found."""
    from bench.generate import generate

    s = ctx.plan.samplers[batch.sampler]
    prompts = [im.prompt for im in batch.images]
    hook = None
    if batch.attack:
        from attacks.base import Found, get_probe
        from attacks.placeholders import Placeholders
        found = Found.load(ctx.store.attack_dir(batch.attack))
        if get_probe(ctx.plan.attacks[batch.attack].probe).draws_images:
            return _draw_probe_images(ctx, pipe, batch, found, s)
        prompts = [found.prompt] * len(batch.images)
        if found.vectors is not None:
            hook = Placeholders(pipe.text_encoder, pipe.tokenizer, found.vectors)
    try:
        images = generate(pipe, prompts, [im.seed for im in batch.images], steps=s["steps"],
                          guidance=s["guidance"], batch_size=len(batch.images),
                          resolution=s["resolution"], device=ctx.device)
    finally:
        if hook is not None:
            hook.remove()
    return images


def _draw_probe_images(ctx: RunContext, pipe, batch, found, sampler: dict) -> list:
    """A non-text probe's images: image i from concept image number ``sample`` (the attack's own
    seeds, never the evaluation images) with the image's own seed."""
    from attacks.base import concept_images, get_probe, resolve_probe_config
    from methods.defaults import detect_family
    job = ctx.plan.attacks[batch.attack]
    cls = get_probe(job.probe)
    images = []
    if cls.needs_concept_images:
        n = max(im.sample for im in batch.images) + 1
        pool = concept_images(ctx.suite.catalog[job.concept], n, job.seed, _image_source(ctx))
        images = [pool[im.sample] for im in batch.images]
    clip = ctx.scoring.get("clip-score").clip if cls.needs_selector else None
    config = resolve_probe_config(cls, detect_family(pipe), job.overrides)
    return cls().draw(pipe, found.prompt, [im.seed for im in batch.images], images, config,
                      sampler["steps"], sampler["guidance"], clip=clip)


def _do_batch(ctx: RunContext, pipe, batch) -> None:
    import pandas as pd
    from detectors.base import load_images

    store, timer, counts, keys = ctx.store, ctx.timer, ctx.counts, ctx.keys
    files = [store.image_path(im.path) for im in batch.images]
    drawn_from = None
    if batch.attack:
        from attacks.base import Found
        drawn_from = Found.load(store.attack_dir(batch.attack)).prompt
    if all(f.is_file() for f in files):
        # killed after the PNGs, before the part: rescore the stored images, do not regenerate
        with timer("load_images"):
            images = load_images(files)
        counts["rescored"] += len(files)
    else:
        with timer("generate"):
            images = _generate_batch(ctx, pipe, batch)
        with timer("write_images"):
            for image, f in zip(images, files):
                fs.write_png(f, image)
        counts["generated"] += len(files)
    with timer("score"):
        cols = ctx.scoring.score_images(images, list(batch.images))
    frame = pd.DataFrame([{"image_id": im.id, **c} for im, c in zip(batch.images, cols)])
    if drawn_from is not None:
        frame["attack_prompt"] = drawn_from  # what the image was drawn from (rows keep the base prompt)
    with timer("write_parts"):
        fs.write_parquet(store.part("images", keys[batch.id]), frame)
    log.info("batch %s: %d images of edit %s", batch.id, len(files), batch.edit_id)


# -- finalize: preservation, compaction, aggregates -------------------------------------------
def finalize(ctx: RunContext):
    import pandas as pd
    from bench.metrics import aggregate

    plan, store, timer, keys = ctx.plan, ctx.store, ctx.timer, ctx.keys
    with timer("compact"):
        frames = [pd.read_parquet(store.part("images", keys[b.id])) for b in plan.batches]
        scores = pd.concat(frames, ignore_index=True).drop_duplicates("image_id")
    with timer("pairs"):
        pairs = _pair_scores(ctx)
    with timer("kid"):
        kid = _kid_scores(ctx)
    with timer("compact"):
        rows = pd.DataFrame(plan.rows)
        rows.insert(0, "run", store.root.resolve().name)
        results = rows.merge(scores, on="image_id", how="left", validate="many_to_one")
        lost = results["image_id"][~results["image_id"].isin(scores["image_id"])]
        if len(lost):
            raise EraselabError(f"{store.root}: {len(lost)} images have no scores (first "
                                f"{lost.iloc[0]}); run again to complete them")
        if pairs is not None:
            results = results.merge(pairs, on="image_id", how="left", validate="many_to_one")
        for col in ROW_COLUMNS:
            if col not in results.columns:
                results[col] = None
        results["clip_image_cosine"] = pd.to_numeric(results["clip_image_cosine"], errors="coerce")
        results = results[list(ROW_COLUMNS) + [c for c in results.columns if c not in ROW_COLUMNS]]
        fs.write_parquet(store.results, results)
    if plan.attacks or plan.not_applicable:
        with timer("compact"):
            fs.write_json(store.root / ROBUSTNESS_FILE, robustness_record(plan, store))
    with timer("aggregate"):
        agg = aggregate(results, kid, edit_records(plan, store))
        fs.write_parquet(store.root / "aggregates.parquet", agg)
        fs.write_csv(store.root / "aggregates.csv", agg)
    return results, agg


ROBUSTNESS_FILE = "robustness.json"


def robustness_record(plan, store) -> dict:
    """What the robustness section's report reads besides the rows: each attack job's record
    (found prompt, objective before and after, seconds, config), every probe that did not apply,
    and which probe each best-of-N probe's lift is measured against (``Probe.compare_with``)."""
    from attacks.base import FOUND_FILE, get_probe
    attacks = []
    for job_id in sorted(plan.attacks):
        record = json.loads((store.attack_dir(job_id) / FOUND_FILE).read_text())
        attacks.append({"job": job_id, **record})
    probes = sorted({job.probe for job in plan.attacks.values()})
    compare_with = {p: get_probe(p).compare_with for p in probes if get_probe(p).compare_with}
    return {"attacks": attacks, "not_applicable": list(plan.not_applicable), "compare_with": compare_with}


def _pair_scores(ctx: RunContext):
    import pandas as pd
    from detectors.base import load_images

    plan, scoring, store = ctx.plan, ctx.scoring, ctx.store
    if not scoring.pair_names:
        return None
    by_edit: dict[str, list] = {}
    for im_id, twin in sorted(plan.twins.items()):
        by_edit.setdefault(plan.images[im_id].edit_id, []).append((im_id, twin))
    spec = scoring.spec(scoring.pair_names)
    frames = []
    bar = ctx.bar(len(plan.twins), "preservation pairs", "pair")
    for edit_id, pairs in sorted(by_edit.items()):
        path = store.part("pairs", content_id({"pairs": pairs, "scorers": spec}))
        if not path.is_file():
            edited = load_images([store.image_path(plan.images[a].path) for a, _ in pairs])
            twins = load_images([store.image_path(plan.images[b].path) for _, b in pairs])
            frame = pd.DataFrame({"image_id": [a for a, _ in pairs]})
            for name in scoring.pair_names:
                out = pd.DataFrame(scoring.get(name).score(edited, twins))
                frame = pd.concat([frame, out], axis=1)
            fs.write_parquet(path, frame)
        frames.append(pd.read_parquet(path))
        bar.update(len(pairs))
    bar.close()
    if not frames:
        return None
    return pd.concat(frames, ignore_index=True).drop_duplicates("image_id")


def _kid_scores(ctx: RunContext):
    import pandas as pd
    from detectors.base import load_images

    plan, scoring, store = ctx.plan, ctx.scoring, ctx.store
    if not scoring.set_names:
        return None
    spec = scoring.spec(scoring.set_names)
    groups = [(k, v) for k, v in sorted(plan.groups.items()) if not is_reference(k[1], k[2])]
    frames = []
    bar = ctx.bar(len(groups), "preservation KID", "set")
    for key, (edited_ids, orig_ids) in groups:
        edited_ids, orig_ids = sorted(set(edited_ids)), sorted(set(orig_ids))
        if min(len(edited_ids), len(orig_ids)) < 2:
            bar.update(1)
            continue  # KID needs >= 2 images a side; the aggregate shows NaN
        path = store.part("kid", content_id({"edited": edited_ids, "original": orig_ids,
                                                       "scorers": spec}))
        if not path.is_file():
            edited = load_images([store.image_path(plan.images[i].path) for i in edited_ids])
            orig = load_images([store.image_path(plan.images[i].path) for i in orig_ids])
            row = dict(zip(GROUP_KEY, key))
            for name in scoring.set_names:
                row.update(scoring.get(name).score(edited, orig))
            fs.write_parquet(path, pd.DataFrame([row]))
        frames.append(pd.read_parquet(path))
        bar.update(1)
    bar.close()
    return pd.concat(frames, ignore_index=True) if frames else None


# -- manifest -------------------------------------------------------------------------------
def _save_timings(ctx: RunContext, status: str) -> None:
    t_start = ctx.t_start
    record = {"pid": os.getpid(), "shard": list(ctx.shard), "status": status,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - (time.perf_counter() - t_start))),
              "wall_seconds": round(time.perf_counter() - t_start, 3),
              "stages": {k: round(v, 3) for k, v in ctx.timer.seconds.items()}, "counts": ctx.counts}
    fs.write_json(ctx.store.root / "timings" / f"{time.time_ns()}-{os.getpid()}.json", record)


def _versions() -> dict:
    from importlib import metadata
    out = {"python": sys.version.split()[0]}
    for pkg in ("eraselab", "torch", "diffusers", "transformers", "open_clip_torch", "timm",
                "ultralytics", "torchmetrics", "pandas", "pyarrow", "numpy", "accelerate"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _git_commit() -> str | None:
    import subprocess
    from bench.core.paths import REPO_ROOT
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _hardware(device: str) -> dict:
    import platform
    import torch
    hw = {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
          "torch_threads": torch.get_num_threads(), "device": device}
    if torch.cuda.is_available():
        hw["cuda_device"] = torch.cuda.get_device_name(0)
    return hw


def edit_records(plan, store) -> dict:
    """edit id -> bench.manifest.EditRecord: what each edit was and what it cost (the base model
    is no edit and has no record)."""
    from bench.manifest import EditRecord
    from methods.delta import DELTA_FILE, read_edit_record, saved_inference_params

    edits = {}
    for edit_id, e in sorted(plan.edits.items()):
        if e.is_base:
            continue
        # a transfer costs what its source cost: the edit is the source's, plugged in elsewhere
        saved = e.source or edit_id
        rec = read_edit_record(store.edit_dir(saved))
        edits[edit_id] = EditRecord(
            method=e.method, variant=e.variant or "", concept=e.concept, model=e.model, seed=e.seed,
            overrides=dict(e.overrides), seconds=rec.get("seconds"),
            peak_memory_mb=rec.get("peak_memory_mb"), params_changed=rec.get("params_changed"),
            params_added=saved_inference_params(store.edit_dir(saved)),
            delta_bytes=(store.edit_dir(saved) / DELTA_FILE).stat().st_size,
            change_by_group=list(rec.get("change_by_group") or []))
    return edits


def write_manifest(ctx: RunContext) -> None:
    from bench.manifest import RunManifest, write_manifest as write

    suite, plan, store = ctx.suite, ctx.plan, ctx.store
    timings = []
    for p in sorted((store.root / "timings").glob("*.json")):
        try:
            timings.append(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    stages: dict[str, float] = {}
    for t in timings:
        for k, v in t.get("stages", {}).items():
            stages[k] = round(stages.get(k, 0.0) + v, 3)
    catalog = suite.raw.get("catalog") if isinstance(suite.raw, dict) else None
    manifest = RunManifest(
        run=store.root.resolve().name, suite=suite.name, suite_file=str(suite.path),
        catalog=str(catalog or suite.catalog.name), catalog_path=str(Path(suite.catalog.path).resolve()),
        smoke=ctx.smoke, resolved_suite=_jsonable(suite.raw),
        effective=_jsonable({"models": [vars(m) for m in suite.models], "sampler": suite.sampler,
                             "prompt_sets": {k: vars(v) for k, v in suite.prompt_sets.items()},
                             "seeds": list(suite.seeds), "arms": arms(suite)}),
        counts={"edits": plan.erasures, "images": len(plan.images), "rows": len(plan.rows)},
        versions=_versions(), git_commit=_git_commit(), hardware=_hardware(ctx.device),
        seconds_per_stage=stages, invocations=timings, edits=edit_records(plan, store))
    write(store.manifest, manifest)


def arms(suite) -> list[dict]:
    """Each arm as the report reads it (reports/studies.py): its table label, what it ran, and
    the study and swept values that place it in a study's figures."""
    return [{"method": m.name, "label": m.label, "variant": m.variant, "overrides": dict(m.overrides),
             "study": m.study, "swept": [list(kv) for kv in m.swept], "transfer_from": m.transfer_from}
            for m in suite.methods]


def _jsonable(x):
    return json.loads(json.dumps(x, default=str))
