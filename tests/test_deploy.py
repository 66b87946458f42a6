"""The deploy files agree with each other and with what ftwatch does."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ftwatch.sim import azure_openai as azure_sim
from ftwatch.sim import bedrock as bedrock_sim
from ftwatch.sim import cohere as cohere_sim
from ftwatch.sim import fireworks as fireworks_sim
from ftwatch.sim import openai as openai_sim
from ftwatch.sim import together as together_sim
from ftwatch.sim.cohere import CohereSimulator

from .conftest import Daemon, free_port, http_get, run_cli, run_here, wait_for
from .providers import world

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
CONFIG = DEPLOY.parent / "config"


KUSTOMIZE = DEPLOY / "kustomize"
_KUBECTL = shutil.which("kubectl")
_NO_KUBECTL = "kubectl is not installed: apt-get install kubectl (its Kustomize renders the variants), as .ci/run does"
needs_kubectl = pytest.mark.skipif(_KUBECTL is None and not os.environ.get("CI"), reason=_NO_KUBECTL)

#: Every variant a user can build from deploy/kustomize: each overlay, with each
#: provider's ConfigMap (OpenAI's is the default), and monitoring where there is a
#: Service to scrape.
VARIANTS = [
    (overlay, provider, overlay in ("sqlite", "postgres"))
    for overlay in ("sqlite", "postgres", "sidecar", "sidecar-postgres")
    for provider in ("openai", "cohere", "bedrock", "together", "fireworks", "azure_openai", "vertex")
]
_IDS = [f"{overlay}-{provider}" for overlay, provider, _ in VARIANTS]
#: The Prometheus Operator's kinds: no schema of Kubernetes' own to validate them by.
_CRDS = {"ServiceMonitor", "PrometheusRule"}


@functools.cache
def _rendered(overlay: str, provider: str = "openai", monitoring: bool = False) -> tuple[dict[str, Any], ...]:
    """What `kubectl kustomize` makes of the user's kustomization for this variant: the
    overlay, plus the provider's component and monitoring, as a user would list them."""
    assert _KUBECTL is not None, _NO_KUBECTL
    components = [f"components/{provider}"] * (provider != "openai") + ["components/monitoring"] * monitoring
    with tempfile.TemporaryDirectory() as tmp:

        def relative(path: str) -> str:
            return os.path.relpath(KUSTOMIZE / path, tmp)

        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [relative(f"overlays/{overlay}")],
            "components": [relative(c) for c in components],
        }
        (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        done = subprocess.run([_KUBECTL, "kustomize", tmp], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def _config(docs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    [configmap] = [d for d in docs if d["kind"] == "ConfigMap"]
    return tomllib.loads(configmap["data"]["ftwatch.toml"])


def _ftwatch_container(docs: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    containers = pod.get("initContainers", []) + pod["containers"]
    return pod, next(c for c in containers if c["name"] == "ftwatch")


@needs_kubectl
@pytest.mark.parametrize(("overlay", "provider", "monitoring"), VARIANTS, ids=_IDS)
def test_every_variant_renders_and_is_valid_kubernetes(overlay: str, provider: str, monitoring: bool) -> None:
    """Each variant renders with kubectl's Kustomize, and every object of it passes
    kubernetes-validate (strict: no unknown field) but the operator's CRDs."""
    docs = _rendered(overlay, provider, monitoring)
    assert {d["kind"] for d in docs} >= {"ConfigMap", "Deployment"}
    for doc in docs:
        if doc["kind"] not in _CRDS:
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    assert _config(docs)["sources"][0]["type"] == provider


@needs_kubectl
@pytest.mark.parametrize(("overlay", "provider", "monitoring"), VARIANTS, ids=_IDS)
def test_probes_mounts_and_security_match_the_config(overlay: str, provider: str, monitoring: bool) -> None:
    """The probes use the ConfigMap's listen port; the config, the key files (a
    mounted Secret, never env) and the state path are mounted; the container runs
    non-root, read-only, without capabilities, with RuntimeDefault seccomp."""
    docs = _rendered(overlay, provider, monitoring)
    pod, container = _ftwatch_container(docs)
    config = _config(docs)
    port = int(config["http"]["listen"].rpartition(":")[2])
    [declared] = container["ports"]
    assert declared["containerPort"] == port
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"path": path, "port": declared["name"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert container["args"][-1] in {f"{p}/ftwatch.toml" for p in mounts}
    key_files = [
        v for table in [*config["sources"], *config["notifiers"]] for k, v in table.items() if k.endswith("_file")
    ]
    assert key_files
    for key_file in key_files:
        assert "secret" in volumes[mounts[str(Path(key_file).parent)]], key_file
    on_postgres = overlay.endswith("postgres")
    assert (str(Path(config["state"]["path"]).parent) in mounts) is not on_postgres
    assert "/tmp" in mounts
    assert not any(e["name"].endswith(("API_KEY", "SECRET_ACCESS_KEY")) for e in container.get("env", []))
    assert (pod["securityContext"].get("runAsNonRoot") or container["securityContext"].get("runAsNonRoot")) is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
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


@needs_kubectl
@pytest.mark.parametrize(("overlay", "provider", "monitoring"), VARIANTS, ids=_IDS)
def test_no_variant_ships_a_secret_and_each_one_it_uses_says_how_to_create_it(
    overlay: str, provider: str, monitoring: bool
) -> None:
    """A shipped Secret with a placeholder would be written over the user's own by
    `kubectl apply`: none is shipped. Each Secret a variant mounts or reads is named
    with its `kubectl create secret` command in the files the variant is built from,
    and every key file its config reads is one `--from-file` of that command."""
    docs = _rendered(overlay, provider, monitoring)
    assert not [d for d in docs if d["kind"] == "Secret"]
    told = "".join(p.read_text() for p in sorted(KUSTOMIZE.rglob("*")) if p.is_file())
    for name in _secrets_referenced(docs):
        assert f"kubectl create secret generic {name}" in told, name
    config_text = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["ftwatch.toml"]
    for key_file in re.findall(r'_file = "/var/run/secrets/ftwatch/([^"]+)"', config_text):
        assert f"--from-file={key_file}=" in config_text, key_file


@needs_kubectl
@pytest.mark.parametrize("overlay", ["sidecar", "sidecar-postgres"])
def test_the_sidecar_is_a_native_one_patched_into_the_workload(overlay: str) -> None:
    """The sidecar is an init container with restartPolicy: Always, added to the
    workload's own pod (its container kept), with a shutdown that fits its grace."""
    docs = _rendered(overlay)
    pod, container = _ftwatch_container(docs)
    assert container in pod["initContainers"]
    assert container["restartPolicy"] == "Always"
    assert [c["name"] for c in pod["containers"]] == ["trainer"]
    assert _config(docs)["delivery"]["shutdown_grace_s"] < pod["terminationGracePeriodSeconds"]


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
    "azure_openai": f"{azure_sim.DEFAULT_KEY}\n",
    "together": f"{together_sim.DEFAULT_KEY}\n",
    "fireworks": f"{fireworks_sim.DEFAULT_KEY}\n",
    "bedrock": f"[default]\naws_access_key_id = {bedrock_sim.ACCESS_KEY}\n"
    f"aws_secret_access_key = {bedrock_sim.SECRET_KEY}\n",
}


@pytest.mark.parametrize("provider", [*sorted(_CREDENTIAL_FILES), "vertex"])
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
    with world(provider) as api:
        unit_env: dict[str, str] = {}
        for key, value in _directives(drop_in):
            if key == "LoadCredential":
                name, _, host_path = value.partition(":")
                assert host_path.startswith("/etc/ftwatch/"), value
                # What the user puts there: a key, an AWS file, a service account's key file.
                content = api.sim.service_account_json() if provider == "vertex" else _CREDENTIAL_FILES[provider]
                (credentials / name).write_text(content)
            elif key == "Environment":
                variable, _, setting = value.partition("=")
                unit_env[variable] = setting.replace("%d", str(credentials))
            else:
                pytest.fail(f"{provider}.conf: unexpected {key}=")
        api.add("tuned", None)
        # The simulator's source, with no key in the environment: only the credential.
        keys = api.credentials(tmp_path)
        base = {k: v for k, v in api.env(quiet_env, tmp_path).items() if k not in keys}
        # No instance role, no metadata server and no AWS file of this machine's to fall back on.
        base |= {"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull}
        base |= {"NO_GCE_CHECK": "true", "GCE_METADATA_HOST": "127.0.0.1:9"}
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


@needs_kubectl
def test_the_image_installs_every_extra_a_shipped_config_needs() -> None:
    """The Dockerfile's default EXTRAS cover what each Kustomize variant and example
    config asks for: PostgreSQL for a state URL (in a ConfigMap or the container's
    environment), botocore for a bedrock source, google-auth for a vertex one."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    [extras] = re.findall(r"^ARG EXTRAS=(\S*)$", dockerfile, flags=re.MULTILINE)
    assert '".${EXTRAS:+[$EXTRAS]}"' in dockerfile  # and the install uses them
    assert 'org.opencontainers.image.version="${VERSION}"' in dockerfile
    configs = [tomllib.loads(path.read_text()) for path in sorted(CONFIG.glob("*.toml"))]
    needed = set()
    for variant in VARIANTS:
        docs = _rendered(*variant)
        configs.append(_config(docs))
        if any(env["name"] == "FTWATCH_STATE__URL" for env in _ftwatch_container(docs)[1].get("env", [])):
            needed.add("postgres")
    for config in configs:
        if config.get("state", {}).get("url") or "postgres" in json.dumps(config.get("state", {})):
            needed.add("postgres")
        for extra in ("bedrock", "vertex"):
            if any(source.get("type") == extra for source in config.get("sources", [])):
                needed.add(extra)
    assert needed == {"postgres", "bedrock", "vertex"}  # what the shipped files do ask for today
    assert needed <= set(extras.split(","))


@needs_kubectl
@pytest.mark.parametrize("overlay", ["postgres", "sidecar-postgres"])
def test_the_postgres_variants_are_safe_to_scale(overlay: str) -> None:
    """The URL from a Secret (not the ConfigMap), no volume for state; the replicas
    of overlays/postgres are three, with a disruption budget keeping two."""
    docs = _rendered(overlay)
    pod, container = _ftwatch_container(docs)
    [url] = [e for e in container["env"] if e["name"] == "FTWATCH_STATE__URL"]
    assert url["valueFrom"]["secretKeyRef"] == {"name": "ftwatch-postgres", "key": "url"}
    assert not any(m["name"] == "ftwatch-state" for m in container["volumeMounts"])
    assert not any(v["name"] == "ftwatch-state" for v in pod["volumes"])
    if overlay == "postgres":
        deployment = next(d for d in docs if d["kind"] == "Deployment")
        assert deployment["spec"]["replicas"] == 3
        assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
        budget = next(d for d in docs if d["kind"] == "PodDisruptionBudget")
        assert budget["spec"]["minAvailable"] == 2
    else:
        assert next(d for d in docs if d["kind"] == "Deployment")["spec"]["replicas"] >= 1


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
    answer = http_get(f"http://127.0.0.1:{port}/metrics")
    return answer.text if answer is not None and "ftwatch_polls_total" in answer.text else None


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


@needs_kubectl
def test_the_prometheus_rule_manifest_carries_the_same_rules() -> None:
    """The PrometheusRule (Kubernetes) and the rules file (promtool-tested) are one;
    the ServiceMonitor scrapes the Service's port, which is the container's."""
    docs = _rendered("sqlite", "openai", monitoring=True)
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((PROMETHEUS / "ftwatch-rules.yaml").read_text())
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    service = next(d for d in docs if d["kind"] == "Service")
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    _, container = _ftwatch_container(docs)
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
