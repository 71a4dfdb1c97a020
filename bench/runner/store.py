"""The run folder: its layout, its locks' names, creating it (its files are written atomically by
bench/core/files.py).

Layout of ``runs/<suite>/`` (every file is written to a temp name and ``os.replace``d, so a
``kill -9`` at any moment leaves either the old state or the new file, never a torn one)::

    edits/<edit_id>/            delta.safetensors + edit.json (methods.delta.save_edit)
    attacks/<job_id>/           found.json (+ vectors.safetensors): what an attack found (attacks/base.py)
    images/<edit_id>/<id>.png   one PNG per image
    parts/images/<key>.parquet  image-level scores of one batch (key: batch + scorer spec)
    parts/pairs/<key>.parquet   same-seed CLIP image similarity of one edit's images vs twins
    parts/kid/<key>.parquet     KID of one (model, method, variant, concept, prompt set)
    results.parquet             the per-image rows (compacted from the parts)
    aggregates.parquet/.csv     bootstrap aggregates (derived from results + KID parts)
    manifest.json               suite, versions, git commit, hardware, timings, edit costs
    logs/<time>-shard<i>of<n>.log
    .locks/shard-<i>of<n>.lock  held (flock) by the process doing that shard
    .locks/edit-<edit_id>.lock  held while one edit is erased and saved

Temp files and folders are named ``.<name>.tmp-<pid>-<random>``: ``clean_stale_temps`` removes
those whose owner process is gone (a kill -9 leaves them behind), and never a live one's.

Locks are ``fcntl.flock`` on files under ``.locks/``: the kernel drops a lock when its process
dies, however it dies, so a kill -9 leaves no stale lock to clear by hand (the lock files stay;
an unlocked file means nobody holds it). A second process on the same shard of the same folder
is refused with one line naming the holder's pid; shards of one run lock separately and run in
parallel, and one edit is erased by one process at a time (another shard needing it waits, then
loads it). flock is per host: shards on several machines sharing a network folder are not
serialised by it.

No fsync: the guarantee is against the process dying (kill -9, OOM, Ctrl-C), not the machine
losing power; a rename is atomic for the former and fsync would cost a syscall per image.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.core.errors import EraselabError
from bench.core.files import os_error

LOCK_DIR = ".locks"


def make_run_dir(root) -> bool:
    """Create the run folder (and parents); True when this call created it. One-line errors for
    a path that is a file, lies below a file, or cannot be created or written."""
    root = Path(root)
    existed = root.is_dir()
    if root.exists() and not existed:
        raise EraselabError(f"{root}: exists and is not a folder; choose another --out")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise EraselabError(f"{root}: a part of this path is a file, not a folder; choose another "
                            f"--out") from None
    except NotADirectoryError:
        raise EraselabError(f"{root}: a part of this path is a file, not a folder; choose another "
                            f"--out") from None
    except OSError as exc:
        raise os_error(root, exc, "cannot create the run folder") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise EraselabError(f"{root}: the run folder is not writable")
    return not existed


class RunStore:
    """Paths of one run folder."""

    def __init__(self, root):
        self.root = Path(root)

    def shard_lock(self, shard: tuple[int, int]) -> Path:
        return self.root / LOCK_DIR / f"shard-{shard[0]}of{shard[1]}.lock"

    def edit_lock(self, edit_id: str) -> Path:
        return self.root / LOCK_DIR / f"edit-{edit_id}.lock"

    def edit_dir(self, edit_id: str) -> Path:
        return self.root / "edits" / edit_id

    def has_edit(self, edit_id: str) -> bool:
        d = self.edit_dir(edit_id)
        return (d / "edit.json").is_file() and (d / "delta.safetensors").is_file()

    def attack_dir(self, job_id: str) -> Path:
        return self.root / "attacks" / job_id

    def attack_lock(self, job_id: str) -> Path:
        return self.root / LOCK_DIR / f"attack-{job_id}.lock"

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
