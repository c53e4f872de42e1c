"""The server's frame stages, run offline: the ONLY module of this package that uses stream_server.

It builds what `swapstream serve` builds for a session (the manifest's model through the same backend loader,
the `ModelCatalog`, a `FramePipeline` with the server's settings) and feeds it frames as a session would:
`locate` (detect / track / smooth) then `render` (align, infer, colour transfer, blend, the AI-generated
mark), one fresh pipeline per clip, frames paced at the clip's frame rate so the detector thread beside the
frame path has the time it has live. Inference calls the backend directly: the server's batcher only groups
the faces of several sessions, and an evaluation is one session.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np

from evaluation.arrays import AnyArray, Image
from faces.color import ColorMode
from faces.types import Face
from stream_server.backends import InferenceBackend, load_models
from stream_server.catalog import ModelCatalog
from stream_server.config import ServerConfig, SessionOptions
from stream_server.pipeline import FramePipeline, PipelineSettings

log = logging.getLogger(__name__)

PipelineMode = Literal["swap", "echo"]
# The server swaps up to --max-faces faces; the evaluation measures the one main face of each frame.
EVALUATED_FACES = 1


def server_detect_every() -> int:
    """`swapstream serve`'s default --detect-every."""
    default = next(f.default for f in dataclasses.fields(ServerConfig) if f.name == "detect_every")
    assert isinstance(default, int)
    return default


@dataclass(frozen=True)
class SwapModel:
    """The swap model under evaluation, as the manifest and the runtime describe it."""

    name: str
    direction: str
    face_size: int
    provider: str


@dataclass(frozen=True, eq=False)
class RenderedFrame:
    """The pipeline's output frame (RGB uint8) and the faces it located, where it pasted the swaps."""

    output: Image
    faces: tuple[Face, ...]


class SwapRunner:
    """Loads one swap model as the server does and runs clips through the server's frame pipeline."""

    def __init__(self, models_dir: Path, model: str, color: ColorMode, feather: int,
                 detect_every: int | None = None, keep_mouth: bool = False) -> None:
        manifest, backends = load_models(models_dir)
        self._catalog = ModelCatalog(manifest.models, backends)
        info = self._catalog.resolve(model)
        backend = self._catalog.backends[info.name]
        self.model = SwapModel(info.name, info.direction, info.face_size, backend.provider)
        self.options = SessionOptions(model=info.name, color=color, feather=feather, keep_mouth=keep_mouth)
        self.detect_every = detect_every if detect_every is not None else server_detect_every()

    def clip(self, mode: PipelineMode, fps: float) -> ClipRun:
        """A fresh pipeline (its own detector, tracker and smoother) for one clip: swap, or the echo baseline."""
        settings = PipelineSettings(mode=mode, detect_every=self.detect_every, max_faces=EVALUATED_FACES,
                                    disclosure_mark=True)
        infer = _DirectInfer(self._catalog.backends[self.model.name], self.model.name)
        return ClipRun(FramePipeline(settings, self._catalog, infer), self.options, fps)

    def close(self) -> None:
        """Close the models' backends."""
        self._catalog.close()


class _DirectInfer:
    """The model's backend called directly: the server's batcher only groups the faces of several sessions."""

    def __init__(self, backend: InferenceBackend, model: str) -> None:
        self._backend = backend
        self._model = model

    def __call__(self, model: str, faces: AnyArray) -> list[AnyArray]:
        assert model == self._model, f"pipeline asked for {model}, loaded {self._model}"
        return self._backend.run(faces)

    def close(self) -> None:
        """Nothing to leave: the backend belongs to the runner."""


class ClipRun:
    """One clip through one pipeline; close it (or use `with`) to stop its detector thread."""

    def __init__(self, pipeline: FramePipeline, options: SessionOptions, fps: float) -> None:
        self._pipeline = pipeline
        self._options = options
        self._interval_s = 1.0 / fps
        self._frames = 0
        self._started = time.monotonic()

    def process(self, frame: Image) -> RenderedFrame:
        """The next frame through `locate` then `render`, no earlier than its time at the clip's frame rate."""
        due = self._started + self._frames * self._interval_s
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        faces, _ = self._pipeline.locate(frame, self._options, timestamp_s=self._frames * self._interval_s)
        output, _ = self._pipeline.render(frame.copy(), faces, self._options)
        self._frames += 1
        return RenderedFrame(output, tuple(faces))

    def close(self) -> None:
        """Stop the pipeline's detector thread and free its mediapipe graphs."""
        self._pipeline.close()

    def __enter__(self) -> ClipRun:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
