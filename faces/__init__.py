"""Shared face geometry for training and serving: detection, alignment, masks, colour transfer, smoothing.

Needs only numpy, OpenCV and mediapipe. Import the stage modules directly (`faces.detect`, `faces.align`,
`faces.mask`, `faces.color`, `faces.smooth`); this package file imports nothing heavy.
"""
