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

import errno
import json
import os
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from bench.core.errors import EraselabError

TMP_MARK = ".tmp-"
LOCK_DIR = ".locks"
# A temp name without an owner pid (written by an older eraselab) is removed once this old.
OWNERLESS_TEMP_SECONDS = 3600


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
        raise os_error(path, exc, "cannot write") from None
    except BaseException:
        _unlink(tmp)
        raise
    return path


def os_error(path, exc: OSError, doing: str) -> EraselabError:
    """The one-line error for an OSError on ``path``: out of disk space (OutOfDisk: a rerun
    resumes) or the system's reason (permission, read-only file system, ...)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutOfDisk(f"{path}: out of disk space; the finished work is kept: free space and "
                         f"run again to resume")
    return EraselabError(f"{path}: {doing} ({exc.strerror or type(exc).__name__})")


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


class RunLocked(EraselabError):
    """Another live process holds this lock."""


@contextmanager
def file_lock(path, wait: bool = False, what: str = "this run folder"):
    """Hold an exclusive flock on ``path`` (created if needed); the holder's pid is written in it.

    ``wait=False``: a held lock raises RunLocked at once, naming the holder. ``wait=True``: block
    until it is free."""
    import fcntl

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise os_error(path, exc, "cannot create a lock file") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise RunLocked(f"{path.parent.parent}: another eraselab process (pid {holder}) is "
                            f"working on {what}; wait for it to finish, or use another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing drops the flock (the file stays: deleting it would race)


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
    now = time.time()
    for p in root.rglob(f".*{TMP_MARK}*"):
        owner = p.name.split(TMP_MARK, 1)[1].split("-", 1)
        if len(owner) == 2 and owner[0].isdigit():
            stale = not _alive(int(owner[0]))
        else:  # no owner recorded: old enough that no live process can still be writing it
            try:
                stale = now - p.lstat().st_mtime > OWNERLESS_TEMP_SECONDS
            except OSError:
                continue
        if stale:
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


def tmp_prefix(name: str) -> str:
    """The prefix of a temp file or folder for ``name`` (``tempfile.mkdtemp(prefix=...)``): it
    carries this process's pid, so clean_stale_temps can tell when its owner is gone."""
    return f".{name}{TMP_MARK}{os.getpid()}-"


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
