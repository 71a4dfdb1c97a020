"""Reading images from disk: one reader, whatever the caller, with one-line errors.

    from bench.core.images import read_image
    image = read_image("out/snoopy/00000.png")        # RGB PIL image, fully decoded

A missing file, an unreadable or unknown format, a truncated file and a decompression bomb (more
pixels than PIL's limit, including the range where PIL only warns) each raise one
``EraselabError`` naming the file. The image is decoded at once, so a broken file fails here and
not later inside a batch.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from bench.core.errors import EraselabError, shorten

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")  # what counts as an image file


def read_image(path):
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise EraselabError(f"{path}: image file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as handle:
                handle.load()
                return handle.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise EraselabError(f"{path}: image has more than {Image.MAX_IMAGE_PIXELS:,} pixels "
                            f"(a decompression bomb?); refused") from None
    except (UnidentifiedImageError, ImportError):
        # ImportError: a patched Image.open (ultralytics) asks for a plugin for an unknown format
        raise EraselabError(f"{path}: not a readable image (unknown image format)") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "unreadable"
        reason = shorten(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
        raise EraselabError(f"{path}: not a readable image ({type(exc).__name__}: {reason})") from None
