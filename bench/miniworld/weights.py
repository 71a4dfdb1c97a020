"""Checksummed access to the shipped mini-world weights (datasets/miniworld/v1/).

Every shipped file is listed in ``SHA256SUMS`` (``sha256  relative/path`` per line, as
``sha256sum`` writes it). Code that loads a shipped file asks ``verified_path("clip/model.safetensors")``
first: a missing file or a checksum mismatch is a one-line error naming the file. Training stages
call ``record_checksums`` after writing their outputs.

Layout (each stage's folder also holds its ``metrics.json``):
  clip/        open_clip config (open_clip_config.json) + model.safetensors  (the evaluation CLIP)
  pipeline/    a diffusers StableDiffusionPipeline folder (the default model under test)
  detector/    the YOLO detector: model.safetensors + model.yaml (architecture, class names)
  probe/       the style probe: probe.safetensors + probe.json
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from bench.core.errors import EraselabError
from bench.core.files import write_text
from bench.core.paths import MINIWORLD_DIR

SUMS_FILE = "SHA256SUMS"


def strip_local_paths(folder: Path) -> None:
    """Drop diffusers' ``_name_or_path`` (the folder a model was loaded from on the training
    machine) from every config.json under ``folder``: shipped configs must not name our disks."""
    import json
    for config in Path(folder).rglob("config.json"):
        data = json.loads(config.read_text())
        if data.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def folders_digest(folders, root: Path = MINIWORLD_DIR) -> str:
    """SHA-256 (hex) over the checksum lines of every file under the top-level ``folders``: the
    identity of those shipped files, cheap because their checksums are already written. Edit
    content addresses hold it (through the model fingerprint), so its bytes must not change."""
    wanted = set(folders)
    lines = sorted(f"{digest}  {path}" for path, digest in read_sums(root).items()
                   if path.split("/")[0] in wanted)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def read_sums(root: Path = MINIWORLD_DIR) -> dict[str, str]:
    sums_path = Path(root) / SUMS_FILE
    if not sums_path.is_file():
        raise EraselabError(f"{sums_path}: missing; the mini-world weights are not installed "
                            f"(train them with `eraselab miniworld train all`)")
    sums = {}
    for number, line in enumerate(sums_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise EraselabError(f"{sums_path}: line {number}: expected '<sha256>  <path>'")
        sums[parts[1].strip().lstrip("*")] = parts[0]
    return sums


@lru_cache(maxsize=None)
def _verified(root: str, relpath: str, mtime_ns: int, size: int) -> str:
    # Cached per (file, mtime, size): hashing the pipeline on every load would cost seconds.
    sums = read_sums(Path(root))
    if relpath not in sums:
        raise EraselabError(f"{Path(root) / relpath}: not listed in {SUMS_FILE}")
    actual = sha256_of(Path(root) / relpath)
    if actual != sums[relpath]:
        raise EraselabError(f"{Path(root) / relpath}: SHA-256 mismatch (expected {sums[relpath][:12]}..., "
                            f"got {actual[:12]}...); the file is corrupt or was changed")
    return actual


def verified_path(relpath: str, root: Path = MINIWORLD_DIR) -> Path:
    """The path of a shipped file after checking it against SHA256SUMS."""
    path = Path(root) / relpath
    if not path.is_file():
        raise EraselabError(f"{path}: missing mini-world weight file")
    stat = path.stat()
    _verified(str(Path(root)), relpath, stat.st_mtime_ns, stat.st_size)
    return path


def verified_dir(reldir: str, root: Path = MINIWORLD_DIR) -> Path:
    """Check every listed file under ``reldir`` (e.g. the pipeline folder); returns the folder."""
    sums = read_sums(root)
    listed = [p for p in sums if p == reldir or p.startswith(reldir.rstrip("/") + "/")]
    if not listed:
        raise EraselabError(f"{Path(root) / reldir}: not installed: no files listed in {SUMS_FILE} "
                            f"(the mini-world weights are trained with `eraselab miniworld train`)")
    for relpath in listed:
        verified_path(relpath, root)
    return Path(root) / reldir


def record_checksums(relpaths: list[str], root: Path = MINIWORLD_DIR) -> None:
    """Add or update the sums of ``relpaths`` (relative to ``root``) in SHA256SUMS.

    Entries whose file no longer exists are dropped: SHA256SUMS lists what is shipped, and a
    stage that changes its output format (the detector's best.pt -> model.safetensors) must not
    leave a line for a file that is gone."""
    root = Path(root)
    sums_path = root / SUMS_FILE
    sums = read_sums(root) if sums_path.is_file() else {}
    sums = {rel: digest for rel, digest in sums.items() if (root / rel).is_file()}
    for relpath in relpaths:
        sums[relpath] = sha256_of(root / relpath)
    lines = [f"{digest}  {rel}" for rel, digest in sorted(sums.items())]
    write_text(sums_path, "\n".join(lines) + "\n")
    _verified.cache_clear()
