"""The deploy files agree with each other and with what ftwatch does."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / name).read_text()) if d]


def _config() -> dict[str, Any]:
    [configmap] = _docs("configmap.yaml")
    return tomllib.loads(configmap["data"]["ftwatch.toml"])


def _ftwatch_container(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = next(d for d in _docs(name) if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    containers = pod.get("initContainers", []) + pod["containers"]
    return pod, next(c for c in containers if c["name"] == "ftwatch")


@pytest.mark.parametrize(
    "manifest", ["sidecar.yaml", "deployment.yaml", "replicas-postgres.yaml", "sidecar-postgres.yaml"]
)
def test_probes_match_the_configured_listen_address(manifest: str) -> None:
    """Probe ports and paths in the manifests match the ConfigMap's listen address."""
    _, container = _ftwatch_container(manifest)
    port = int(_config()["http"]["listen"].rpartition(":")[2])
    [declared] = container["ports"]
    assert declared["containerPort"] == port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": declared["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": declared["name"]}


@pytest.mark.parametrize("manifest", ["sidecar.yaml", "deployment.yaml"])
def test_key_state_and_config_paths_are_mounted(manifest: str) -> None:
    """The key, state and config paths the ConfigMap names are mounted in the pod."""
    pod, container = _ftwatch_container(manifest)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    config = _config()
    key_dir = str(Path(config["cohere"]["api_key_file"]).parent)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "secret" in volumes[mounts[key_dir]]  # the key is a mounted Secret, not env
    assert str(Path(config["state"]["path"]).parent) in mounts
    assert "/tmp" in mounts
    assert container["args"][-1] in {f"{p}/ftwatch.toml" for p in mounts}
    assert not any(e["name"].startswith(("CO_", "COHERE_")) for e in container.get("env", []))


@pytest.mark.parametrize("manifest", ["sidecar.yaml", "deployment.yaml"])
def test_restricted_pod_security(manifest: str) -> None:
    """Containers run non-root, read-only, without capabilities, with RuntimeDefault seccomp."""
    pod, container = _ftwatch_container(manifest)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"]["limits"]["memory"]


def test_the_sidecar_is_native() -> None:
    """The sidecar is an init container with restartPolicy: Always."""
    pod, container = _ftwatch_container("sidecar.yaml")
    assert container in pod["initContainers"]
    assert container["restartPolicy"] == "Always"
    # Bounded shutdown: ftwatch's grace fits well inside the pod's.
    assert _config()["delivery"]["shutdown_grace_s"] < pod["terminationGracePeriodSeconds"]


def test_systemd_unit_has_what_the_contract_asks() -> None:
    """The unit is Type=notify with a watchdog, a credential, and no restart on exit 2 or 3."""
    unit = (DEPLOY / "systemd" / "ftwatch.service").read_text()
    for line in (
        "Type=notify",
        "NotifyAccess=main",
        "DynamicUser=yes",
        "StateDirectory=ftwatch",
        "LoadCredential=cohere-api-key:",
        "Restart=on-failure",
        "RestartPreventExitStatus=2 3",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=",
    ):
        assert line in unit, line


@pytest.mark.parametrize("manifest", ["replicas-postgres.yaml", "sidecar-postgres.yaml"])
def test_the_postgres_variants_are_safe_to_scale(manifest: str) -> None:
    """Three replicas, the URL from a Secret (not the ConfigMap), a disruption budget, no volume for state."""
    docs = _docs(manifest)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 3
    _, container = _ftwatch_container(manifest)
    [url] = [e for e in container["env"] if e["name"] == "FTWATCH_STATE__URL"]
    assert url["valueFrom"]["secretKeyRef"] == {"name": "ftwatch-postgres", "key": "url"}
    assert not any(m["name"] == "ftwatch-state" for m in container["volumeMounts"])
    budget = next(d for d in docs if d["kind"] == "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 2
