"""deploy/: the Kubernetes manifests validate against Kubernetes' own schemas (kubernetes-validate, offline, strict),
the compose file against the Compose Specification's schema (vendored in deploy/schema/), and the pieces agree:
media servers point at the Triton service, are ready only while /healthz says so, and scale on a metric they export.
Neither Docker nor Kubernetes runs here: these checks are what `docker compose config` and `kubectl apply
--dry-run` would catch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES_VERSION = "1.32"
HAPROXY_ENV = {"MEDIA_HOST": "media", "MEDIA_PORT": "8080"}


def _k8s_resources() -> list[dict[str, Any]]:
    resources = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        with open(path) as handle:
            resources += [doc for doc in yaml.safe_load_all(handle) if doc]
    return resources


def _by_kind_and_name(resources: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["kind"], r["metadata"]["name"]): r for r in resources}


def _compose() -> dict[str, Any]:
    with open(DEPLOY / "docker-compose.yml") as handle:
        return yaml.safe_load(handle)


def _compose_schema() -> jsonschema.Draft7Validator:
    with open(DEPLOY / "schema" / "compose-spec.json") as handle:
        return jsonschema.Draft7Validator(json.load(handle))


def test_kubernetes_manifests_validate_strictly() -> None:
    resources = _k8s_resources()
    assert len(resources) >= 9
    for resource in resources:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_kubernetes_validation_catches_a_misspelt_field() -> None:
    """The strict check above means something: a misspelt field fails it."""
    deployment = _by_kind_and_name(_k8s_resources())[("Deployment", "swapstream-media")]
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/healthz"}}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_media_servers_use_triton_and_scale_on_their_sessions() -> None:
    from stream_server.metrics import ServerMetrics

    resources = _by_kind_and_name(_k8s_resources())
    triton_service = resources[("Service", "triton")]
    grpc_port = next(p["port"] for p in triton_service["spec"]["ports"] if p["name"] == "grpc")
    namespace = triton_service["metadata"]["namespace"]
    media = resources[("Deployment", "swapstream-media")]
    pod = media["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = container["args"]
    assert args[args.index("--inference") + 1] == f"triton://triton.{namespace}.svc.cluster.local:{grpc_port}"
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"  # WebRTC's UDP ports
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert "httpGet" not in container["livenessProbe"]  # a full server (503) is not a dead one
    # HAProxy finds media pods through this headless Service, and must keep reaching a full (not ready) one: it
    # owns live sessions whose pinned /node/<server>/ URLs lead there
    media_service = resources[("Service", "swapstream-media")]["spec"]
    assert media_service["clusterIP"] == "None" and media_service["publishNotReadyAddresses"] is True

    triton = resources[("Deployment", "triton")]["spec"]["template"]["spec"]["containers"][0]
    assert triton["image"].startswith("nvcr.io/nvidia/tritonserver:") and triton["image"].endswith("-py3")
    assert "--model-repository=/models/triton" in triton["args"]
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1

    hpa = resources[("HorizontalPodAutoscaler", "swapstream-media")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "swapstream-media"
    metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    assert f"# TYPE {metric} gauge" in ServerMetrics().render().decode(), f"the media servers export no gauge {metric}"
    adapter = yaml.safe_load(resources[("ConfigMap", "prometheus-adapter-swapstream")]["data"]["config.yaml"])
    assert adapter["rules"][0]["name"]["as"] == metric


def test_kustomization_lists_every_manifest() -> None:
    with open(DEPLOY / "kustomization.yaml") as handle:
        kustomization = yaml.safe_load(handle)
    listed = set(kustomization["resources"])
    assert listed == {f"k8s/{path.name}" for path in (DEPLOY / "k8s").glob("*.yaml")}
    for generator in kustomization["configMapGenerator"]:
        for file in generator["files"]:
            assert (DEPLOY / file).is_file()


def test_compose_file_matches_the_compose_specification() -> None:
    compose = _compose()
    _compose_schema().validate(compose)
    services = compose["services"]
    assert services["triton"]["image"].startswith("nvcr.io/nvidia/tritonserver:")
    assert services["triton"]["volumes"][0]["target"] == "/models"
    assert services["triton"]["volumes"][0]["source"].endswith("/triton")  # export --triton's repository
    command = services["media"]["command"]
    assert command[command.index("--inference") + 1] == "triton://triton:8001"
    assert services["media"]["depends_on"]["triton"]["condition"] == "service_healthy"
    assert services["lb"]["environment"]["MEDIA_HOST"] == "media"


def test_compose_schema_catches_a_misspelt_key() -> None:
    broken = _compose()
    broken["services"]["media"]["comand"] = broken["services"]["media"].pop("command")
    with pytest.raises(jsonschema.ValidationError, match="comand"):
        _compose_schema().validate(broken)


def test_haproxy_config_is_valid() -> None:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.skip("haproxy is not installed here (apt-get install haproxy): the config check needs its binary")
    result = subprocess.run([haproxy, "-c", "-f", str(DEPLOY / "haproxy" / "haproxy.cfg")],
                            env={**os.environ, **HAPROXY_ENV}, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr
