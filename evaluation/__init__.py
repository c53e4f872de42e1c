"""`swapstream evaluate`: how good a swap model is, measured through the server's own frame stages.

The frame's path through this package, one module per step:

    sources.py       A's held-out frames (videos, photos, folders of photos) and B's reference frames
    swap_runner.py   the server's pipeline (detect/track, align, infer, blend) run offline: the one module
                     that touches stream_server
    face_measure.py  mediapipe mesh on input and output frames: mouth and eye opening, head pose
    regions.py       where the swap was pasted: the blend weight, the inner face, the rings across its edge
    metrics.py       expression following, sharpness, frame-to-frame change, blend seam (plain numpy)
    identity.py      the judge: dlib's ResNet face descriptor, independent of our trainer
    evaluate.py      runs the above over every source and gathers the report
    report.py        report.json and the one-screen text summary
    figures.py       the PNG summary (sample grid, plots over time)
    photos.py        the real photos that ship in installed packages, written out as evaluation sources

Never imports torch.
"""
