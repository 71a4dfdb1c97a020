"""The models under test of a run: where each comes from, its fingerprint, loading it.

A fingerprint identifies the base weights in every edit's content address, cheaply: the shipped
mini world by its SHA256SUMS lines, a local folder by its files' names, sizes and content hashes
(big files by their first and last MiB plus size), a hub id by the id and cached revision, the
``--smoke`` tiny pipeline by its constructor seed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from bench.core.errors import EraselabError
from bench.miniworld.weights import SUMS_FILE, folders_digest
from bench.runner.smoke import SMOKE_MODEL
from bench.runner.suite import SHIPPED_MODELS

_MIB = 1 << 20


def resolve(path: str) -> str:
    """``miniworld`` (or another shipped name) -> the verified shipped folder (one-line error if
    it is not installed); a shipped folder's linked parts are verified where they live."""
    if path in SHIPPED_MODELS:
        try:
            from bench.miniworld.weights import verified_dir
            folder = verified_dir(SHIPPED_MODELS[path])
            for part in _linked_folders(folder):
                verified_dir(part)
            return str(folder)
        except EraselabError as exc:
            raise EraselabError(f"the shipped mini-world pipeline is not available ({exc}); "
                                f"run with --smoke to check the suite on tiny stand-ins") from None
    return path


def fingerprint(path: str) -> str:
    if path == SMOKE_MODEL:
        return f"smoke:{SMOKE_MODEL}"
    local = Path(path)
    if not local.exists():
        return f"hub:{path}@{_hub_revision(path)}"
    if (local.parent / SUMS_FILE).is_file() and local.name in SHIPPED_MODELS.values():  # already checksummed
        return "miniworld:" + folders_digest({local.name, *_linked_folders(local)}, local.parent)[:16]
    digest = hashlib.sha256()
    for f in sorted(p for p in local.rglob("*") if p.is_file()):
        size = f.stat().st_size
        digest.update(f"{f.relative_to(local)}|{size}|".encode())
        with open(f, "rb") as h:
            if size <= 4 * _MIB:
                digest.update(h.read())
            else:
                digest.update(h.read(_MIB))
                h.seek(size - _MIB)
                digest.update(h.read(_MIB))
    return "folder:" + digest.hexdigest()[:16]


def _linked_folders(folder: Path) -> list[str]:
    """The sibling folders a shipped pipeline's parts link to (``text_encoder -> ../pipeline/...``)."""
    out = []
    for part in sorted(Path(folder).iterdir()):
        if part.is_symlink():
            target = (part.parent / part.readlink()).resolve()
            if target.parent.parent == Path(folder).resolve().parent:
                out.append(target.parent.name)
    return sorted(set(out))


def _hub_revision(repo_id: str) -> str:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
        refs = Path(HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / "main"
        return refs.read_text().strip() if refs.is_file() else "uncached"
    except Exception:  # noqa: BLE001 - the revision only refines the fingerprint
        return "unknown"


def load(path: str, device: str = "cpu"):
    """The pipeline with the scheduler it ships with (erasure trains against it; the suite's
    sampler is swapped in only while images are generated), progress bars off."""
    if path == SMOKE_MODEL:
        from bench.tiny import tiny_pipeline
        pipe = tiny_pipeline(seed=0).to(device)
    else:
        from bench.pipeline_io import load_pipeline
        pipe = load_pipeline(path, device=device, progress=False)  # the runner shows its own bars
    pipe.set_progress_bar_config(disable=True)
    return pipe
