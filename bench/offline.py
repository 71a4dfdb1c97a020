"""Offline set-up for ultralytics (and the shared eraselab cache folder).

ultralytics, on import, writes a settings file under the home directory with sync and tracker
integrations switched on, may pip-install missing packages, and downloads ``Arial.ttf`` for its
plots even in offline mode. Call ``setup_ultralytics_offline()`` BEFORE the first
``import ultralytics`` (the detector scorer and the detector training code both do)::

    from bench.offline import setup_ultralytics_offline
    setup_ultralytics_offline()
    from ultralytics import YOLO

It is idempotent and cheap; it never touches the network. It also switches on ultralytics'
restricted loading (``ULTRALYTICS_SAFE_LOAD``): a ``.pt`` checkpoint is then read with
``torch.load(weights_only=True)`` against an allow-list of ultralytics/torch classes, and a model
yaml's ``activation`` is parsed, not ``eval``-ed, so a hostile weights file runs no code.
"""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from bench.core.files import atomic_write

# Every integration ultralytics knows how to phone home with, switched off.
_SETTINGS_OFF = {"sync": False, "hub": False, "mlflow": False, "comet": False, "clearml": False,
                 "dvc": False, "raytune": False, "tensorboard": False, "wandb": False,
                 "neptune": False}


def cache_dir() -> Path:
    """eraselab's cache folder: ``$ERASELAB_CACHE`` or ``~/.cache/eraselab``."""
    root = os.environ.get("ERASELAB_CACHE") or Path.home() / ".cache" / "eraselab"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def setup_ultralytics_offline() -> Path:
    """Make ultralytics work with no network; returns its config folder.

    Sets YOLO_OFFLINE=1, YOLO_AUTOINSTALL=0 and YOLO_CONFIG_DIR (a folder under the eraselab
    cache, unless the user already chose one), places matplotlib's DejaVuSans.ttf as
    ``Ultralytics/Arial.ttf`` there (the font check is not gated by offline mode), and, once
    ultralytics is importable, turns off settings sync and every integration.
    """
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"  # read at import; enforce_safe_load() covers a late call
    # `import ultralytics` sets OMP_NUM_THREADS=1 when it is unset, and a torch whose thread pool
    # starts after that runs on ONE core (measured: generation in `miniworld eval` at 100% CPU
    # on a 2-core machine). Start torch's pool first and pin the variable to what it chose.
    import torch
    os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
    config_dir = Path(os.environ.setdefault("YOLO_CONFIG_DIR", str(cache_dir() / "ultralytics")))
    font_dir = config_dir / "Ultralytics"
    font_dir.mkdir(parents=True, exist_ok=True)
    arial = font_dir / "Arial.ttf"
    if not arial.is_file():
        import matplotlib
        dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        # atomic: parallel workers never see a half-written font
        atomic_write(arial, lambda tmp: shutil.copyfile(dejavu, tmp))
    if "ultralytics" in sys.modules and not _env_applied():
        # Imported before us: the environment variables came too late for its module-level checks.
        import warnings
        warnings.warn("ultralytics was imported before setup_ultralytics_offline(); "
                      "its settings may point outside the eraselab cache", stacklevel=2)
    from ultralytics.utils import SETTINGS  # safe now: the variables above are set
    off = {k: v for k, v in _SETTINGS_OFF.items() if k in SETTINGS and SETTINGS[k] != v}
    if off:
        SETTINGS.update(off)
    enforce_safe_load()
    _restore_pil_open()
    return config_dir


def _restore_pil_open() -> None:
    """Undo ultralytics' process-wide patch of ``PIL.Image.open``.

    Importing ultralytics replaces ``Image.open`` with a wrapper that, on a file PIL cannot
    identify, tries to install and register a HEIF plugin; offline that raises
    ModuleNotFoundError instead of ``UnidentifiedImageError``, which turned every eraselab "not an
    image" check in the same process (reports, few-shot folders) into a traceback. The patch is
    applied once, when ``ultralytics.utils.patches`` is first imported, so importing it here and
    restoring PIL's own function lasts for the process."""
    from PIL import Image
    import ultralytics.utils.patches as patches
    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is getattr(patches, "image_open", None):
        Image.open = original


def enforce_safe_load() -> None:
    """Turn on ultralytics' restricted loading in this process, even if it was imported first.

    ultralytics reads ``ULTRALYTICS_SAFE_LOAD`` once, into module constants that its loader
    (``torch_safe_load``) and model builder (``_SafeLoad.restricted``) consult on every call."""
    import ultralytics.nn.tasks as tasks
    import ultralytics.utils as uutils
    if not getattr(tasks._SafeLoad, "SUPPORTED", False):
        # torch < 2.6: ultralytics would silently fall back to a full unpickle
        from bench.core.errors import EraselabError
        raise EraselabError("ultralytics' restricted loading needs torch >= 2.6; YOLO weights are not "
                            "loaded without it")
    uutils.SAFE_LOAD = True
    tasks.SAFE_LOAD = True


def _env_applied() -> bool:
    try:
        from ultralytics.utils import SETTINGS
    except Exception:  # noqa: BLE001 - an odd install; the warning is advisory only
        return False
    return Path(os.environ["YOLO_CONFIG_DIR"]).resolve() in Path(SETTINGS.file).resolve().parents


@contextmanager
def keep_torch_threads():
    """Restore torch's thread count after ultralytics code: its ``select_device("cpu")`` (every
    ``predict`` / ``val`` call) sets ``torch.set_num_threads(cpu_count - 1)``, which left the
    rest of a 2-core run, generation included, on ONE thread (measured: mini-default's user time
    equal to its wall time)."""
    import torch
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
