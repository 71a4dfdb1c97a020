"""The run folder and its atomic writes.

Layout of ``runs/<suite>/`` (every file is written to a temp name and ``os.replace``d, so a
``kill -9`` at any moment leaves either the old state or the new file, never a torn one)::

    edits/<edit_id>/            delta.safetensors + edit.json (methods.base.save_edit)
    images/<edit_id>/<id>.png   one PNG per image
    parts/images/<key>.parquet  image-level scores of one batch (key: batch + scorer spec)
    parts/pairs/<key>.parquet   same-seed CLIP image similarity of one edit's images vs twins
    parts/kid/<key>.parquet     KID of one (model, method, variant, concept, prompt set)
    results.parquet             the per-image rows (compacted from the parts)
    aggregates.parquet/.csv     bootstrap aggregates (derived from results + KID parts)
    manifest.json               suite, versions, git commit, hardware, timings, edit costs
    logs/<time>-shard<i>of<n>.log

No fsync: the guarantee is against the process dying (kill -9, OOM, Ctrl-C), not the machine
losing power; a rename is atomic for the former and fsync would cost a syscall per image.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from pathlib import Path

from bench.core.errors import EraselabError

TMP_MARK = ".tmp-"


class OutOfDisk(EraselabError):
    """The disk filled up; finished work is kept and a rerun resumes."""


def _tmp_path(path: Path) -> Path:
    # pid in the name: a later run can tell a dead process's leftovers from a live shard's file
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def atomic_write(path, write) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``; ENOSPC becomes a one-line error."""
    path = Path(path)
    tmp = _tmp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        _unlink(tmp)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutOfDisk(f"{path}: out of disk space; the finished work is kept: free space and "
                            f"run again to resume") from None
        raise
    except BaseException:
        _unlink(tmp)
        raise
    return path


def _unlink(p: Path) -> None:
    try:
        p.unlink()
    except OSError:
        pass


def write_text(path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path, data) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_png(path, image) -> Path:
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def write_parquet(path, frame) -> Path:
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def write_csv(path, frame) -> Path:
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def clean_stale_temps(root) -> int:
    """Remove temp files left by dead processes (a live shard's temp files are kept)."""
    removed = 0
    root = Path(root)
    if not root.is_dir():
        return 0
    for p in root.rglob(f".*{TMP_MARK}*"):
        pid = p.name.split(TMP_MARK, 1)[1].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            if p.is_dir():
                import shutil
                shutil.rmtree(p, ignore_errors=True)
            else:
                _unlink(p)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunStore:
    """Paths of one run folder."""

    def __init__(self, root):
        self.root = Path(root)

    def edit_dir(self, edit_id: str) -> Path:
        return self.root / "edits" / edit_id

    def has_edit(self, edit_id: str) -> bool:
        d = self.edit_dir(edit_id)
        return (d / "edit.json").is_file() and (d / "delta.safetensors").is_file()

    def image_path(self, rel: str) -> Path:
        return self.root / rel

    def part(self, kind: str, key: str) -> Path:
        return self.root / "parts" / kind / f"{key}.parquet"

    def parts(self, kind: str) -> list[Path]:
        folder = self.root / "parts" / kind
        return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith(".")) \
            if folder.is_dir() else []

    @property
    def results(self) -> Path:
        return self.root / "results.parquet"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    def log_path(self, shard: tuple[int, int]) -> Path:
        import time
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return self.root / "logs" / f"{stamp}-{os.getpid()}-shard{shard[0]}of{shard[1]}.log"
