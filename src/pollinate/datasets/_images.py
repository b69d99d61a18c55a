"""Images from a folder with one sub-folder per class, as Keras' image_dataset_from_directory.

Pillow decodes the files; it is imported here only, so the rest of pollinate.datasets
works without it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError
from ._dataset import Dataset, split_indices

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


def load_image_folder(
    path: str | os.PathLike[str],
    *,
    color_mode: Literal["rgb", "grayscale"] = "rgb",
    image_size: tuple[int, int] | None = None,
    validation_split: float | None = None,
    seed: int = 0,
    classes: Sequence[str] | None = None,
) -> Dataset:
    """Every image under ``path/<class>/`` as uint8 ``(N, H, W, C)``; C is 3 (rgb) or 1.

    ``image_size`` is ``(height, width)``; without it all images must share one size.
    ``validation_split`` holds out that fraction (seeded) as the test arrays, else they are empty.
    Labels number the class folders in sorted order. ``classes`` fixes that list instead:
    in federated learning a client's folder may lack some classes, and its labels must still
    mean what they mean everywhere else (a missing class folder is then simply empty).
    """
    if color_mode not in ("rgb", "grayscale"):
        raise ConfigError(f"color_mode must be 'rgb' or 'grayscale', got {color_mode!r}")
    root = Path(path).expanduser()
    found = _class_folders(root)
    if classes is None:
        classes = found
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise ConfigError(
                f"{root} has class folders not in classes: {', '.join(unknown)}; add them to "
                "classes, or remove them"
            )
    files = [
        (f, label)
        for label, c in enumerate(classes)
        if (root / c).is_dir()
        for f in _images_in(root / c)
    ]
    if not files:
        raise ConfigError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}/<class>/")
    x = _stack([_read_image(f, color_mode, image_size) for f, _ in files], files)
    y = np.array([label for _, label in files], dtype=np.int64)
    train, test = split_indices(len(y), validation_split or 0.0, seed)
    return Dataset(root.name, x[train], y[train], x[test], y[test], tuple(classes))


def _class_folders(root: Path) -> list[str]:
    """The sorted names of the sub-folders of ``root``: one per class."""
    if not root.is_dir():
        raise ConfigError(f"image folder {root} does not exist or is not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ConfigError(f"{root} has no class sub-folders: put images in {root}/<class>/")
    return classes


def _images_in(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _read_image(
    path: Path, color_mode: str, image_size: tuple[int, int] | None
) -> npt.NDArray[np.uint8]:
    """One image as uint8 ``(H, W, C)``, converted and (bilinear) resized as asked."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise ConfigError("loading an image folder needs Pillow: pip install pillow") from exc
    try:
        with Image.open(path) as image:
            converted = image.convert("L" if color_mode == "grayscale" else "RGB")
    except OSError as exc:
        raise ConfigError(f"{path} is not an image Pillow can read: {exc}") from exc
    if image_size is not None:
        height, width = image_size
        converted = converted.resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(converted, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def _stack(images: list[npt.NDArray[np.uint8]], files: list[tuple[Path, int]]) -> Any:
    """One ``(N, H, W, C)`` array, or an error naming the first image of another size."""
    for image, (path, _) in zip(images, files, strict=True):
        if image.shape != images[0].shape:
            raise ConfigError(
                f"{path} is {image.shape[1]}x{image.shape[0]} but {files[0][0]} is "
                f"{images[0].shape[1]}x{images[0].shape[0]}: pass image_size=(height, width)"
            )
    return np.stack(images)
