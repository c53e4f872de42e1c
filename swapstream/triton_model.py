"""How a manifest model appears on a Triton Inference Server, agreed by every side that touches Triton.

`swapstream export --triton` writes a model repository with these names and settings (export/triton.py),
`swapstream triton` serves the same models through PyTriton (fleet/), and the stream server's Triton client
(stream_server/backends/triton.py) finds them by these names and checks the sha256 parameter. Standard library only,
so the server imports it without onnx or torch.
"""

from __future__ import annotations

# How long Triton's dynamic batcher may hold a request to gather a batch. None: a lone request (one session's frame)
# would wait the whole delay for company that does not come (measured +2.1 ms per request, bench/triton_hop.py),
# while under load requests queue behind the running batch and are batched anyway (Triton's own recommended start).
MAX_QUEUE_DELAY_US = 0
# The largest batch a Triton model takes when nothing else says so (`swapstream export --max-batch`'s default).
DEFAULT_MAX_BATCH = 16
# The model-config parameter that carries the manifest's sha256 of the served ONNX file.
SHA256_PARAMETER = "swapstream_sha256"
# Manifest dtype -> Triton's tensor data type (the protocol's name; model configs spell it "TYPE_" + this).
TRITON_DATATYPES = {"float32": "FP32", "float16": "FP16", "int64": "INT64", "int32": "INT32", "uint8": "UINT8"}


def triton_model_name(manifest_name: str) -> str:
    """The Triton model name of a manifest entry: its name with anything but `[A-Za-z0-9_.-]` made `_`."""
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in manifest_name)


def preferred_batch_sizes(max_batch: int) -> list[int]:
    """The dynamic batcher's preferred sizes: 4, 8, 16 and `max_batch`, those that fit.

    No 1 here: a preferred size of 1 would send every lone request straight through, unbatched.
    """
    return sorted({size for size in (4, 8, 16, max_batch) if size <= max_batch})
