"""Files written atomically, locks that die with their process, and temp names with an owner.

    from bench.core.files import write_json, write_png, atomic_write, file_lock
    write_json(path, {"a": 1})           # a temp file beside it, then os.replace: never torn
    with file_lock(folder / "x.lock"):   # flock: released by the kernel however the holder dies
        ...

Every file eraselab writes goes through ``atomic_write`` (directly or through a ``write_*``
helper): a ``kill -9`` at any moment leaves the old file or the new one. Temp names are
``.<name>.tmp-<pid>-<random>``, so ``clean_stale_temps`` removes what dead processes left and
never a live one's. An OSError becomes one line (``os_error``); a full disk is ``OutOfDisk``,
whose message says the finished work is kept. No fsync: the guarantee is against the process
dying, not the machine losing power. No torch here; numpy, pandas and PIL are imported only by
the helpers that need them.
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


def write_npy(path, array) -> Path:
    """An array as .npy, atomically (a crash never leaves half an array that a later load trusts)."""
    import numpy as np

    def write(tmp):
        with open(tmp, "wb") as handle:
            np.save(handle, array)
    return atomic_write(path, write)


def read_jsonl_objects(path) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSON-lines file; a line that is not a
    JSON object is a one-line error naming the file and the line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EraselabError(f"{path}: unreadable ({exc})") from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EraselabError(f"{path}: line {number}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise EraselabError(f"{path}: line {number}: expected a JSON object")
        out.append((number, record))
    return out


def replace_folder(new, target) -> Path:
    """Swap the finished folder ``new`` into place at ``target``: the previous folder is renamed
    aside first and removed only once the new one is there, so ``target`` is never half-written
    (at worst, after a kill -9, briefly missing, with the old copy under an owned temp name)."""
    import shutil

    new, target = Path(new), Path(target)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}{TMP_MARK}{os.getpid()}-old-{uuid.uuid4().hex[:8]}")
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target
