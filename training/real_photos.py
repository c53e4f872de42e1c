"""Real face photos that ship inside installed packages, laid out as an image folder for `swapstream extract`.

No face data set can be downloaded here, so the demo model's identity A mixes the synthetic identity with the
real faces scikit-image carries: `skimage.data.astronaut()` (one 512x512 portrait, shown moved, scaled, turned
and mirrored) and `skimage.data.lfw_subset()` (faces from Labeled Faces in the Wild, 25x25, upscaled). The
encoder then sees real skin, eyes and lighting, so a webcam face encodes to something decoder B can render.

    python -m training.real_photos --out DIR [--astronaut-views 60]
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from faces.media import write_image
from training.errors import DatasetError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RealPhotosConfig:
    """Where to write and how many moved/scaled views of the astronaut portrait to make."""

    out: Path
    astronaut_views: int = 60
    lfw_size: int = 192
    seed: int = 0

    def __post_init__(self) -> None:
        if self.astronaut_views < 0:
            raise DatasetError(f"--astronaut-views must be >= 0, got {self.astronaut_views}")
        if self.lfw_size < 64:
            raise DatasetError(f"--lfw-size must be >= 64 (mediapipe misses smaller faces), got {self.lfw_size}")


def astronaut_views(count: int, seed: int) -> list[np.ndarray]:
    """The astronaut portrait under random shift, scale, small rotation and mirroring, on a 512x512 canvas."""
    from skimage import data

    photo = data.astronaut()
    rng = np.random.default_rng(seed)
    views = []
    for _ in range(count):
        scale = rng.uniform(0.7, 1.2)
        angle = rng.uniform(-15, 15)
        shift = rng.uniform(-50, 50, size=2)
        matrix = cv2.getRotationMatrix2D((256.0, 200.0), angle, scale)
        matrix[:, 2] += shift
        view = cv2.warpAffine(photo, matrix, (512, 512), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        views.append(view[:, ::-1].copy() if rng.random() < 0.5 else view)
    return views


def lfw_faces(size: int) -> list[np.ndarray]:
    """The LFW subset's face crops (grey) as RGB, upscaled and padded so the detector sees a whole head."""
    from skimage import data

    faces = []
    for grey in data.lfw_subset()[:100]:  # the first 100 are faces, the rest are not
        face = cv2.resize((grey * 255).astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
        padded = cv2.copyMakeBorder(face, size // 2, size // 2, size // 2, size // 2, cv2.BORDER_REPLICATE)
        faces.append(cv2.cvtColor(padded, cv2.COLOR_GRAY2RGB))
    return faces


def write_real_photos(config: RealPhotosConfig) -> int:
    """Write the photos as PNGs into config.out; returns how many."""
    config.out.mkdir(parents=True, exist_ok=True)
    images = astronaut_views(config.astronaut_views, config.seed)
    names = [f"astronaut_{i:03d}.png" for i in range(len(images))]
    lfw = lfw_faces(config.lfw_size)
    images += lfw
    names += [f"lfw_{i:03d}.png" for i in range(len(lfw))]
    for name, image in zip(names, images):
        write_image(config.out / name, image)
    log.info("wrote %d real face photos to %s", len(images), config.out)
    return len(images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.real_photos", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the photos into")
    parser.add_argument("--astronaut-views", type=int, default=60, help="moved/scaled views of the astronaut")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    count = write_real_photos(RealPhotosConfig(out=args.out, astronaut_views=args.astronaut_views, seed=args.seed))
    print(f"{count} photos in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
