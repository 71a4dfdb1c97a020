"""Content addresses and seeds: the ids that make runs resumable, shardable and reproducible.

    from bench.core.ids import content_id, prompt_id, image_seed
    content_id({"method": "esd-x", "concept": "snoopy"})   # '3f0c...' (16 hex digits)
    image_seed(prompt_id("a photo of snoopy"), 0, 0)       # the same seed in every run and shard

An id depends only on what the work is (sorted JSON), never on order, time or process, so the
same work gets the same id everywhere; an image's seed depends only on its prompt, sample index
and suite seed, so every method's image of a prompt has a same-seed twin from the original model.
"""

from __future__ import annotations

import hashlib
import json


def content_id(payload) -> str:
    """A 16-hex-digit SHA-256 of a JSON payload (sorted keys): the content address."""
    data = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def prompt_id(text: str) -> str:
    """The id of a prompt text: the same prompt is the same item (and seed) wherever it appears."""
    return "p" + hashlib.sha256(text.encode()).hexdigest()[:11]


def image_seed(prompt_id: str, sample_index: int, base_seed: int = 0) -> int:
    """The seed of one image: a stable hash of (base seed, prompt id, sample index)."""
    digest = hashlib.sha256(f"{base_seed}:{prompt_id}:{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)
