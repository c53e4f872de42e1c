"""The receive path both ends of a swapstream call use: aiortc plus the marker-bit jitter buffer.

Both the server (stream_server/) and the clients (clients/, bench/) import this package; it imports aiortc and,
of the project, only the error root in swapstream/, so neither side reaches into the other's internals.
"""
