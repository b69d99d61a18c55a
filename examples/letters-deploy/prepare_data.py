"""Write the image folders this example trains on, from scikit-learn's bundled 8x8 digits.

Nothing is downloaded. A quarter of the 1,797 digits goes to ``data/test/`` (the server's
centralized evaluation); the rest is dealt to three clients so that each one never sees
three of the ten classes::

    data/client-0/<class>/*.png    never sees 1, 3, 7
    data/client-1/<class>/*.png    never sees 2, 5, 8
    data/client-2/<class>/*.png    never sees 4, 6, 9
    data/test/<class>/*.png        all ten classes

The same seed writes the same files, byte for byte.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from pollinate.datasets import load_digits
from pollinate.datasets.partition import label_exclusion

EXCLUDED: tuple[tuple[int, ...], ...] = ((1, 3, 7), (2, 5, 8), (4, 6, 9))
"""The classes client ``p`` never sees: ``EXCLUDED[p]``."""
TEST_FRACTION = 0.25


def write_folder(
    folder: Path, images: npt.NDArray[np.uint8], labels: npt.NDArray[np.int64]
) -> None:
    """Write each image as ``folder/<label>/<n>.png`` (8x8 grayscale, 0-16 scaled to 0-255)."""
    if folder.exists():
        shutil.rmtree(folder)  # only the folders this script writes: a rerun starts afresh
    pixels = np.rint(images.astype(np.float64) * 255 / 16).astype(np.uint8)
    for n, (image, label) in enumerate(zip(pixels, labels, strict=True)):
        class_dir = folder / str(label)
        class_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(class_dir / f"{n:04d}.png")


def main() -> None:
    """Split the digits, write the four folders and print how many images of each class."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data"), help="default: data")
    parser.add_argument("--seed", type=int, default=0, help="seeds both splits (default: 0)")
    args = parser.parse_args()

    digits = load_digits(test_fraction=TEST_FRACTION, seed=args.seed)
    parts = label_exclusion(digits.y_train, EXCLUDED, seed=args.seed)
    folders = {f"client-{p}": (digits.x_train[i], digits.y_train[i]) for p, i in enumerate(parts)}
    folders["test"] = (digits.x_test, digits.y_test)

    print(f"{'folder':<10} {'images':>6}   per class 0..9")
    for name, (images, labels) in folders.items():
        write_folder(args.out / name, images, labels)
        counts = " ".join(f"{c:3d}" for c in np.bincount(labels, minlength=10))
        print(f"{name:<10} {len(labels):>6}   {counts}")
    print(f"wrote {sum(len(y) for _, y in folders.values())} PNG files under {args.out}/")


if __name__ == "__main__":
    main()
