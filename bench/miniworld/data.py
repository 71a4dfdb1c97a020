"""Training data for the mini-world models: a fixed, seeded set of renders held in memory.

Rendering on the fly would cost ~40% of a CLIP step on 2 cores, so each stage renders its set
once (``render_dataset``), caches it under the stage's checkpoint folder as .npy + JSON (no
pickle), and re-draws captions from each image's attributes every time it is used, so the
text side still varies. Batches are drawn by index from a generator seeded by (stage, step),
which makes a resumed run see exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.core.files import write_npy
from bench.miniworld import render as mw


@dataclass
class RenderedSet:
    images: np.ndarray          # uint8 (N, 64, 64, 3)
    records: list[dict]         # concept, style, caption, attributes, boxes per image

    def __len__(self) -> int:
        return len(self.records)

    def captions(self, indices, seed: int) -> list[str]:
        """Fresh captions for the given images, drawn from their own attributes."""
        out = []
        for i in indices:
            rec = self.records[int(i)]
            rng = np.random.default_rng(mw.stable_seed("caption", seed, int(i)))
            out.append(mw.caption_for(rec["concept"], rec["style"], rec["attributes"], rng))
        return out


def renderer_fingerprint() -> str:
    """A short hash of the renderer's source: a cache made by another renderer is never reused."""
    import hashlib
    digest = hashlib.sha256()
    for name in ("render.py", "glyphs.py", "styles.py"):
        digest.update((Path(mw.__file__).parent / name).read_bytes())
    return digest.hexdigest()[:10]


# The render mix every training stage uses (clip, vae, unet share one rendered set).
TRAINING_MIX = dict(p_style=0.3, p_nothing=0.03)


def render_cache_key(n: int, seed: int, **sample_kwargs) -> str:
    """Names a rendered set by everything that decides its content: size, seed, sampling options
    and the renderer's source, so two stages asking for different mixes never share a cache."""
    import hashlib
    options = json.dumps(sorted(sample_kwargs.items()))
    digest = hashlib.sha256(f"{renderer_fingerprint()}|{options}".encode()).hexdigest()[:10]
    return f"renders_n{n}_s{seed}_{digest}"


RENDER_CHUNK = 500


def _render_chunk(job: tuple) -> tuple[np.ndarray, list[dict]]:
    seed, start, stop, sample_kwargs = job
    images, records = [], []
    for i in range(start, stop):
        sample = mw.random_sample(mw.stable_seed("train", seed, i), **sample_kwargs)
        images.append(sample.image)
        records.append({"concept": sample.concept, "style": sample.style, "caption": sample.caption,
                        "attributes": sample.attributes,
                        "boxes": [list(b) for b in sample.boxes]})
    return np.stack(images), records


def _map_chunks(render_chunk, jobs: list, workers: int, progress: bool, desc: str):
    """``render_chunk`` over ``jobs``, in order, in ``workers`` processes when > 1: each image
    depends on its own seed only, so any split renders the same set. Yields lazily when serial."""
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(workers) as pool:
            return list(tqdm(pool.map(render_chunk, jobs), total=len(jobs), desc=desc, disable=not progress))
    return (render_chunk(job) for job in tqdm(jobs, desc=desc, disable=not progress, mininterval=2))


def save_npy(path: Path, array: np.ndarray) -> None:
    """Written atomically (bench.core.files.write_npy): a crash never leaves half an array."""
    write_npy(path, array)


def render_dataset(n: int, seed: int, cache_dir: Path | None = None, progress: bool = True,
                   workers: int = 1, **sample_kwargs) -> RenderedSet:
    """Render ``n`` training samples (``render.random_sample``), or load them from the cache.
    ``workers`` > 1 renders in that many processes (same images, any number of workers)."""
    key = render_cache_key(n, seed, **sample_kwargs)
    if cache_dir is not None:
        images_path = Path(cache_dir) / f"{key}.npy"
        records_path = Path(cache_dir) / f"{key}.json"
        if images_path.is_file() and records_path.is_file():
            return RenderedSet(np.load(images_path, allow_pickle=False),
                               json.loads(records_path.read_text()))
    images = np.empty((n, 64, 64, 3), dtype=np.uint8)
    records = []
    chunks = [range(start, min(n, start + RENDER_CHUNK)) for start in range(0, n, RENDER_CHUNK)]
    parts = _map_chunks(_render_chunk, [(seed, c.start, c.stop, sample_kwargs) for c in chunks],
                        workers, progress, "render")
    for chunk, (chunk_images, chunk_records) in zip(chunks, parts):
        images[chunk.start:chunk.stop] = chunk_images
        records.extend(chunk_records)
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        save_npy(images_path, images)
        records_path.write_text(json.dumps(records))
    return RenderedSet(images, records)


