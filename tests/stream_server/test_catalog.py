"""The catalog of served models: one resolver, and immutable snapshots that later models extend."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from stream_server.backends import load_models
from stream_server.catalog import ModelCatalog
from stream_server.errors import ConfigError, ModelLoadError


def test_swap_models_resolve_by_name_or_direction(tiny_models_dir: Path) -> None:
    manifest, backends = load_models(tiny_models_dir)
    catalog = ModelCatalog(manifest.models, backends)
    try:
        assert catalog.names == ("swap_a2b", "swap_b2a", "digits")
        assert catalog.swap_names == ("swap_a2b", "swap_b2a")
        assert catalog.resolve("b2a") == catalog.resolve("swap_b2a")
        model = catalog.resolve("a2b")
        assert (model.name, model.direction, model.face_size, model.rgb_index, model.mask_index) == \
            ("swap_a2b", "a2b", 64, 0, 1)
        with pytest.raises(ConfigError) as info:
            catalog.resolve("digits")  # served, but not a swap model
        assert str(info.value) == "option 'model': no swap model 'digits'; choices: swap_a2b, swap_b2a, a2b, b2a"
        with pytest.raises(ModelLoadError, match="do not match"):
            ModelCatalog(manifest.models, {})
    finally:
        catalog.close()


def test_with_models_is_a_new_snapshot_and_the_old_one_is_unchanged(tiny_models_dir: Path, tmp_path: Path) -> None:
    manifest, backends = load_models(tiny_models_dir)
    catalog = ModelCatalog(manifest.models, backends)
    job = tmp_path / "job"  # a second models folder, as a studio job would export it
    shutil.copytree(tiny_models_dir, job)
    data = json.loads((job / "manifest.json").read_text(encoding="utf-8"))
    for entry in data["models"]:
        entry["name"] = f"job.{entry['name']}"
    (job / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    job_manifest, job_backends = load_models(job)
    try:
        bigger = catalog.with_models(job_manifest.models, job_backends)
        assert catalog.names == ("swap_a2b", "swap_b2a", "digits")
        assert bigger.names == ("swap_a2b", "swap_b2a", "digits", "job.swap_a2b", "job.swap_b2a", "job.digits")
        assert bigger.resolve("a2b").name == "swap_a2b"  # the first model of a direction stays the first
        assert bigger.resolve("job.swap_b2a").name == "job.swap_b2a"
        assert bigger.backends["swap_a2b"] is catalog.backends["swap_a2b"]
        faces = np.full((2, 3, 64, 64), 0.25, np.float32)
        np.testing.assert_allclose(bigger.backends["job.swap_a2b"].run(faces)[0], 0.75)
        with pytest.raises(ModelLoadError, match="repeat.*swap_a2b"):
            bigger.with_models(manifest.of_kind("swap"), {name: backends[name] for name in ("swap_a2b", "swap_b2a")})
        with pytest.raises(TypeError):
            bigger.backends["other"] = backends["digits"]  # type: ignore[index]
        smaller = bigger.without_models(["job.swap_a2b", "job.digits"])
        assert smaller.names == ("swap_a2b", "swap_b2a", "digits", "job.swap_b2a")
        assert bigger.names[-3:] == ("job.swap_a2b", "job.swap_b2a", "job.digits")
        np.testing.assert_allclose(bigger.backends["job.swap_a2b"].run(faces)[0], 0.75)  # not closed by removal
        with pytest.raises(ConfigError, match="not served: nobody"):
            smaller.without_models(["nobody", "swap_a2b"])
    finally:
        catalog.close()
        for backend in job_backends.values():
            backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        backends["swap_a2b"].run(faces)
