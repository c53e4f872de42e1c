"""New head poses and expressions from a single photo, for a target (B) that has only a few photos and no video.

Decoder B must learn B's face at the poses and expressions A will show on camera; a handful of photos shows
one pose each. Each photo's face mesh (mediapipe, 468 points with depth) is turned in 3D about the head
centre to another yaw / pitch, the mouth is opened and the eyes closed by moving lip and lid points, and the
photo is warped to follow the moved mesh triangle by triangle (piecewise affine over a Delaunay triangulation
of the mesh plus a fixed ring around the head, drawn back to front so the near side of the face covers the far
side). What the photo never showed (the far cheek, the inside of the mouth) cannot be recovered, so the result
is a rougher B than video gives: the Studio says quality is limited when a job relies on it.

    python -m training.photo_poses PHOTO... --out DIR [--per-photo 24] [--seed 0]

writes each photo (as PNG) and its variants `<stem>_v<k>.png` into DIR, plus DIR/poses.jsonl describing each
variant, ready for `swapstream extract DIR`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from faces.detect import EYE_IMAGE_LEFT, EYE_IMAGE_RIGHT
from faces.errors import InputError
from faces.media import IMAGE_SUFFIXES, list_images, read_image
from faces.types import MESH_POINTS
from swapstream.atomic import atomic_path
from training.errors import DatasetError

log = logging.getLogger(__name__)

POSES_NAME = "poses.jsonl"
MAX_SIDE = 1024
"""Photos are shrunk to at most this many pixels a side first: training crops are 64-256 px anyway."""
MESH_CROP_SIZE = 384
MESH_CROP_CONTEXT = 2.0
RING_SCALE = 1.7
"""The fixed ring of warp points sits this far out from the face centre, in face half-extents."""
RING_POINTS = 24

# Mesh indices (mediapipe face mesh) of the lips' inner edge and the lower face that moves when the jaw opens.
UPPER_INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
MOUTH_CORNERS = (61, 291)
CHIN = 152
# Upper and lower lid points of each eye contour (faces.detect's 16-point contours split at the eye corners).
UPPER_LIDS = ((246, 161, 160, 159, 158, 157, 173), (466, 388, 387, 386, 385, 384, 398))
LOWER_LIDS = ((7, 163, 144, 145, 153, 154, 155), (249, 390, 373, 374, 380, 381, 382))


@dataclass(frozen=True)
class PoseChange:
    """One variant: head turn (degrees; yaw + turns the face to the image's right, pitch + looks down), mouth
    opening (fraction of the mouth-to-chin distance) and eye closing (0 open as photographed, 1 shut)."""

    yaw: float = 0.0
    pitch: float = 0.0
    mouth_open: float = 0.0
    eyes_closed: float = 0.0


@dataclass(frozen=True)
class PhotoPosesConfig:
    """Settings of `python -m training.photo_poses`."""

    sources: tuple[Path, ...]
    out: Path
    per_photo: int = 24
    max_yaw: float = 25.0
    max_pitch: float = 20.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.sources:
            raise DatasetError("give at least one PHOTO (an image file or a folder of images)")
        if not 0 <= self.per_photo <= 500:
            raise DatasetError(f"--per-photo must be in 0..500, got {self.per_photo}")
        if not 0 <= self.max_yaw <= 45 or not 0 <= self.max_pitch <= 45:
            raise DatasetError(f"--max-yaw and --max-pitch must be in 0..45 degrees, got {self.max_yaw}, {self.max_pitch}")


def random_changes(count: int, rng: np.random.Generator, max_yaw: float = 25.0,
                   max_pitch: float = 20.0) -> list[PoseChange]:
    """`count` varied changes: turns spread over +-max_yaw / +-max_pitch, the mouth open in half of them, the
    eyes closing in one in five (a blink) - the spread a webcam user shows."""
    changes = []
    for index in range(count):
        # stratified yaw so even a few variants cover both sides
        yaw = ((index + rng.uniform()) / max(count, 1) * 2 - 1) * max_yaw
        changes.append(PoseChange(
            yaw=round(float(yaw), 2),
            pitch=round(float(rng.uniform(-max_pitch, max_pitch)), 2),
            mouth_open=round(float(rng.uniform(0.1, 0.45)) if rng.uniform() < 0.5 else 0.0, 3),
            eyes_closed=round(float(rng.uniform(0.5, 1.0)) if rng.uniform() < 0.2 else 0.0, 3),
        ))
    return changes


class MeshFinder:
    """The 468-point face mesh with depth (pixels; z grows away from the camera) of the largest face in a photo.

    The full-range detector finds the face; the mesh runs on an upscaled crop around it, so small faces in large
    photos get a mesh too.
    """

    def __init__(self) -> None:
        from mediapipe.python.solutions import face_mesh

        from faces.detect import FaceDetector

        self._detector = FaceDetector(max_faces=1, static_images=True, mesh=False)
        self._mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, min_detection_confidence=0.3)

    def find(self, image: np.ndarray) -> np.ndarray | None:
        """(468,3) float64 x, y, z in image pixels, or None when there is no face."""
        faces = self._detector.detect(image)
        if not faces:
            return None
        box = faces[0].box
        centre = (box[:2] + box[2:]) / 2
        half = MESH_CROP_CONTEXT * max(float(box[2] - box[0]), float(box[3] - box[1]), 4.0) / 2
        scale = MESH_CROP_SIZE / (2 * half)
        origin = centre - half
        to_crop = np.array([[scale, 0.0, -origin[0] * scale], [0.0, scale, -origin[1] * scale]])
        crop = cv2.warpAffine(image, to_crop, (MESH_CROP_SIZE, MESH_CROP_SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        result = self._mesh.process(crop)
        if not result.multi_face_landmarks:
            return None
        # mediapipe gives x, y in [0,1] of the crop and z on about the same scale as x
        points = np.array([[p.x, p.y, p.z] for p in result.multi_face_landmarks[0].landmark[:MESH_POINTS]])
        points *= MESH_CROP_SIZE
        points[:, :2] = points[:, :2] / scale + origin
        points[:, 2] /= scale
        return points

    def close(self) -> None:
        """Release the mediapipe graphs."""
        self._detector.close()
        self._mesh.close()

    def __enter__(self) -> MeshFinder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rotation(yaw: float, pitch: float) -> np.ndarray:
    """The 3x3 rotation turning a head by `yaw` then `pitch` degrees in image axes (x right, y down, z away)."""
    y, p = math.radians(yaw), math.radians(pitch)
    # yaw about the image's y axis: the nose (z < 0) moves to +x for yaw > 0
    turn = np.array([[math.cos(y), 0.0, -math.sin(y)], [0.0, 1.0, 0.0], [math.sin(y), 0.0, math.cos(y)]])
    # pitch about the x axis: the nose moves to +y (down) for pitch > 0
    nod = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(p), -math.sin(p)], [0.0, math.sin(p), math.cos(p)]])
    return nod @ turn


def moved_mesh(mesh: np.ndarray, change: PoseChange) -> np.ndarray:
    """The mesh (468,3) after the expression change, then the turn about the head centre."""
    points = mesh.astype(np.float64).copy()
    if change.eyes_closed > 0:
        for upper, lower in zip(UPPER_LIDS, LOWER_LIDS, strict=True):
            points[list(upper), 1] += change.eyes_closed * (points[list(lower), 1] - points[list(upper), 1])
    if change.mouth_open > 0:
        mouth_y = points[list(MOUTH_CORNERS), 1].mean()
        drop = change.mouth_open * (points[CHIN, 1] - mouth_y)
        centre_x = points[list(MOUTH_CORNERS), 0].mean()
        half_width = max(float(np.ptp(points[:, 0])) / 2, 1.0)
        below = np.clip((points[:, 1] - mouth_y) / max(drop, 1e-6) + 0.5, 0.0, 1.0)
        # the jaw hinges near the ears: points near the middle drop fully, the jaw's corners hardly at all
        across = np.clip(1.0 - (np.abs(points[:, 0] - centre_x) / half_width) ** 2, 0.0, 1.0)
        weight = below * across
        weight[list(UPPER_INNER_LIP)] = 0.0
        weight[list(LOWER_INNER_LIP[1:-1])] = 1.0
        points[:, 1] += drop * weight
    # the head turns about a point behind the face: mediapipe's z origin is about the head's centre
    pivot = np.array([points[:, 0].mean(), points[:, 1].mean(), 0.0])
    return (points - pivot) @ rotation(change.yaw, change.pitch).T + pivot


def _ring(mesh: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Fixed warp points on an ellipse around the head (kept inside the image), so the background stays put."""
    centre = (mesh[:, :2].min(axis=0) + mesh[:, :2].max(axis=0)) / 2
    radii = (mesh[:, :2].max(axis=0) - mesh[:, :2].min(axis=0)) / 2 * RING_SCALE
    angles = np.linspace(0, 2 * np.pi, RING_POINTS, endpoint=False)
    ring = centre + radii * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    height, width = shape
    return np.clip(ring, 0, [width - 1, height - 1])


def _triangles(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Delaunay triangles (K,3) of point indices."""
    height, width = shape
    subdiv = cv2.Subdiv2D((-1, -1, width + 2, height + 2))
    lookup = {}
    for index, (x, y) in enumerate(points):
        key = (round(float(x), 3), round(float(y), 3))
        if key not in lookup:
            lookup[key] = index
            subdiv.insert((float(x), float(y)))
    triangles = []
    for tri in subdiv.getTriangleList().reshape(-1, 3, 2):
        ids = [lookup.get((round(float(x), 3), round(float(y), 3))) for x, y in tri]
        if all(i is not None for i in ids):
            triangles.append(ids)
    return np.asarray(triangles, dtype=np.int64).reshape(-1, 3)


def _warp_triangle(source: np.ndarray, target: np.ndarray, src_tri: np.ndarray, dst_tri: np.ndarray) -> None:
    """Copy `source`'s triangle `src_tri` onto `target`'s triangle `dst_tri` (an affine map), in place."""
    height, width = target.shape[:2]
    x0, y0 = np.floor(dst_tri.min(axis=0)).astype(int)
    x1, y1 = np.ceil(dst_tri.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return
    area = abs(np.cross(dst_tri[1] - dst_tri[0], dst_tri[2] - dst_tri[0]))
    if area < 1e-3:
        return
    local = (dst_tri - [x0, y0]).astype(np.float32)
    matrix = cv2.getAffineTransform(src_tri.astype(np.float32), local)
    patch = cv2.warpAffine(source, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT101)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillConvexPoly(mask, np.round(local * 16).astype(np.int32), 1, cv2.LINE_8, 4)
    region = target[y0:y1, x0:x1]
    region[mask.astype(bool)] = patch[mask.astype(bool)]


def _paint_mouth(image: np.ndarray, moved: np.ndarray, change: PoseChange) -> None:
    """Darken the opened mouth: the photo never showed its inside, and stretched lips look worse than a shadow."""
    if change.mouth_open <= 0:
        return
    outline = np.concatenate([moved[list(UPPER_INNER_LIP), :2], moved[list(LOWER_INNER_LIP[::-1]), :2]])
    mask = np.zeros(image.shape[:2], np.float32)
    cv2.fillPoly(mask, [np.round(outline * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    gap = float(np.ptp(moved[list(LOWER_INNER_LIP), 1]))
    mask = cv2.GaussianBlur(mask, (0, 0), max(gap / 12, 0.6))[..., None]
    inside = np.array([62, 26, 28], np.float32)
    image[:] = np.clip(image * (1 - 0.85 * mask) + inside * 0.85 * mask, 0, 255).astype(np.uint8)


def warp_photo(image: np.ndarray, mesh: np.ndarray, change: PoseChange) -> np.ndarray:
    """`image` (RGB uint8) with its face (mesh (468,3) px) moved by `change`; the background stays in place."""
    moved = moved_mesh(mesh, change)
    ring = _ring(mesh, image.shape[:2])
    source_points = np.concatenate([mesh[:, :2], ring])
    target_points = np.concatenate([moved[:, :2], ring])
    depth = np.concatenate([moved[:, 2], np.full(len(ring), moved[:, 2].max() + 1.0)])
    triangles = _triangles(source_points, image.shape[:2])
    result = image.copy()
    # back to front: the far cheek first, so the near side of a turned face covers it
    for tri in triangles[np.argsort(-depth[triangles].mean(axis=1))]:
        _warp_triangle(image, result, source_points[tri], target_points[tri])
    _paint_mouth(result, moved, change)
    return result


def _limit_size(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    scale = MAX_SIDE / max(height, width)
    if scale >= 1:
        return image
    return cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)


def _photos(sources: Sequence[Path]) -> list[Path]:
    photos: list[Path] = []
    for source in sources:
        photos.extend(list_images(source) if source.is_dir() else [source])
    return photos


def _write_png(path: Path, image: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise DatasetError(f"cannot write {path}")


def _stem(path: Path, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem).strip("._") or "photo"
    stem, n = base, 2
    while stem in taken:
        stem, n = f"{base}-{n}", n + 1
    taken.add(stem)
    return stem


@dataclass(frozen=True)
class PhotoPosesSummary:
    """What a run wrote: photos read, photos with a face, images written (originals + variants)."""

    photos: int
    with_face: int
    written: int


def write_photo_poses(config: PhotoPosesConfig) -> PhotoPosesSummary:
    """Write every photo and `per_photo` warped variants of it into config.out (photos without a face: only
    the photo, so extraction reports it). Files already there are kept: a rerun continues."""
    photos = _photos(config.sources)
    config.out.mkdir(parents=True, exist_ok=True)
    records: list[str] = []
    written = with_face = 0
    taken: set[str] = set()
    with MeshFinder() as finder:
        for index, photo in enumerate(photos):
            try:
                image = _limit_size(read_image(photo))
            except InputError as exc:
                raise DatasetError(str(exc)) from exc
            stem = _stem(photo, taken)
            _write_png(config.out / f"{stem}.png", image)
            written += 1
            mesh = finder.find(image)
            if mesh is None:
                log.warning("no face in %s: no pose variants made from it", photo)
                continue
            with_face += 1
            rng = np.random.default_rng([config.seed, index])
            for number, change in enumerate(random_changes(config.per_photo, rng, config.max_yaw, config.max_pitch)):
                name = f"{stem}_v{number:03d}.png"
                if not (config.out / name).exists():
                    _write_png(config.out / name, warp_photo(image, mesh, change))
                written += 1
                records.append(json.dumps({"file": name, "photo": str(photo), **asdict(change)}))
    with atomic_path(config.out / POSES_NAME) as tmp:
        tmp.write_text("".join(line + "\n" for line in records), encoding="utf-8")
    log.info("photo poses: %d photo(s), %d with a face, %d images in %s", len(photos), with_face, written, config.out)
    return PhotoPosesSummary(photos=len(photos), with_face=with_face, written=written)


def build_parser() -> argparse.ArgumentParser:
    """The flags of `python -m training.photo_poses`."""
    parser = argparse.ArgumentParser(prog="python -m training.photo_poses",
                                     description="Warp face photos to other head poses and expressions.")
    parser.add_argument("sources", nargs="+", type=Path, metavar="PHOTO",
                        help=f"image files ({', '.join(sorted(IMAGE_SUFFIXES))}) or folders of them")
    parser.add_argument("--out", required=True, type=Path, help="folder to write the photos and variants into")
    parser.add_argument("--per-photo", type=int, default=24, help="variants per photo (default 24)")
    parser.add_argument("--max-yaw", type=float, default=25.0, help="largest head turn, degrees (default 25)")
    parser.add_argument("--max-pitch", type=float, default=20.0, help="largest nod, degrees (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; errors propagate as DatasetError."""
    args = build_parser().parse_args(argv)
    config = PhotoPosesConfig(sources=tuple(args.sources), out=args.out, per_photo=args.per_photo,
                              max_yaw=args.max_yaw, max_pitch=args.max_pitch, seed=args.seed)
    summary = write_photo_poses(config)
    print(f"photo poses: {summary.photos} photo(s), {summary.with_face} with a face, "
          f"{summary.written} images in {config.out}")
    return 0


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        sys.exit(main())
    except DatasetError as exc:
        print(f"python -m training.photo_poses: error: {exc}", file=sys.stderr)
        sys.exit(1)
