"""The deploy files agree with each other and with what ftwatch does."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ftwatch.sim import bedrock as bedrock_sim
from ftwatch.sim import cohere as cohere_sim
from ftwatch.sim import openai as openai_sim
from ftwatch.sim.cohere import CohereSimulator

from .conftest import Daemon, free_port, run_cli, run_here, wait_for
from .providers import world

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
CONFIG = DEPLOY.parent / "config"


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


def _secrets_referenced(node: Any) -> set[str]:
    """The Secret names a manifest's documents refer to, wherever they do."""
    if isinstance(node, list):
        return set().union(*(_secrets_referenced(item) for item in node))
    if not isinstance(node, dict):
        return set()
    found = {node["secretName"]} if "secretName" in node else set()
    for key in ("secretKeyRef", "secretRef"):
        if isinstance(node.get(key), dict):
            found.add(node[key]["name"])
    return found.union(*(_secrets_referenced(value) for value in node.values()))


@pytest.mark.parametrize("manifest", sorted(p.name for p in (DEPLOY / "kubernetes").glob("*.yaml")))
def test_no_manifest_ships_a_secret_and_each_one_it_uses_says_how_to_create_it(manifest: str) -> None:
    """A shipped Secret with a placeholder would be written over the user's own by
    `kubectl apply`: none is shipped, and every Secret a manifest mounts or reads is
    named with its `kubectl create secret` command in that manifest or the one it points to."""
    text = (DEPLOY / "kubernetes" / manifest).read_text()
    docs = _docs(manifest)
    assert not [d for d in docs if d.get("kind") == "Secret"]
    told = text + "".join(
        (DEPLOY / "kubernetes" / other).read_text() for other in re.findall(r"see ([\w-]+\.yaml)", text)
    )
    for name in _secrets_referenced(docs):
        assert f"kubectl create secret generic {name}" in told, name


def test_the_sidecar_is_native() -> None:
    """The sidecar is an init container with restartPolicy: Always."""
    pod, container = _ftwatch_container("sidecar.yaml")
    assert container in pod["initContainers"]
    assert container["restartPolicy"] == "Always"
    # Bounded shutdown: ftwatch's grace fits well inside the pod's.
    assert _config()["delivery"]["shutdown_grace_s"] < pod["terminationGracePeriodSeconds"]


def test_systemd_unit_has_what_the_contract_asks() -> None:
    """The unit is Type=notify with a watchdog and no restart on exit 2 or 3; it asks
    for no provider's credential itself (each provider's drop-in does)."""
    unit = (DEPLOY / "systemd" / "ftwatch.service").read_text()
    for line in (
        "Type=notify",
        "NotifyAccess=main",
        "DynamicUser=yes",
        "StateDirectory=ftwatch",
        "Restart=on-failure",
        "RestartPreventExitStatus=2 3",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=",
        "LimitNOFILE=65536",
        "ExecStart=/usr/local/bin/ftwatch run --config /etc/ftwatch/ftwatch.toml",
    ):
        assert line in unit, line
    assert "LoadCredential" not in dict(_directives(unit))


def _directives(text: str) -> list[tuple[str, str]]:
    return [
        (key, value)
        for key, _, value in (line.partition("=") for line in text.splitlines())
        if value and not key.startswith(("#", "["))
    ]


#: What a user puts in each provider's credential file, for the simulator's account.
_CREDENTIAL_FILES = {
    "cohere": f"{cohere_sim.DEFAULT_KEY}\n",
    "openai": f"{openai_sim.DEFAULT_KEY}\n",
    "bedrock": f"[default]\naws_access_key_id = {bedrock_sim.ACCESS_KEY}\n"
    f"aws_secret_access_key = {bedrock_sim.SECRET_KEY}\n",
}


