"""Synthetic identities: a parametric 3D face renderer for tests and the demo (no face data set can be downloaded).

A head is an ellipsoid with a height field on its front (nose, brow ridge, eye sockets, cheekbones, lips, chin)
and a painted albedo texture (skin, eyes, brows, lips, hair), both in head units (x right, y down, z towards the
camera; the head is 2 units wide). Each pixel's view ray is intersected with the surface (orthographic camera),
shaded (wrapped Lambert + Blinn specular) and composited over a hair shell, neck, torso and a seeded background.
The renderer knows where every feature is, so each frame comes with ground-truth keypoints and a face outline.

One module per job:

- `identity`: who a person is (`Identity`, `IDENTITY_A`, `IDENTITY_B`, `Glasses`): new per-person traits start here.
- `controls`: what changes per frame (`Pose`, `Expression`, `Lighting`) and the result (`SyntheticFrame`).
- `geometry`: head shape and feature positions (the ground truth: keypoints, mouth corners, outline), projection.
- `texture`: skin and hair painted once per identity; drawing in head units.
- `features`: eyes, brows, mouth painted per expression (blink, smile, open mouth, teeth).
- `raycast`, `shading`, `layers`: ray-cast ellipsoids, the light model, and the body / hair / head / glasses layers.
- `background`: the seeded room behind the person.
- `renderer`: `FaceRenderer` puts one frame together; `render_face` is the one-shot form.
- `motion`: a webcam-like sequence (`render_sequence`, `iter_sequence`, `write_sequence_video`).
"""

from __future__ import annotations

from faces.media import write_video, write_y4m
from faces.synthetic.background import make_background
from faces.synthetic.controls import Expression, Lighting, Pose, SyntheticFrame
from faces.synthetic.identity import IDENTITIES, IDENTITY_A, IDENTITY_B, Glasses, Identity
from faces.synthetic.motion import MotionRanges, iter_sequence, render_sequence, write_sequence_video
from faces.synthetic.renderer import FaceRenderer, render_face

__all__ = [
    "Expression",
    "FaceRenderer",
    "Glasses",
    "IDENTITIES",
    "IDENTITY_A",
    "IDENTITY_B",
    "Identity",
    "Lighting",
    "MotionRanges",
    "Pose",
    "SyntheticFrame",
    "make_background",
    "render_face",
    "iter_sequence",
    "render_sequence",
    "write_sequence_video",
    "write_video",
    "write_y4m",
]
