"""The corner of every frame reserved for a frame-number code: a contract between clients and the server.

The profiler (clients.framecode), the test peers and the benchmarks stamp a frame number into the top-left
RESERVED_CORNER_WIDTH x RESERVED_CORNER_HEIGHT pixels of each frame they send; the server never draws there
(docs/CONTRACTS.md). Standard library only, so every package may import it.
"""

from __future__ import annotations

RESERVED_CORNER_WIDTH = 200
RESERVED_CORNER_HEIGHT = 24
