"""Landmark smoothing across frames: a vectorised One Euro filter and a per-track smoother for faces.

A still face should not jitter, a moving face should not lag: the One Euro filter is a low-pass whose cutoff
rises with the measured speed (Casiez et al., CHI 2012).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Literal

import numpy as np
import numpy.typing as npt

from faces.errors import FaceError
from faces.types import Face, Float64Array

SpeedMode = Literal["value", "point", "rigid"]


def _alpha(cutoff: Float64Array | float, dt: float) -> Float64Array:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    alpha: Float64Array = 1.0 / (1.0 + tau / dt)
    return alpha


def rigid_speed(points: Float64Array, velocity: Float64Array) -> Float64Array:
    """Per-point speed of the best-fitting similarity motion (shift, turn, zoom) of (N,2) points.

    Fitting 4 motion parameters to all points averages landmark noise away, so a still face reads as still
    while a moving, turning or approaching face reads at its true speed.
    """
    centred = points - points.mean(axis=0)
    mean_v = velocity.mean(axis=0)
    rel_v = velocity - mean_v
    norm = float((centred**2).sum())
    if norm < 1e-12:
        return np.full(points.shape[0], float(np.hypot(*mean_v)))
    # rel_v ~ [[a,-b],[b,a]] @ centred: least squares for a (zoom rate) and b (turn rate).
    a = float((rel_v * centred).sum()) / norm
    b = float((rel_v[:, 1] * centred[:, 0] - rel_v[:, 0] * centred[:, 1]).sum()) / norm
    fitted = mean_v + np.stack([a * centred[:, 0] - b * centred[:, 1], b * centred[:, 0] + a * centred[:, 1]], axis=1)
    speed: Float64Array = np.hypot(fitted[:, 0], fitted[:, 1])
    return speed


class OneEuroFilter:
    """One Euro filter over a whole array at once (every element filtered independently).

    min_cutoff (Hz): cutoff when still; lower = less jitter. beta (1/unit): how fast the cutoff rises with speed
    (units/s); higher = less lag. speed: "value" measures each element's own speed; "point" the speed of each
    (x,y) row; "rigid" the similarity-motion speed of (N,2) points (see rigid_speed), much less noisy.
    """

    def __init__(
        self,
        min_cutoff: float = 1.0,
        beta: float = 0.0,
        d_cutoff: float = 1.0,
        speed: SpeedMode = "value",
    ) -> None:
        for name, value in (("min_cutoff", min_cutoff), ("d_cutoff", d_cutoff)):
            if not math.isfinite(value) or value <= 0:
                raise FaceError(f"{name} must be a positive number of Hz, got {value!r}")
        if not math.isfinite(beta) or beta < 0:
            raise FaceError(f"beta must be a number >= 0, got {beta!r}")
        if speed not in ("value", "point", "rigid"):
            raise FaceError(f"speed must be 'value', 'point' or 'rigid', got {speed!r}")
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.speed = speed
        self._x: Float64Array | None = None
        self._dx: Float64Array | None = None
        self._t: float | None = None

    def reset(self) -> None:
        """Forget the history: the next sample passes through unchanged."""
        self._x = None
        self._dx = None
        self._t = None

    def __call__(self, x: npt.ArrayLike, t: float) -> Float64Array:
        """Filter sample *x* taken at time *t* (seconds, increasing); returns the smoothed array (float64)."""
        value = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(value)):
            raise FaceError("OneEuroFilter input contains NaN or infinite values")
        if self.speed != "value" and (value.ndim < 1 or value.shape[-1] != 2):
            raise FaceError(f"speed={self.speed!r} needs points shaped (..., 2), got {value.shape}")
        if self.speed == "rigid" and value.ndim != 2:
            raise FaceError(f"speed='rigid' needs (N,2) points, got {value.shape}")
        if self._x is None or self._t is None or self._dx is None:
            self._x, self._dx, self._t = value.copy(), np.zeros_like(value), float(t)
            return value.copy()
        if value.shape != self._x.shape:
            raise FaceError(f"OneEuroFilter got shape {value.shape} after {self._x.shape}; reset() first")
        dt = float(t) - self._t
        if not dt > 0:
            raise FaceError(f"timestamps must increase: got {t} after {self._t}")
        raw_dx = (value - self._x) / dt
        dx = self._dx + _alpha(self.d_cutoff, dt) * (raw_dx - self._dx)
        if self.speed == "value":
            speed = np.abs(dx)
        elif self.speed == "point":
            speed = np.linalg.norm(dx, axis=-1, keepdims=True)
        else:
            speed = rigid_speed(self._x, dx)[:, None]
        alpha = _alpha(self.min_cutoff + self.beta * speed, dt)
        smoothed = self._x + alpha * (value - self._x)
        self._x, self._dx, self._t = smoothed, dx, float(t)
        return smoothed.copy()


@dataclass(frozen=True)
class SmoothingConfig:
    """Settings of a LandmarkSmoother; speeds are in face sizes per second (resolution independent)."""

    min_cutoff: float = 0.3
    """Cutoff (Hz) for a still face."""
    beta: float = 4.0
    """Cutoff rise per face size per second of motion."""
    d_cutoff: float = 1.0
    """Cutoff (Hz) of the speed estimate."""
    max_gap: float = 0.25
    """Seconds without a sample after which a track starts afresh."""
    match_distance: float = 0.5
    """Largest centre shift, in face sizes, for a detection to continue a track."""

    def __post_init__(self) -> None:
        if not self.min_cutoff > 0 or not self.d_cutoff > 0:
            raise FaceError("min_cutoff and d_cutoff must be > 0 Hz")
        if not self.beta >= 0:
            raise FaceError(f"beta must be >= 0, got {self.beta!r}")
        if not self.max_gap > 0:
            raise FaceError(f"max_gap must be > 0 s, got {self.max_gap!r}")
        if not self.match_distance > 0:
            raise FaceError(f"match_distance must be > 0, got {self.match_distance!r}")


@dataclass
class _Track:
    keypoints: OneEuroFilter
    mesh: OneEuroFilter
    scale: float
    last_t: float
    centre: Float64Array


class LandmarkSmoother:
    """Smooths the keypoints and meshes of tracked faces over time; a track restarts after a gap.

    `smooth(key, points, t)` filters one track's points; `smooth_faces(faces, t)` also matches this frame's
    faces to the previous frame's tracks by position and returns smoothed Faces.
    """

    def __init__(self, config: SmoothingConfig | None = None) -> None:
        self.config = config or SmoothingConfig()
        self._tracks: dict[Hashable, _Track] = {}
        self._next_id = 0

    def _filter(self) -> OneEuroFilter:
        cfg = self.config
        return OneEuroFilter(cfg.min_cutoff, cfg.beta, cfg.d_cutoff, speed="rigid")

    def reset(self) -> None:
        """Forget all tracks."""
        self._tracks.clear()

    @property
    def track_ids(self) -> list[Hashable]:
        """Keys of the tracks alive now."""
        return list(self._tracks)

    def smooth(
        self, key: Hashable, keypoints: npt.ArrayLike, t: float, mesh: npt.ArrayLike | None = None
    ) -> tuple[Float64Array, Float64Array | None]:
        """Smoothed (keypoints, mesh) for track *key* at time *t* (seconds); starts the track if new or stale."""
        kp = np.asarray(keypoints, dtype=np.float64)
        if kp.shape != (5, 2):
            raise FaceError(f"keypoints must have shape (5,2), got {kp.shape}")
        track = self._tracks.get(key)
        if track is not None and (t - track.last_t > self.config.max_gap or t <= track.last_t):
            track = None
        if track is None:
            scale = max(float(np.linalg.norm(kp[1] - kp[0])) / 0.45, 1.0)  # eye distance ~0.45 face widths
            track = _Track(self._filter(), self._filter(), scale, t, kp.mean(axis=0))
            self._tracks[key] = track
        # Filter in face-size units so the settings do not depend on resolution or distance to the camera.
        smoothed_kp = track.keypoints(kp / track.scale, t) * track.scale
        smoothed_mesh = None
        if mesh is not None:
            m = np.asarray(mesh, dtype=np.float64)
            if track.mesh._x is not None and track.mesh._x.shape != m.shape:
                track.mesh.reset()
            smoothed_mesh = track.mesh(m / track.scale, t) * track.scale
        else:
            track.mesh.reset()
        track.last_t = t
        track.centre = kp.mean(axis=0)
        return smoothed_kp, smoothed_mesh

    def smooth_faces(self, faces: list[Face], t: float) -> list[tuple[int, Face]]:
        """Match *faces* to existing tracks (nearest centre) and return (track id, smoothed Face) pairs."""
        self._drop_stale(t)
        # Face tracks have int ids; tracks that smooth() callers keyed otherwise are not matched to faces.
        unmatched = {key: track for key, track in self._tracks.items() if isinstance(key, int)}
        out: list[tuple[int, Face]] = []
        for face in faces:
            centre = face.keypoints.astype(np.float64).mean(axis=0)
            best: int | None = None
            best_dist = math.inf
            for key, track in unmatched.items():
                dist = float(np.linalg.norm(centre - track.centre)) / track.scale
                if dist < best_dist:
                    best, best_dist = key, dist
            if best is None or best_dist > self.config.match_distance:
                best = self._next_id
                self._next_id += 1
            else:
                del unmatched[best]
            kp, mesh = self.smooth(best, face.keypoints, t, face.mesh)
            out.append((best, face.with_points(kp, mesh)))
        return out

    def _drop_stale(self, t: float) -> None:
        for key in [k for k, tr in self._tracks.items() if t - tr.last_t > self.config.max_gap]:
            del self._tracks[key]
