"""How a session's faces reach the models: micro-batched across sessions in-process, or straight to Triton.

`InferenceBatcher` (models in this process): one worker thread owns the inference calls. A request from the only
live session runs at once; when several sessions are live, the worker waits at most `max_wait_ms` (<= 2 ms) for
the other sessions' faces before it runs everything queued for the same model as one batch. Models join and leave
while it runs (`add_backends`, `remove_backends`: a Studio job's models); a request keeps the backend it was queued
for. `BatcherLane` is one session's way into it.

`DirectLane` (--inference triton://): no in-process batching; each frame's faces go to Triton from the frame's
worker thread as one request, and Triton's dynamic batcher gathers requests across sessions and servers. A failed
request is counted and either raised (the frame goes out unswapped) or run by the local fallback backend.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from stream_server.backends import InferenceBackend
from stream_server.errors import RemoteInferenceError

logger = logging.getLogger(__name__)


Batch = NDArray[np.float32]


@dataclass
class _Request:
    model: str
    backend: InferenceBackend
    faces: Batch
    session: str
    future: Future[list[Batch]] = field(default_factory=Future)


class InferenceBatcher:
    """Runs inference requests from many sessions on one worker thread, batching those that arrive together."""

    def __init__(
        self,
        backends: Mapping[str, InferenceBackend],
        max_wait_ms: float = 2.0,
        max_batch: int = 16,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._backends = dict(backends)
        self._max_wait_s = max_wait_ms / 1000.0
        self._max_batch = max_batch
        self._on_batch = on_batch
        self._pending: list[_Request] = []
        self._live_sessions: set[str] = set()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="swapstream-batcher", daemon=True)
        self._thread.start()

    def register(self, session: str) -> None:
        """Count `session` as live, so other sessions' requests may briefly wait for its faces."""
        with self._cond:
            self._live_sessions.add(session)

    def unregister(self, session: str) -> None:
        with self._cond:
            self._live_sessions.discard(session)
            self._cond.notify_all()

    @property
    def live_sessions(self) -> int:
        with self._cond:
            return len(self._live_sessions)

    def add_backends(self, backends: Mapping[str, InferenceBackend]) -> None:
        """Run these models too (names not yet served here; KeyError names the first that is, nothing added)."""
        with self._cond:
            taken = sorted(set(backends) & set(self._backends))
            if taken:
                raise KeyError(f"the batcher already runs {', '.join(taken)}")
            self._backends.update(backends)

    def remove_backends(self, names: Iterable[str]) -> None:
        """Stop running these models (requests already queued still run on the backend they were queued for)."""
        with self._cond:
            for name in names:
                self._backends.pop(name, None)

    def infer(self, model: str, faces: Batch, session: str, timeout_s: float = 10.0) -> list[Batch]:
        """Run `model` on `faces` (N,C,S,S) float32; blocks the calling (worker) thread until the batch ran."""
        faces = np.ascontiguousarray(faces, dtype=np.float32)
        with self._cond:
            if self._closed:
                raise RuntimeError("the inference batcher is closed")
            backend = self._backends.get(model)
            if backend is None:
                raise KeyError(model)
            request = _Request(model, backend, faces, session)
            self._pending.append(request)
            self._cond.notify_all()
        return request.future.result(timeout=timeout_s)

    def close(self) -> None:
        """Stop the worker thread; pending requests fail."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5.0)
        with self._cond:
            for request in self._pending:
                if not request.future.done():
                    request.future.set_exception(RuntimeError("the inference batcher closed"))
            self._pending.clear()

    def _ready(self) -> bool:
        sessions_waiting = {r.session for r in self._pending}
        return len(sessions_waiting) >= max(1, len(self._live_sessions))

    def _take_batch(self) -> list[_Request]:
        """Under the lock: the longest run of queued requests for the first request's model, up to max_batch faces."""
        backend = self._pending[0].backend
        taken: list[_Request] = []
        faces = 0
        for request in list(self._pending):
            if request.backend is not backend:
                continue
            if taken and faces + len(request.faces) > self._max_batch:
                break
            taken.append(request)
            faces += len(request.faces)
        for request in taken:
            self._pending.remove(request)
        return taken

    def _next_batch(self) -> list[_Request] | None:
        """Wait for a request, then at most max_wait for the other live sessions' faces; None once closed."""
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            deadline = time.monotonic() + self._max_wait_s
            while not self._closed and not self._ready():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return None if self._closed else self._take_batch()

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._run(batch)

    def _run(self, batch: list[_Request]) -> None:
        backend = batch[0].backend
        try:
            stacked = batch[0].faces if len(batch) == 1 else np.concatenate([r.faces for r in batch], axis=0)
            outputs = backend.run(stacked)
        except Exception as exc:  # noqa: BLE001 - delivered to every waiting session, which reports it
            for request in batch:
                request.future.set_exception(exc)
            return
        if self._on_batch is not None:
            self._on_batch(len(stacked))
        start = 0
        for request in batch:
            stop = start + len(request.faces)
            request.future.set_result([output[start:stop] for output in outputs])
            start = stop


class BatcherLane:
    """One session's way into the batcher: the session counts as live from creation until close()."""

    def __init__(self, batcher: InferenceBatcher, session: str) -> None:
        self._batcher = batcher
        self._session = session
        batcher.register(session)

    def __call__(self, model: str, faces: Batch) -> list[Batch]:
        """Run `model` on this session's faces, batched with other sessions' (blocks the worker thread)."""
        return self._batcher.infer(model, faces, self._session)

    def close(self) -> None:
        """Leave the batcher: other sessions stop waiting for this one's faces."""
        self._batcher.unregister(self._session)


class DirectLane:
    """The lane of every session when the models run on Triton: requests go straight to the backends (no batcher).

    Stateless, so one lane serves all sessions. `fallback` (--inference-fallback local) holds in-process backends
    that run a batch Triton failed; without it the failure is raised to the frame stages.
    """

    def __init__(self, backends: Mapping[str, InferenceBackend], fallback: Mapping[str, InferenceBackend] | None,
                 on_batch: Callable[[int], None], on_failure: Callable[[RemoteInferenceError], None]) -> None:
        self._backends = dict(backends)
        self._fallback = dict(fallback) if fallback is not None else None
        self._on_batch = on_batch
        self._on_failure = on_failure

    def __call__(self, model: str, faces: Batch) -> list[Batch]:
        """Run `model` on these faces now (blocks the worker thread); RemoteInferenceError when Triton failed and
        there is no fallback."""
        try:
            outputs = self._backends[model].run(faces)
        except RemoteInferenceError as exc:
            self._on_failure(exc)
            if self._fallback is None:
                raise
            return self._fallback[model].run(faces)
        self._on_batch(len(faces))
        return outputs

    def close(self) -> None:
        """Nothing to leave: the lane keeps no per-session state."""