def style_pair(seed: int, i: int) -> tuple[str, str, int]:
    """(concept, style other than plain, scene seed) of the i-th style pair of a set: concepts in
    ``random_sample``'s mix (instances 1.5x), styles uniform."""
    names = list(mw.OBJECTS) + list(mw.INSTANCES)
    weights = np.array([1.0] * len(mw.OBJECTS) + [1.5] * len(mw.INSTANCES))
    rng = np.random.default_rng(mw.stable_seed("style pair", seed, i))
    concept = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    style = mw.STYLES[1 + int(rng.integers(len(mw.STYLES) - 1))]
    return concept, style, mw.stable_seed("style pair", seed, i, "scene")


def _render_pair_chunk(job: tuple) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    seed, start, stop = job
    styled, plain, records = [], [], []
    for i in range(start, stop):
        concept, style, scene = style_pair(seed, i)
        sample = mw.render(concept, style, scene, same_scene_in_every_style=True)
        styled.append(sample.image)
        plain.append(mw.render(concept, "plain", scene, same_scene_in_every_style=True).image)
        records.append({"concept": concept, "style": style, "caption": sample.caption,
                        "attributes": sample.attributes, "boxes": [list(b) for b in sample.boxes]})
    return np.stack(styled), np.stack(plain), records


def render_style_pairs(n: int, seed: int, cache_dir: Path | None = None, progress: bool = True,
                       workers: int = 1) -> tuple[RenderedSet, np.ndarray]:
    """``n`` styled renders (an object or instance, a style other than plain) and, for each, the
    same scene rendered plain: (the styled set, the plain twins' pixels). Cached like
    ``render_dataset``."""
    key = render_cache_key(n, seed, style_pairs=True)
    paths = [Path(cache_dir or ".") / f"{key}.{part}" for part in ("styled.npy", "plain.npy", "json")]
    if cache_dir is not None and all(path.is_file() for path in paths):
        return (RenderedSet(np.load(paths[0], allow_pickle=False), json.loads(paths[2].read_text())),
                np.load(paths[1], allow_pickle=False))
    chunks = [(seed, start, min(n, start + RENDER_CHUNK)) for start in range(0, n, RENDER_CHUNK)]
    parts = list(_map_chunks(_render_pair_chunk, chunks, workers, progress, "render pairs"))
    styled = np.concatenate([p[0] for p in parts])
    plain = np.concatenate([p[1] for p in parts])
    records = [r for p in parts for r in p[2]]
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        for path, array in zip(paths, (styled, plain)):
            save_npy(path, array)
        paths[2].write_text(json.dumps(records))
    return RenderedSet(styled, records), plain


def batch_indices(n: int, batch_size: int, stage: str, step: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(mw.stable_seed(stage, seed, step))
    return rng.integers(0, n, size=batch_size)


def image_weights(records: list[dict], weights: dict[str, float]) -> np.ndarray:
    """Sampling probability of each rendered image: its concept's weight times its style's (for a
    styled image); names not in ``weights`` count 1."""
    w = np.array([weights.get(r["concept"], 1.0) * (weights.get(r["style"], 1.0) if r["style"] != "plain" else 1.0)
                  for r in records])
    return w / w.sum()


def weighted_batch_indices(p: np.ndarray, batch_size: int, stage: str, step: int, seed: int) -> np.ndarray:
    """Like ``batch_indices``, drawn with probabilities ``p`` (``image_weights``)."""
    rng = np.random.default_rng(mw.stable_seed(stage, seed, step))
    return rng.choice(len(p), size=batch_size, p=p)
