"""Assertions on the rendered shotgun-cache chart, and the values it must refuse.

Run through scripts/test-chart, which provides helm (HELM=/path/to/helm). Every render here is a
`helm template` of charts/shotgun-cache with one of its ci/*.yaml values files (plus --set tweaks),
parsed with PyYAML. The config contract (docs/config-contract.md) is read from the repository, so
these tests follow it when it changes.
"""

from __future__ import annotations

import base64
import functools
import os
import pathlib
import re
import shutil
import subprocess
import tomllib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "shotgun-cache"
CONTRACT = ROOT / "docs" / "config-contract.md"
CI_DIR = CHART / "ci"
CI_FILES = sorted(p.name for p in CI_DIR.glob("*.yaml"))
DEFAULT = "default-values.yaml"
RELEASE = "rel"
NAMESPACE = "studio"

HELM = os.environ.get("HELM") or shutil.which("helm")


# ---------------------------------------------------------------------------------------------
# helpers


def _helm(*args: str, chart: pathlib.Path = CHART) -> subprocess.CompletedProcess:
    if not HELM:
        pytest.fail("helm not found: run scripts/test-chart, or set HELM=/path/to/helm")
    cmd = [HELM, *args]
    cmd = [str(chart) if a == "@chart" else a for a in cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def template(*values: str, sets: tuple[str, ...] = (), extra: tuple[str, ...] = (),
             chart: pathlib.Path = CHART) -> subprocess.CompletedProcess:
    args = ["template", RELEASE, "@chart", "--namespace", NAMESPACE]
    for v in values:
        args += ["-f", str(v if os.path.isabs(str(v)) else CI_DIR / v)]
    for s in sets:
        args += ["--set", s]
    return _helm(*args, *extra, chart=chart)


def render(*values: str, sets: tuple[str, ...] = (), extra: tuple[str, ...] = (),
           chart: pathlib.Path = CHART) -> list[dict]:
    res = template(*values, sets=sets, extra=extra, chart=chart)
    assert res.returncode == 0, f"helm template failed:\n{res.stderr}"
    return [d for d in yaml.safe_load_all(res.stdout) if d]


@functools.lru_cache(maxsize=None)
def render_ci(name: str) -> tuple[dict, ...]:
    return tuple(render(name))


def ci_values(name: str) -> dict:
    return yaml.safe_load((CI_DIR / name).read_text()) or {}


def docs_of(docs, kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind: str, component: str | None = None) -> dict:
    found = [d for d in docs_of(docs, kind)
             if component is None or d["metadata"]["labels"].get("app.kubernetes.io/component") == component]
    assert len(found) == 1, f"expected one {kind} {component or ''}, found {len(found)}"
    return found[0]


def deployment(docs, component: str) -> dict:
    return one(docs, "Deployment", component)


def container(dep: dict) -> dict:
    cs = dep["spec"]["template"]["spec"]["containers"]
    assert len(cs) == 1
    return cs[0]


def config_toml(docs) -> dict:
    cms = docs_of(docs, "ConfigMap")
    assert len(cms) == 1
    return tomllib.loads(cms[0]["data"]["config.toml"])


def env_map(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env", [])}


def pods(docs) -> list[tuple[dict, dict]]:
    """(metadata, pod spec) of every pod template and bare pod."""
    out = []
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            out.append((d["spec"]["template"]["metadata"], d["spec"]["template"]["spec"]))
        elif d["kind"] == "Pod":
            out.append((d["metadata"], d["spec"]))
    return out


@functools.lru_cache(maxsize=None)
def contract() -> tuple[dict, set[str]]:
    """The example TOML of the contract, and every SHOTGUN_CACHE_* secret variable it names."""
    text = CONTRACT.read_text()
    block = re.search(r"```toml\n(.*?)```", text, re.S)
    assert block, "no TOML example in docs/config-contract.md"
    example = tomllib.loads(block.group(1))
    variables = set(re.findall(r"`(SHOTGUN_CACHE_[A-Z0-9_]+)`", text))
    return example, variables


def all_strings(obj) -> list[str]:
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in all_strings(v)] + [str(k) for k in obj]
    if isinstance(obj, list):
        return [s for v in obj for s in all_strings(v)]
    return [str(obj)] if obj is not None else []


SECRET_SENTINELS = {
    "shotgun.scriptKey": "SENTINEL-script-key-7f3a",
    "store.rethinkdb.password": "SENTINEL-rdb-pass-91c2",
    "auth.tokens[0]": "SENTINEL-token-one-44d1",
    "auth.tokens[1]": "SENTINEL-token-two-0b8e",
    "syncer.webhook.secret": "SENTINEL-webhook-c5a0",
    "api3.clients[0].name": "maya",
    "api3.clients[0].key": "SENTINEL-api3-key-e6f9",
}


def sentinel_sets() -> tuple[str, ...]:
    return tuple(f"{k}={v}" for k, v in SECRET_SENTINELS.items()) + (
        "shotgun.url=https://studio.shotgunstudio.com", "auth.required=true")


# ---------------------------------------------------------------------------------------------
# every ci values file


@pytest.mark.parametrize("ci", CI_FILES)
def test_config_follows_the_contract(ci):
    """config.toml parses, uses only sections and keys of docs/config-contract.md, and its
    listen addresses match the container ports."""
    docs = render_ci(ci)
    cfg = config_toml(docs)
    example, _ = contract()
    for section, body in cfg.items():
        assert section in example, f"[{section}] is not in the contract"
        if section == "types":
            allowed = set(next(iter(example["types"].values())))
            for tname, tbody in body.items():
                assert set(tbody) <= allowed, f"types.{tname}: {set(tbody) - allowed} not in the contract"
                assert "fields" in tbody
            continue
        extra = set(body) - set(example[section])
        assert not extra, f"[{section}] keys {extra} are not in the contract"
    assert cfg["site"]["url"].startswith("https://")
    assert cfg["site"]["script_name"]
    assert cfg["store"]["backend"] in ("sqlite", "rethinkdb")

    syncer = container(deployment(docs, "syncer"))
    qs = container(deployment(docs, "query-server"))
    sports = {p["name"]: p["containerPort"] for p in syncer["ports"]}
    qports = {p["name"]: p["containerPort"] for p in qs["ports"]}
    assert cfg["syncer"]["admin_listen"] == f"0.0.0.0:{sports['admin']}"
    assert cfg["syncer"]["grpc_listen"] == f"0.0.0.0:{sports['grpc']}"
    assert cfg["query_server"]["grpc_listen"] == f"0.0.0.0:{qports['grpc']}"
    assert cfg["query_server"]["admin_listen"] == f"0.0.0.0:{qports['admin']}"
    assert cfg["query_server"]["http_listen"] == f"0.0.0.0:{qports['http']}"


@pytest.mark.parametrize("ci", CI_FILES)
def test_commands_follow_the_contract(ci):
    docs = render_ci(ci)
    s = container(deployment(docs, "syncer"))
    q = container(deployment(docs, "query-server"))
    assert s["command"] == ["/usr/local/bin/shotgun-cache-syncer"]
    assert s["args"] == ["run", "--config", "/etc/shotgun-cache/config.toml"]
    assert q["command"] == ["/usr/local/bin/shotgun-cache-query-server"]
    assert q["args"] == ["--config", "/etc/shotgun-cache/config.toml"]
    for c in (s, q):
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert mounts["/etc/shotgun-cache/config.toml"]["readOnly"] is True
        assert "/tmp" in mounts, "a writable /tmp is needed with a read-only root filesystem"


@pytest.mark.parametrize("ci", CI_FILES)
def test_probes_present(ci):
    docs = render_ci(ci)
    s = container(deployment(docs, "syncer"))
    assert s["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert s["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    q = container(deployment(docs, "query-server"))
    grpc_port = next(p["containerPort"] for p in q["ports"] if p["name"] == "grpc")
    assert q["livenessProbe"]["grpc"] == {"port": grpc_port, "service": ""}
    assert q["readinessProbe"]["grpc"] == {"port": grpc_port, "service": "shotgun_cache.v1.QueryService"}
    for c in (s, q):
        for probe in ("livenessProbe", "readinessProbe"):
            assert c[probe]["periodSeconds"] >= 1


@pytest.mark.parametrize("ci", CI_FILES)
def test_syncer_is_a_singleton(ci):
    dep = deployment(render_ci(ci), "syncer")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize("ci", CI_FILES)
def test_selectors_match_pods_and_omit_versions(ci):
    docs = render_ci(ci)
    pod_labels = {}
    for comp in ("syncer", "query-server"):
        dep = deployment(docs, comp)
        sel = dep["spec"]["selector"]["matchLabels"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert sel.items() <= labels.items()
        assert sel == {"app.kubernetes.io/name": "shotgun-cache", "app.kubernetes.io/instance": RELEASE,
                       "app.kubernetes.io/component": comp}
        pod_labels[comp] = labels
    for svc in docs_of(docs, "Service"):
        sel = svc["spec"]["selector"]
        matched = [c for c, labels in pod_labels.items() if sel.items() <= labels.items()]
        assert len(matched) == 1, f"Service {svc['metadata']['name']} selects {matched}"
        assert matched[0] == svc["metadata"]["labels"]["app.kubernetes.io/component"]
    for d in docs:
        for sel in _selectors(d):
            assert "helm.sh/chart" not in sel and "app.kubernetes.io/version" not in sel, d["metadata"]["name"]


def _selectors(d: dict) -> list[dict]:
    spec = d.get("spec", {})
    out = []
    if d["kind"] in ("Deployment", "PodDisruptionBudget", "ServiceMonitor"):
        out.append(spec["selector"].get("matchLabels", {}))
    if d["kind"] == "Service":
        out.append(spec["selector"])
    if d["kind"] == "NetworkPolicy":
        out.append(spec["podSelector"]["matchLabels"])
    return out


@pytest.mark.parametrize("ci", CI_FILES)
def test_selectors_stable_across_upgrades(ci, tmp_path):
    """A new chart version, app version and image tag must not change any selector (they are
    immutable on a Deployment, so a change would break `helm upgrade`)."""
    before = render_ci(ci)
    bumped = tmp_path / "shotgun-cache"
    shutil.copytree(CHART, bumped)
    chart_yaml = bumped / "Chart.yaml"
    text = chart_yaml.read_text()
    text = re.sub(r"(?m)^version: .*$", "version: 9.8.7", text)
    text = re.sub(r'(?m)^appVersion: .*$', 'appVersion: "9.9.9"', text)
    chart_yaml.write_text(text)
    after = render(ci, sets=("image.tag=9.9.9-rc1",), chart=bumped)

    def selectors(docs):
        return {(d["kind"], d["metadata"]["name"]): _selectors(d) for d in docs if _selectors(d)}

    assert selectors(before) == selectors(after)
    # the version really changed elsewhere, so the comparison is meaningful
    dep = deployment(after, "query-server")
    assert dep["metadata"]["labels"]["helm.sh/chart"] == "shotgun-cache-9.8.7"


@pytest.mark.parametrize("ci", CI_FILES)
def test_no_secret_value_in_any_configmap(ci):
    docs = render_ci(ci)
    values = ci_values(ci)
    inline = [v for v in all_strings({
        "k": values.get("shotgun", {}).get("scriptKey"),
        "p": values.get("store", {}).get("rethinkdb", {}).get("password"),
        "t": values.get("auth", {}).get("tokens"),
        "w": values.get("syncer", {}).get("webhook", {}).get("secret"),
        "a": [c.get("key") for c in values.get("api3", {}).get("clients", [])],
    }) if v and v not in ("k", "p", "t", "w", "a")]
    for cm in docs_of(docs, "ConfigMap"):
        blob = yaml.safe_dump(cm)
        for secret in inline:
            assert secret not in blob
        assert not re.search(r"(?im)^\s*(script_key|rethinkdb_password|tokens|webhook_secret|clients)\s*=",
                             cm["data"]["config.toml"])


def test_no_secret_value_outside_secrets_with_every_secret_inline():
    """Every secret given inline lands in the chart's Secret and nowhere else, in env mode and in
    file mode; pods get them only by reference."""
    for mode in ("env", "file"):
        docs = render(sets=sentinel_sets() + (f"secretDelivery={mode}",))
        secrets = docs_of(docs, "Secret")
        assert len(secrets) == 1
        decoded = {k: base64.b64decode(v).decode() for k, v in secrets[0]["data"].items()}
        joined = "\n".join(decoded.values())
        for name, value in SECRET_SENTINELS.items():
            if value.startswith("SENTINEL"):
                assert value in joined, f"{name} missing from the Secret"
        sep = "\n" if mode == "file" else ","
        assert decoded["auth-tokens"] == sep.join([SECRET_SENTINELS["auth.tokens[0]"], SECRET_SENTINELS["auth.tokens[1]"]])
        assert decoded["api3-clients"] == "maya:" + SECRET_SENTINELS["api3.clients[0].key"]
        for d in docs:
            if d["kind"] == "Secret":
                continue
            blob = yaml.safe_dump(d)
            for value in SECRET_SENTINELS.values():
                if value.startswith("SENTINEL"):
                    assert value not in blob, f"{value} leaked into {d['kind']} {d['metadata']['name']}"
                    b64 = base64.b64encode(value.encode()).decode()
                    assert b64 not in blob


def test_secret_env_follows_the_contract():
    _, variables = contract()
    for mode, suffix in (("env", ""), ("file", "_FILE")):
        docs = render(sets=sentinel_sets() + (f"secretDelivery={mode}",))
        syncer = env_map(container(deployment(docs, "syncer")))
        qs = env_map(container(deployment(docs, "query-server")))
        for envs in (syncer, qs):
            for name, e in envs.items():
                if name.startswith("SHOTGUN_CACHE_") and name != "SHOTGUN_CACHE_LOG_FORMAT":
                    assert name in variables, f"{name} is not a variable of the contract"
                    if mode == "env":
                        assert "secretKeyRef" in e["valueFrom"] and "value" not in e
                    else:
                        assert e["value"].startswith("/etc/shotgun-cache/secrets/")
        expect_syncer = {"SHOTGUN_CACHE_SITE__SCRIPT_KEY", "SHOTGUN_CACHE_STORE__RETHINKDB_PASSWORD",
                         "SHOTGUN_CACHE_AUTH__TOKENS", "SHOTGUN_CACHE_SYNCER__WEBHOOK_SECRET"}
        expect_qs = {"SHOTGUN_CACHE_SITE__SCRIPT_KEY", "SHOTGUN_CACHE_STORE__RETHINKDB_PASSWORD",
                     "SHOTGUN_CACHE_AUTH__TOKENS", "SHOTGUN_CACHE_API3__CLIENTS"}
        assert {n for n in syncer if n.startswith("SHOTGUN_CACHE_") and n != "SHOTGUN_CACHE_LOG_FORMAT"} == {
            v + suffix for v in expect_syncer}
        assert {n for n in qs if n.startswith("SHOTGUN_CACHE_") and n != "SHOTGUN_CACHE_LOG_FORMAT"} == {
            v + suffix for v in expect_qs}


@pytest.mark.parametrize("ci", CI_FILES)
def test_hpa_targets_the_query_server(ci):
    docs = render_ci(ci)
    values = ci_values(ci)
    qs = deployment(docs, "query-server")
    hpas = docs_of(docs, "HorizontalPodAutoscaler")
    autoscaling = values.get("queryServer", {}).get("autoscaling", {}).get("enabled", True)
    if not autoscaling:
        assert hpas == []
        assert qs["spec"]["replicas"] == values["queryServer"]["replicas"]
        return
    assert len(hpas) == 1
    hpa = hpas[0]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": qs["metadata"]["name"]}
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "replicas" not in qs["spec"], "with an HPA the Deployment must not set replicas"
    assert container(qs)["resources"]["requests"]["cpu"]


@pytest.mark.parametrize("ci", CI_FILES)
def test_security_context(ci):
    for meta, spec in pods(render_ci(ci)):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert "resources" in c
    for comp in ("syncer", "query-server"):
        spec = deployment(render_ci(ci), comp)["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsUser"] == 10001


@pytest.mark.parametrize("ci", CI_FILES)
def test_no_service_link_variables(ci):
    """Service links would put SHOTGUN_CACHE_<SERVICE>_PORT... variables into the environment of
    a release named shotgun-cache, in the namespace of the services' config overrides."""
    for comp in ("syncer", "query-server"):
        assert deployment(render_ci(ci), comp)["spec"]["template"]["spec"]["enableServiceLinks"] is False


@pytest.mark.parametrize("ci", CI_FILES)
def test_query_server_drains_before_it_is_killed(ci):
    docs = render_ci(ci)
    cfg = config_toml(docs)
    spec = deployment(docs, "query-server")["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] > cfg["query_server"]["drain_secs"]


@pytest.mark.parametrize("ci", CI_FILES)
def test_checksum_annotations(ci):
    docs = render_ci(ci)
    for comp in ("syncer", "query-server"):
        ann = deployment(docs, comp)["spec"]["template"]["metadata"]["annotations"]
        assert re.fullmatch(r"[0-9a-f]{64}", ann["checksum/config"])
        assert re.fullmatch(r"[0-9a-f]{64}", ann["checksum/secret"])


def test_config_change_rolls_the_pods_and_nothing_else_does():
    base = render(DEFAULT)
    changed = render(DEFAULT, sets=("syncer.config.poll_interval_ms=2000",))
    same = render(DEFAULT, sets=("image.tag=other",))
    rotated = render(DEFAULT, sets=("shotgun.scriptKey=rotated-key",))

    def checks(docs, comp, key):
        return deployment(docs, comp)["spec"]["template"]["metadata"]["annotations"][key]

    for comp in ("syncer", "query-server"):
        assert checks(base, comp, "checksum/config") != checks(changed, comp, "checksum/config")
        assert checks(base, comp, "checksum/config") == checks(same, comp, "checksum/config")
        assert checks(base, comp, "checksum/secret") != checks(rotated, comp, "checksum/secret")
    assert "poll_interval_ms = 2000" in one(changed, "ConfigMap")["data"]["config.toml"]


@pytest.mark.parametrize("ci", CI_FILES)
def test_services_and_ports(ci):
    docs = render_ci(ci)
    values = ci_values(ci)
    qs = container(deployment(docs, "query-server"))
    names = {p["name"] for p in qs["ports"]}
    services = {s["metadata"]["name"]: s for s in docs_of(docs, "Service")}
    qname = deployment(docs, "query-server")["metadata"]["name"]
    main = services[qname]
    assert {p["name"] for p in main["spec"]["ports"]} == {"grpc", "http"}
    assert all(p["targetPort"] in names for p in main["spec"]["ports"])
    assert next(p for p in main["spec"]["ports"] if p["name"] == "grpc")["appProtocol"] == "grpc"
    if values.get("queryServer", {}).get("headlessService", {}).get("enabled", True):
        headless = services[qname + "-headless"]
        assert headless["spec"]["clusterIP"] == "None"
        assert "grpc" in {p["name"] for p in headless["spec"]["ports"]}
    sname = deployment(docs, "syncer")["metadata"]["name"]
    assert {p["name"] for p in services[sname]["spec"]["ports"]} == {"admin", "grpc"}


@pytest.mark.parametrize("ci", CI_FILES)
def test_pdb_selects_query_servers(ci):
    docs = render_ci(ci)
    values = ci_values(ci)
    pdbs = docs_of(docs, "PodDisruptionBudget")
    if not values.get("queryServer", {}).get("pdb", {}).get("enabled", True):
        assert pdbs == []
        return
    assert len(pdbs) == 1
    qs = deployment(docs, "query-server")
    assert pdbs[0]["spec"]["selector"] == qs["spec"]["selector"]
    assert ("minAvailable" in pdbs[0]["spec"]) != ("maxUnavailable" in pdbs[0]["spec"])


@pytest.mark.parametrize("ci", CI_FILES)
def test_helm_test_pod_calls_the_health_check(ci):
    docs = render_ci(ci)
    tests = [d for d in docs_of(docs, "Pod") if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    assert len(tests) == 1
    script = " ".join(tests[0]["spec"]["containers"][0]["args"])
    assert "grpc.health.v1.Health/Check" in script
    assert "shotgun_cache.v1.QueryService" in script
    qname = deployment(docs, "query-server")["metadata"]["name"]
    assert f"{qname}:" in script
    assert "/healthz" in script


# ---------------------------------------------------------------------------------------------
# one scenario each


def test_defaults_use_rethinkdb_and_autoscale():
    docs = render_ci(DEFAULT)
    cfg = config_toml(docs)
    assert cfg["store"] == {"backend": "rethinkdb", "rethinkdb_address": "rethinkdb:28015",
                            "rethinkdb_database": "shotgun_cache", "rethinkdb_user": "admin",
                            "rethinkdb_timeout_secs": 10}
    assert docs_of(docs, "PersistentVolumeClaim") == []
    assert len(docs_of(docs, "HorizontalPodAutoscaler")) == 1
    for kind in ("ServiceMonitor", "NetworkPolicy", "Ingress"):
        assert docs_of(docs, kind) == [], f"{kind} should be off by default"
    assert cfg["auth"] == {"required": False}
    syncer = deployment(docs, "syncer")["metadata"]["name"]
    assert cfg["api3"] == {"forward": True, "syncer_url": f"http://{syncer}.{NAMESPACE}.svc:50052"}
    services = {s["metadata"]["name"] for s in docs_of(docs, "Service")}
    assert syncer in services


def test_rethinkdb_with_existing_secrets():
    docs = render_ci("rethinkdb-existing-secrets-values.yaml")
    assert docs_of(docs, "Secret") == [], "no chart Secret when every secret already exists"
    syncer = env_map(container(deployment(docs, "syncer")))
    qs = env_map(container(deployment(docs, "query-server")))

    def ref(envs, name):
        return envs[name]["valueFrom"]["secretKeyRef"]

    assert ref(syncer, "SHOTGUN_CACHE_SITE__SCRIPT_KEY") == {"name": "shotgun-site", "key": "key"}
    assert ref(syncer, "SHOTGUN_CACHE_STORE__RETHINKDB_PASSWORD") == {"name": "rethinkdb-credentials", "key": "password"}
    assert ref(syncer, "SHOTGUN_CACHE_AUTH__TOKENS") == {"name": "shotgun-cache-tokens", "key": "auth-tokens"}
    assert ref(syncer, "SHOTGUN_CACHE_SYNCER__WEBHOOK_SECRET") == {"name": "shotgun-webhook", "key": "webhook-secret"}
    assert ref(qs, "SHOTGUN_CACHE_API3__CLIENTS") == {"name": "shotgun-cache-api3", "key": "api3-clients"}
    assert ref(qs, "SHOTGUN_CACHE_STORE__RETHINKDB_PASSWORD") == {"name": "rethinkdb-credentials", "key": "password"}
    assert "SHOTGUN_CACHE_SYNCER__WEBHOOK_SECRET" not in qs
    assert "SHOTGUN_CACHE_API3__CLIENTS" not in syncer
    cfg = config_toml(docs)
    assert cfg["store"]["rethinkdb_address"] == "rethinkdb-proxy.databases.svc.cluster.local:28015"
    assert cfg["auth"]["required"] is True
    # type filters round-trip from YAML to TOML
    values = ci_values("rethinkdb-existing-secrets-values.yaml")
    assert cfg["types"] == values["types"]


def test_embedded_sqlite_single_node():
    docs = render_ci("embedded-sqlite-values.yaml")
    cfg = config_toml(docs)
    assert cfg["store"] == {"backend": "sqlite", "sqlite_path": "/data/shotgun-cache.db"}
    pvc = one(docs, "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert pvc["spec"]["storageClassName"] == "standard"
    syncer = deployment(docs, "syncer")
    qs = deployment(docs, "query-server")
    for dep in (syncer, qs):
        vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        assert vols["data"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
        mounts = {m["name"]: m for m in container(dep)["volumeMounts"]}
        assert mounts["data"]["mountPath"] == "/data"
    assert qs["spec"]["replicas"] == 1
    assert docs_of(docs, "HorizontalPodAutoscaler") == []
    terms = qs["spec"]["template"]["spec"]["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms == [{"labelSelector": {"matchLabels": syncer["spec"]["selector"]["matchLabels"]},
                      "topologyKey": "kubernetes.io/hostname"}]
    assert "SHOTGUN_CACHE_STORE__RETHINKDB_PASSWORD" not in env_map(container(syncer))


def test_sqlite_existing_claim_and_no_storage_class():
    docs = render("embedded-sqlite-values.yaml", sets=("store.sqlite.persistence.existingClaim=cache-data",))
    assert docs_of(docs, "PersistentVolumeClaim") == []
    vols = {v["name"]: v for v in deployment(docs, "syncer")["spec"]["template"]["spec"]["volumes"]}
    assert vols["data"]["persistentVolumeClaim"]["claimName"] == "cache-data"
    docs = render("embedded-sqlite-values.yaml", sets=("store.sqlite.persistence.storageClass=-",))
    assert one(docs, "PersistentVolumeClaim")["spec"]["storageClassName"] == ""


def test_autoscaling_off_with_file_secrets():
    docs = render_ci("autoscaling-off-values.yaml")
    qs = deployment(docs, "query-server")
    assert qs["spec"]["replicas"] == 3
    assert docs_of(docs, "HorizontalPodAutoscaler") == []
    assert docs_of(docs, "PodDisruptionBudget") == []
    envs = env_map(container(qs))
    assert envs["SHOTGUN_CACHE_AUTH__TOKENS_FILE"]["value"] == "/etc/shotgun-cache/secrets/auth-tokens"
    assert "SHOTGUN_CACHE_AUTH__TOKENS" not in envs
    assert "SHOTGUN_CACHE_SITE__SCRIPT_KEY_FILE" not in envs, "api3.forward=false: no script key for the query-server"
    vols = {v["name"]: v for v in qs["spec"]["template"]["spec"]["volumes"]}
    paths = {item["path"] for src in vols["secrets"]["projected"]["sources"] for item in src["secret"]["items"]}
    assert paths == {"rethinkdb-password", "auth-tokens", "api3-clients"}
    mounts = {m["name"]: m for m in container(qs)["volumeMounts"]}
    assert mounts["secrets"] == {"name": "secrets", "mountPath": "/etc/shotgun-cache/secrets", "readOnly": True}
    secret = one(docs, "Secret")
    assert base64.b64decode(secret["data"]["auth-tokens"]).decode() == "ci-token-one\nci-token-two"
    assert config_toml(docs)["api3"] == {"forward": False}


def test_full_features():
    docs = render_ci("full-features-values.yaml")
    qs = deployment(docs, "query-server")
    assert qs["metadata"]["name"] == "sgc-query-server"
    assert container(qs)["image"] == (
        "registry.example.internal/pipeline/shotgun-cache@sha256:"
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
    assert qs["metadata"]["labels"]["team"] == "pipeline"
    assert "team" not in qs["spec"]["selector"]["matchLabels"]
    # ServiceMonitor scrapes the admin port, which only the syncer and headless Services carry
    sm = one(docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["spec"]["endpoints"][0]["port"] == "admin"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    with_admin = [s for s in docs_of(docs, "Service") if "admin" in {p["name"] for p in s["spec"]["ports"]}]
    assert {s["metadata"]["name"] for s in with_admin} == {"sgc-syncer", "sgc-query-server-headless"}
    for s in with_admin:
        assert sm["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    # gRPC ingress to the query-server Service
    ing = one(docs, "Ingress")
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "sgc-query-server", "port": {"name": "grpc"}}
    assert ing["spec"]["ingressClassName"] == "nginx"
    # NetworkPolicies for both components
    nps = {n["metadata"]["name"]: n for n in docs_of(docs, "NetworkPolicy")}
    assert set(nps) == {"sgc-query-server", "sgc-syncer"}
    for name, comp in (("sgc-query-server", "query-server"), ("sgc-syncer", "syncer")):
        assert nps[name]["spec"]["podSelector"]["matchLabels"] == deployment(docs, comp)["spec"]["selector"]["matchLabels"]
    qrules = nps["sgc-query-server"]["spec"]["ingress"]
    release_only = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "shotgun-cache",
                                                    "app.kubernetes.io/instance": RELEASE}}}
    assert qrules[0] == {"from": [release_only]}
    assert qrules[1] == {"ports": [{"port": 50051, "protocol": "TCP"}, {"port": 8080, "protocol": "TCP"}]}, \
        "gRPC/HTTP open to everyone when queryServerFrom is empty"
    assert qrules[2]["ports"] == [{"port": 9091, "protocol": "TCP"}]
    assert qrules[2]["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    srules = nps["sgc-syncer"]["spec"]["ingress"]
    assert srules[0] == {"from": [release_only]}
    assert {p["port"] for p in srules[1]["ports"]} == {50052, 9090}
    # scheduling knobs
    spec = deployment(docs, "syncer")["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["tolerations"][0]["key"] == "dedicated"
    assert spec["priorityClassName"] == "high"
    qspec = qs["spec"]["template"]["spec"]
    assert "podAntiAffinity" in qspec["affinity"]
    tsc = qspec["topologySpreadConstraints"][0]
    assert tsc["labelSelector"]["matchLabels"] == qs["spec"]["selector"]["matchLabels"]
    assert one(docs, "PodDisruptionBudget")["spec"] == {
        "minAvailable": 2, "selector": qs["spec"]["selector"]}
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 20)
    # webhook secret inline, script key existing
    syncer_env = env_map(container(deployment(docs, "syncer")))
    assert syncer_env["SHOTGUN_CACHE_SYNCER__WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "sgc"
    assert syncer_env["RUST_LOG"] == {"name": "RUST_LOG", "value": "info"}


def test_toml_rendering_of_awkward_values(tmp_path):
    """Strings with quotes, backslashes and unicode, nested hash filters, numbers and booleans
    survive the YAML -> TOML trip unchanged."""
    types = {
        "CustomEntity01": {
            "fields": ["code", "sg_description"],
            "filter": {"logical_operator": "and", "conditions": [
                ["code", "is", 'say "hi" \\ back<slash> & ünïcødé'],
                ["sg_count", "greater_than", 1000000],
                ["sg_ratio", "less_than", 0.25],
                ["sg_flag", "is", True],
                ["project", "is", {"type": "Project", "id": 12}],
            ]},
            "filterable": ["code"],
        },
        "Asset": {"fields": "all"},
    }
    vf = tmp_path / "types.yaml"
    vf.write_text(yaml.safe_dump({"types": types, "shotgun": {"url": "https://a.shotgunstudio.com/", "scriptName": 'name "q"'}}))
    docs = render(DEFAULT, str(vf))
    cfg = config_toml(docs)
    assert cfg["types"] == types
    assert cfg["site"] == {"url": "https://a.shotgunstudio.com/", "script_name": 'name "q"'}


def test_notes_show_how_to_reach_the_service_with_grpcurl():
    res = _helm("install", RELEASE, "@chart", "--namespace", NAMESPACE, "--dry-run=client",
                "-f", str(CI_DIR / DEFAULT))
    assert res.returncode == 0, res.stderr
    notes = res.stdout.split("NOTES:", 1)[1]
    assert "grpcurl -plaintext localhost:50051 grpc.health.v1.Health/Check" in notes
    assert f"port-forward svc/{RELEASE}-shotgun-cache-query-server 50051:50051" in notes
    assert f"dns:///{RELEASE}-shotgun-cache-query-server-headless.{NAMESPACE}.svc:50051" in notes
    assert "WARNING: no entity types are configured" in notes


def test_values_yaml_documents_every_key():
    """Each key of values.yaml that the schema declares has a comment right above it, and each
    property of the schema has a description."""
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    passthrough = {"podSecurityContext", "securityContext", "resources", "livenessProbe", "readinessProbe",
                   "requests", "limits", "seccompProfile", "capabilities"}
    undocumented = []
    stack: list[tuple[int, str]] = []
    prev = ""
    for line in (CHART / "values.yaml").read_text().splitlines():
        m = re.match(r"^(\s*)([A-Za-z_][\w.-]*):", line)
        if m and not line.lstrip().startswith("#"):
            indent = len(m.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            parents = [k for _, k in stack]
            if not set(parents) & passthrough and not prev.lstrip().startswith("#"):
                undocumented.append(".".join(parents + [m.group(2)]))
            stack.append((indent, m.group(2)))
        if line.strip():
            prev = line
    assert not undocumented, f"undocumented keys in values.yaml: {undocumented}"

    missing = []

    def walk(node, path):
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                if "description" not in sub:
                    missing.append(f"{path}.{name}")
                walk(sub, f"{path}.{name}")
            for key in ("definitions", "patternProperties"):
                for name, sub in node.get(key, {}).items():
                    walk(sub, f"{path}.{name}")
    walk(schema, "")
    assert not missing, f"schema properties without a description: {missing}"


def test_schema_is_strict_everywhere():
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    loose = []
    free_form = {"nodeAffinity", "podAffinity", "podAntiAffinity", "valueFrom", "podSelector", "namespaceSelector",
                 "ipBlock", "global", "filter", "labelSelector"}

    def walk(node, path):
        if not isinstance(node, dict):
            return
        if node.get("type") == "object" and path.split(".")[-1] not in free_form:
            if node.get("additionalProperties") is not False and not isinstance(node.get("additionalProperties"), dict):
                loose.append(path)
        for key in ("properties", "definitions", "patternProperties"):
            for name, sub in node.get(key, {}).items():
                walk(sub, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], path + "[]")
    walk(schema, "")
    assert not loose, f"objects that accept unknown keys: {loose}"


def test_lint_strict_passes_for_every_ci_file():
    for ci in CI_FILES:
        res = _helm("lint", "--strict", "@chart", "-f", str(CI_DIR / ci))
        assert res.returncode == 0, f"{ci}:\n{res.stdout}\n{res.stderr}"


# ---------------------------------------------------------------------------------------------
# values the chart refuses, with the message an operator sees

INVALID = [
    pytest.param((DEFAULT,), ("syncer.replicas=2",), ["/syncer/replicas", "maximum: got 2, want 1"],
                 id="two-syncer-replicas"),
    pytest.param((DEFAULT,), ("foo=bar",), ["additional properties 'foo' not allowed"], id="unknown-top-level-key"),
    pytest.param((DEFAULT,), ("queryServer.replicass=3",), ["/queryServer", "additional properties 'replicass' not allowed"],
                 id="unknown-nested-key"),
    pytest.param((), ("shotgun.scriptKey=k",), ["/shotgun/url", "minLength: got 0, want 1"], id="missing-shotgun-url"),
    pytest.param((DEFAULT,), ("shotgun.url=studio.shotgunstudio.com",), ["/shotgun/url", "does not match pattern"],
                 id="shotgun-url-without-scheme"),
    pytest.param((DEFAULT,), ("store.backend=mongo",), ["/store/backend", "value must be one of 'rethinkdb', 'sqlite'"],
                 id="unknown-backend"),
    pytest.param((DEFAULT,), ("queryServer.replicas=two",), ["/queryServer/replicas", "got string, want integer"],
                 id="replicas-not-a-number"),
    pytest.param((DEFAULT,), ("store.backend=sqlite",),
                 ["/queryServer/replicas", "value must be 1", "/queryServer/autoscaling/enabled", "value must be false"],
                 id="sqlite-with-several-query-servers"),
    pytest.param((DEFAULT,), ("shotgun.scriptKey=",), ["the Shotgun script key is missing"], id="missing-script-key"),
    pytest.param((DEFAULT,), ("shotgun.existingSecret=site",),
                 ["shotgun.scriptKey and shotgun.existingSecret are both set"], id="script-key-twice"),
    pytest.param((DEFAULT,), ("auth.required=true",), ["auth.required is true but no tokens are configured"],
                 id="auth-without-tokens"),
    pytest.param((DEFAULT,), ("queryServer.terminationGracePeriodSeconds=5",),
                 ["queryServer.terminationGracePeriodSeconds (5) must be longer than queryServer.config.drain_secs (5)"],
                 id="grace-not-longer-than-drain"),
    pytest.param((DEFAULT,), ("queryServer.autoscaling.minReplicas=5", "queryServer.autoscaling.maxReplicas=3"),
                 ["queryServer.autoscaling.minReplicas (5) is greater than maxReplicas (3)"], id="hpa-min-above-max"),
    pytest.param((DEFAULT,), ("queryServer.resources.requests.cpu=null",),
                 ["queryServer.resources.requests.cpu is not set"], id="hpa-without-cpu-request"),
    pytest.param((DEFAULT,), ("queryServer.pdb.minAvailable=1",),
                 ["queryServer.pdb.minAvailable and queryServer.pdb.maxUnavailable are both set"], id="pdb-both"),
    pytest.param((DEFAULT,), ("queryServer.ingress.enabled=true",), ["queryServer.ingress.hosts is empty"],
                 id="ingress-without-hosts"),
    pytest.param((DEFAULT,), ("types.Shot.filter[0]=code",), ["/types/Shot", "missing property 'fields'"],
                 id="type-without-fields"),
    pytest.param((DEFAULT,), ("syncer.config.poll_interval_ms=50",), ["/syncer/config/poll_interval_ms", "minimum"],
                 id="poll-interval-out-of-range"),
]


@pytest.mark.parametrize("values,sets,messages", INVALID)
def test_invalid_values_fail_clearly(values, sets, messages):
    res = template(*values, sets=sets)
    assert res.returncode != 0, f"helm template accepted {sets}"
    for msg in messages:
        assert msg in res.stderr, f"expected {msg!r} in:\n{res.stderr}"


def test_cross_field_rules_fail_together_without_the_schema():
    """With --skip-schema-validation the chart's own validation still refuses a second syncer and
    an unscalable SQLite setup, listing every problem at once."""
    res = template(DEFAULT, sets=("syncer.replicas=2", "store.backend=sqlite", "queryServer.replicas=3"),
                   extra=("--skip-schema-validation",))
    assert res.returncode != 0
    assert "VALUES VALIDATION:" in res.stderr
    assert "syncer.replicas is 2: the syncer is a singleton" in res.stderr
    assert "queryServer.replicas is 3 but store.backend is sqlite" in res.stderr
    assert "queryServer.autoscaling.enabled is true but store.backend is sqlite" in res.stderr


def test_lint_without_a_site_fails_on_the_url():
    res = _helm("lint", "--strict", "@chart")
    assert res.returncode != 0
    assert "/shotgun/url" in res.stdout + res.stderr


def test_syncer_can_be_paused_with_zero_replicas():
    docs = render(DEFAULT, sets=("syncer.replicas=0",))
    assert deployment(docs, "syncer")["spec"]["replicas"] == 0