@pytest.mark.parametrize("provider", sorted(_CREDENTIAL_FILES))
def test_each_providers_drop_in_hands_ftwatch_the_credential_it_reads(
    provider: str, quiet_env: dict[str, str], tmp_path: Path
) -> None:
    """Under the unit with a provider's drop-in, that provider's key reaches ftwatch
    from the credential alone: the files are laid out as systemd lays them out
    (``$CREDENTIALS_DIRECTORY/NAME``, ``%d`` for that directory), and `ftwatch models`
    lists the simulator's job; without the credential it is exit 2, no key."""
    drop_in = (DEPLOY / "systemd" / "ftwatch.service.d" / f"{provider}.conf").read_text()
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    unit_env: dict[str, str] = {}
    for key, value in _directives(drop_in):
        if key == "LoadCredential":
            name, _, host_path = value.partition(":")
            assert host_path.startswith("/etc/ftwatch/"), value
            (credentials / name).write_text(_CREDENTIAL_FILES[provider])
        elif key == "Environment":
            variable, _, setting = value.partition("=")
            unit_env[variable] = setting.replace("%d", str(credentials))
        else:
            pytest.fail(f"{provider}.conf: unexpected {key}=")
    with world(provider) as api:
        api.add("tuned", None)
        # The simulator's source, with no key in the environment: only the credential.
        base = {k: v for k, v in api.env(quiet_env, tmp_path).items() if k not in api.credentials(tmp_path)}
        # No instance role and no AWS file of this machine's to fall back on.
        base |= {"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull}
        listed = run_cli(["models", "-o", "json"], base | unit_env | {"CREDENTIALS_DIRECTORY": str(credentials)})
        assert listed.returncode == 0, listed.stderr
        assert [row["id"] for row in json.loads(listed.stdout)] == list(api.simulated.jobs())
        keyless = run_cli(["models"], base | {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")})
        assert keyless.returncode == 2, keyless.stderr


def test_the_units_config_puts_the_state_where_the_unit_and_the_host_find_it(quiet_env: dict[str, str]) -> None:
    """deploy/systemd/ftwatch.toml names its state inside the unit's StateDirectory,
    so `sudo ftwatch status` on the host opens the service's own file; it passes
    check-config as shipped."""
    unit = dict(_directives((DEPLOY / "systemd" / "ftwatch.service").read_text()))
    config_path = DEPLOY / "systemd" / "ftwatch.toml"
    config = tomllib.loads(config_path.read_text())
    assert Path(config["state"]["path"]).parent == Path("/var/lib") / unit["StateDirectory"]
    done = run_here(["check-config", "--offline", "--config", str(config_path)], quiet_env)
    assert done.returncode == 0, done.stderr


def _configmap_configs() -> dict[str, dict[str, Any]]:
    found = {}
    for manifest in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in _docs(manifest.name):
            if doc.get("kind") == "ConfigMap" and "ftwatch.toml" in doc.get("data", {}):
                found[f"{manifest.name}:{doc['metadata']['name']}"] = tomllib.loads(doc["data"]["ftwatch.toml"])
    return found


def test_the_image_installs_every_extra_a_shipped_config_needs() -> None:
    """The Dockerfile's default EXTRAS cover what each shipped manifest and example
    config asks for: PostgreSQL for a state URL (in a ConfigMap or the container's
    environment), botocore for a bedrock source."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    [extras] = re.findall(r"^ARG EXTRAS=(\S*)$", dockerfile, flags=re.MULTILINE)
    assert '".${EXTRAS:+[$EXTRAS]}"' in dockerfile  # and the install uses them
    assert 'org.opencontainers.image.version="${VERSION}"' in dockerfile
    examples = {path.name: tomllib.loads(path.read_text()) for path in sorted(CONFIG.glob("*.toml"))}
    needed = set()
    for config in (_configmap_configs() | examples).values():
        if config.get("state", {}).get("url") or "postgres" in json.dumps(config.get("state", {})):
            needed.add("postgres")
        if any(source.get("type") == "bedrock" for source in config.get("sources", [])):
            needed.add("bedrock")
    if any(
        env["name"] == "FTWATCH_STATE__URL"
        for manifest in ("replicas-postgres.yaml", "sidecar-postgres.yaml")
        for env in _ftwatch_container(manifest)[1].get("env", [])
    ):
        needed.add("postgres")
    assert needed == {"postgres", "bedrock"}  # what the shipped files do ask for today
    assert needed <= set(extras.split(","))


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


PROMETHEUS = DEPLOY / "prometheus"
_PROMTOOL = shutil.which("promtool")
_NO_PROMTOOL = "promtool is not installed: apt-get install prometheus (Debian ships it), as .ci/run does"


@pytest.mark.skipif(_PROMTOOL is None and not os.environ.get("CI"), reason=_NO_PROMTOOL)
@pytest.mark.parametrize(
    "check", [["check", "rules", "ftwatch-rules.yaml"], ["test", "rules", "ftwatch-rules.test.yaml"]]
)
def test_the_alerting_rules_pass_promtool(check: list[str]) -> None:
    """`promtool check rules` (syntax) and `promtool test rules` (each alert fires when
    it should and not before, on series shaped like ftwatch's)."""
    assert _PROMTOOL is not None, _NO_PROMTOOL
    done = subprocess.run([_PROMTOOL, *check], cwd=PROMETHEUS, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _exposed_metric_names(base_env: dict[str, str]) -> set[str]:
    """The names a running daemon's /metrics declares (every family, used or not)."""
    port = free_port()
    env = {**base_env, "FTWATCH_HTTP__LISTEN": f"127.0.0.1:{port}", "FTWATCH_NOTIFIERS": "[]"}
    daemon = Daemon(env)
    try:
        text = wait_for(lambda: _scrape(port), what="/metrics")
    finally:
        daemon.stop()
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else {name}
    return names


def _scrape(port: int) -> str | None:
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    except httpx.HTTPError:
        return None
    return answer.text if "ftwatch_polls_total" in answer.text else None


def _metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"\bftwatch_[a-z_]+", expr))


def test_rules_and_dashboard_use_only_metrics_the_daemon_exposes(
    sim: CohereSimulator, base_env: dict[str, str]
) -> None:
    """Every metric named by an alert or a dashboard panel is one the daemon serves,
    and the dashboard has the panels an operator looks for first."""
    sim.add_model("m", "STATUS_READY")
    exposed = _exposed_metric_names(base_env)
    rules = yaml.safe_load((PROMETHEUS / "ftwatch-rules.yaml").read_text())
    rule_names = {name for group in rules["groups"] for r in group["rules"] for name in _metric_names_in(r["expr"])}
    assert rule_names
    assert rule_names <= exposed, rule_names - exposed
    dashboard = json.loads((DEPLOY / "grafana" / "ftwatch.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    panel_names = {name for expr in exprs for name in _metric_names_in(expr)}
    assert panel_names <= exposed, panel_names - exposed
    for wanted in (
        "ftwatch_polls_total",
        "ftwatch_api_requests_total",
        "ftwatch_poll_cycle_seconds_bucket",
        "ftwatch_transitions_total",
        "ftwatch_notifications_total",
        "ftwatch_outbox_pending",
        "ftwatch_outbox_oldest_pending_seconds",
    ):
        assert wanted in panel_names, wanted
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def test_the_prometheus_rule_manifest_carries_the_same_rules() -> None:
    """The PrometheusRule (Kubernetes) and the rules file (promtool-tested) are one."""
    docs = _docs("monitoring.yaml")
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((PROMETHEUS / "ftwatch-rules.yaml").read_text())
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    service = next(d for d in docs if d["kind"] == "Service")
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    _, container = _ftwatch_container("deployment.yaml")
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
