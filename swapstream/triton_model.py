"""How a manifest model appears on a Triton Inference Server, agreed by every side that touches Triton.

`swapstream export --triton` writes a model repository with these names and settings (export/triton.py),
`swapstream triton` serves the same models through PyTriton (fleet/), and the stream server's Triton client
(stream_server/backends/triton.py) finds them by these names and checks the sha256 parameter. Standard library only,
so the server imports it without onnx or torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# How long Triton's dynamic batcher may hold a request to gather a batch. None: a lone request (one session's frame)
# would wait the whole delay for company that does not come (measured +2.1 ms per request, bench/triton_hop.py),
# while under load requests queue behind the running batch and are batched anyway (Triton's own recommended start).
MAX_QUEUE_DELAY_US = 0
# The largest batch a Triton model takes when nothing else says so (`swapstream export --max-batch`'s default).
DEFAULT_MAX_BATCH = 16
# The model-config parameter that carries the manifest's sha256 of the served ONNX file.
SHA256_PARAMETER = "swapstream_sha256"
# Between the entries of a model config's input or output list.
_SEPARATOR = ",\n"
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


def tensor_block(name: str, dtype: str, shape: Sequence[int | str]) -> str:
    """One `input`/`output` entry of a model config; `shape` includes the batch axis, which Triton leaves out.

    ValueError naming the tensor when Triton cannot declare it (no such data type, a fixed first axis, dynamic
    dimensions past the batch axis).
    """
    datatype = TRITON_DATATYPES.get(dtype)
    if datatype is None:
        raise ValueError(f"no Triton data type for {name}'s {dtype}")
    if not isinstance(shape[0], str):
        raise ValueError(f"{name}'s first axis must be the batch axis, found {shape[0]!r}")
    tail = shape[1:]
    if not all(isinstance(dim, int) for dim in tail):
        raise ValueError(f"{name} has dynamic dimensions past the batch axis: {list(shape)}")
    dims = ", ".join(str(dim) for dim in tail)
    return f'  {{\n    name: "{name}"\n    data_type: TYPE_{datatype}\n    dims: [ {dims} ]\n  }}'


def model_config_text(name: str, runtime: str, max_batch: int, inputs: Sequence[str], outputs: Sequence[str],
                      parameters: Mapping[str, str], max_queue_delay_us: int = MAX_QUEUE_DELAY_US,
                      instance_kind: str = "KIND_AUTO") -> str:
    """A text-format ModelConfig with swapstream's batching: `runtime` is its `platform: ...` or `backend: ...`
    line, `inputs`/`outputs` are `tensor_block`s, `parameters` become string parameters (the sha256 among them).

    `export --triton` (ONNX Runtime backend) and `swapstream triton` (Python backend) both write through this, so
    the two repositories cannot drift apart in names, tensors or batching.
    """
    preferred = ", ".join(str(size) for size in preferred_batch_sizes(max_batch))
    params = "".join(f'parameters {{\n  key: "{key}"\n  value: {{ string_value: "{value}" }}\n}}\n'
                     for key, value in parameters.items())
    return (
        f'name: "{name}"\n'
        f"{runtime}\n"
        f"max_batch_size: {max_batch}\n"
        f"input [\n{_SEPARATOR.join(inputs)}\n]\n"
        f"output [\n{_SEPARATOR.join(outputs)}\n]\n"
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {preferred} ]\n"
        f"  max_queue_delay_microseconds: {max_queue_delay_us}\n"
        "}\n"
        f"instance_group [\n  {{\n    count: 1\n    kind: {instance_kind}\n  }}\n]\n"
        f"{params}"
    )
