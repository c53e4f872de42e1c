"""A manifest model as `swapstream triton` serves it: its Triton name and batching, the same as the model's folder
in `swapstream export --triton`'s repository (fleet/repository.py writes the model's config from this).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from fleet.model_files import ModelEntry
from swapstream.triton_model import DEFAULT_MAX_BATCH, triton_model_name

log = logging.getLogger(__name__)

REPOSITORY_FOLDER = "triton"
_MAX_BATCH_LINE = re.compile(r"^max_batch_size:\s*(\d+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class ModelBinding:
    """One served model: its Triton name, the manifest entry it comes from and its batching."""

    name: str
    entry: ModelEntry
    max_batch: int
    max_queue_delay_us: int


def repository_max_batch(models_dir: Path, entry: ModelEntry) -> int | None:
    """`max_batch_size` of the entry's `config.pbtxt` in `export --triton`'s repository, or None without one."""
    path = models_dir / REPOSITORY_FOLDER / triton_model_name(entry.name) / "config.pbtxt"
    if not path.is_file():
        return None
    match = _MAX_BATCH_LINE.search(path.read_text(encoding="utf-8"))
    return int(match.group(1)) if match else None


def plan_binding(entry: ModelEntry, models_dir: Path, max_batch: int | None, max_queue_delay_us: int) -> ModelBinding:
    """The binding of one entry; the batch bound is `max_batch`, else the repository's, else swapstream's default."""
    from_repository = repository_max_batch(models_dir, entry)
    chosen = max_batch or from_repository or DEFAULT_MAX_BATCH
    if max_batch is None:
        source = "export --triton's repository" if from_repository else "the default"
        log.info("model %s: max batch %d (%s)", entry.name, chosen, source)
    return ModelBinding(triton_model_name(entry.name), entry, chosen, max_queue_delay_us)
