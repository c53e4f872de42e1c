"""The real face photos that ship inside installed packages, written out as evaluation sources.

    python -m evaluation.photos --out DIR [--lfw 10]

No face data set can be downloaded here, so these are the real faces there are:
- `grace_hopper.png`: matplotlib's sample photo of Grace Hopper (matplotlib is a core dependency). Never in
  the demo model's training set: a held-out real face.
- `cameraman.png`: `skimage.data.camera()`, grey, his face ~75 px and turned down to his camera. Never in
  the demo's training set: a second held-out real face (a hard one).
- `astronaut.png`: `skimage.data.astronaut()` as it ships. The demo model trained on 60 moved, scaled, turned
  and mirrored views of this photo (`python -m training.real_photos`, docs/demo-model.md): the same person and
  picture, so NOT held out.
- `lfw/`: every `100 / N`-th of `skimage.data.lfw_subset()`'s 100 faces, upscaled and padded exactly as the demo's
  training set holds them (all 100 were in it): NOT held out, and 25 x 25 px originals.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from evaluation.arrays import Image
from evaluation.errors import EvaluationError
from swapstream.atomic import atomic_path

LFW_FACES = 100  # lfw_subset(): the first 100 images are faces, the rest are not
HELD_OUT = ("grace_hopper.png", "cameraman.png")


def grace_hopper() -> Image:
    """matplotlib's Grace Hopper sample photo, RGB uint8."""
    from matplotlib import cbook

    path = Path(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise EvaluationError(f"matplotlib's sample photo {path} cannot be read")
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def write_photos(out: Path, lfw_count: int) -> list[Path]:
    """Write the photos into `out` (PNG); returns their paths."""
    try:
        from skimage import data
        from training.real_photos import lfw_faces
    except ImportError as exc:
        raise EvaluationError(f"the shipped photos need scikit-image: pip install -e '.[train]' ({exc})") from exc
    if not 0 <= lfw_count <= LFW_FACES:
        raise EvaluationError(f"--lfw must be in 0..{LFW_FACES}, got {lfw_count}")
    # scikit-image's data loaders carry no type information.
    astronaut = data.astronaut()  # type: ignore[no-untyped-call]
    cameraman = cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2RGB)  # type: ignore[no-untyped-call]
    photos: dict[Path, Image] = {out / "grace_hopper.png": grace_hopper(),
                                 out / "cameraman.png": np.asarray(cameraman, dtype=np.uint8),
                                 out / "astronaut.png": np.asarray(astronaut, dtype=np.uint8)}
    if lfw_count:
        step = LFW_FACES // lfw_count
        for index, face in enumerate(lfw_faces(192)):
            if index % step == 0 and index // step < lfw_count:
                photos[out / "lfw" / f"lfw_{index:03d}.png"] = face
    for path, image in photos.items():
        with atomic_path(path) as tmp:
            if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
                raise EvaluationError(f"cannot write {path}")
    return list(photos)


def main(argv: list[str] | None = None) -> int:
    """Write the photos and say which are held out."""
    parser = argparse.ArgumentParser(prog="python -m evaluation.photos", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the photos into")
    parser.add_argument("--lfw", type=int, default=10, help="how many LFW faces (default 10; 0: none)")
    args = parser.parse_args(argv)
    paths = write_photos(args.out, args.lfw)
    held_out = [p for p in paths if p.name in HELD_OUT]
    print(f"wrote {len(paths)} photos to {args.out}; held out from the demo's training: "
          f"{', '.join(p.name for p in held_out)}; the rest were in it (see the module docstring)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
