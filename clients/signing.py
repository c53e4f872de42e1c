"""What a client's recording asserts in its C2PA manifest: the session's model, as the server describes it.

The server lists its models at GET /api/models (name, kind, direction, sha256 and, where the model's manifest
entry has one, its consent record) with the defaults new sessions get; the session's options pick one of them
the way the server does (a manifest name, or "a2b" / "b2a" for the first swap model of that direction).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from clients.errors import ConnectionFailed
from clients.webrtc import ServerEndpoint, fetch_json
from provenance.errors import ProvenanceError
from provenance.facts import ModelFacts

logger = logging.getLogger(__name__)

MODELS_PATH = "/api/models"


def session_model(models: Any, options: Mapping[str, Any]) -> ModelFacts | None:
    """The swap model a session with `options` runs on a server whose /api/models document is `models`.

    None when no model changes the frames: an echo server, `"swap": false`, or a name the server does not have
    (the server then rejects the option itself).
    """
    if not isinstance(models, dict) or models.get("pipeline") != "swap":
        return None
    defaults = models.get("defaults") or {}
    if not options.get("swap", defaults.get("swap", True)):
        return None
    wanted = options.get("model", defaults.get("model"))
    swap_models = [m for m in models.get("models") or [] if isinstance(m, dict) and m.get("kind") == "swap"]
    chosen = next((m for m in swap_models if m.get("name") == wanted), None) or next(
        (m for m in swap_models if m.get("direction") == wanted), None)
    if chosen is None:
        return None
    try:
        return ModelFacts.from_json(chosen, f"{MODELS_PATH} model {chosen.get('name')!r}")
    except ProvenanceError as exc:
        raise ConnectionFailed(f"the server's {MODELS_PATH} describes its model badly: {exc}") from exc


async def fetch_session_model(endpoint: ServerEndpoint, options: Mapping[str, Any]) -> ModelFacts | None:
    """`session_model` for the server at `endpoint` (one GET /api/models)."""
    return session_model(await fetch_json(endpoint, MODELS_PATH), options)
