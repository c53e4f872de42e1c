"""Real inputs for the parity checks: data that ships in installed packages, prepared as the server prepares it.

Faces: the astronaut photograph of scikit-image (Eileen Collins, public domain), aligned with
`faces.align.align_face` exactly as the live pipeline crops faces. Digits: scikit-learn's handwritten digits from
the trainer's held-out split, 16x16 in the model's convention (ink bright on dark, values in [0,1]).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from faces.align import align_face

# The astronaut's five keypoints in the 512x512 photo (image-left eye, image-right eye, nose tip, mouth corners),
# measured once with faces.detect.FaceDetector (score 0.91) and fixed here so export needs no detector.
ASTRONAUT_KEYPOINTS = np.array(
    [[204.0, 101.6], [247.4, 103.8], [224.1, 131.2], [201.8, 139.5], [245.9, 142.2]],
    dtype=np.float32,
)
# Small shifts and scalings of the keypoints: the crops a tracker would hand over on neighbouring frames.
_JITTERS = ((0.0, 0.0, 1.0), (3.0, -2.0, 1.0), (-2.0, 3.0, 1.06), (0.0, 0.0, 0.94))


def real_face_batch(face_size: int) -> npt.NDArray[np.float32]:
    """Aligned crops of a real face photo: float32 NCHW RGB in [0,1], batch of 8 (4 jitters x plain/mirrored)."""
    from skimage import data as skimage_data

    photo = np.ascontiguousarray(skimage_data.astronaut())  # type: ignore[no-untyped-call]  # skimage: no annotations
    center = ASTRONAUT_KEYPOINTS.mean(axis=0)
    crops = []
    for dx, dy, scale in _JITTERS:
        keypoints = (ASTRONAUT_KEYPOINTS - center) * scale + center + np.array([dx, dy], dtype=np.float32)
        crop = align_face(photo, keypoints, face_size).crop
        crops.append(crop)
        crops.append(np.ascontiguousarray(crop[:, ::-1]))
    batch = np.stack(crops).astype(np.float32) / 255.0
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


def real_digit_batch(count: int = 64) -> npt.NDArray[np.float32]:
    """`count` held-out scikit-learn digits, prepared by the trainer's own loader: float32 N x 256 in [0,1]."""
    from training.digits import default_digits

    return np.ascontiguousarray(default_digits().x_test[:count], dtype=np.float32)
