"""swapstream: live face swapping over WebRTC."""

__version__ = "0.1.0"
