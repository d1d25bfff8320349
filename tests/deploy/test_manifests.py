"""Deployment files checked offline (no engine, no cluster): docs/swarm.md.

* compose/k8s/*.yaml against the Kubernetes API schemas that kubernetes-validate
  bundles (strict: unknown fields fail), plus what a schema cannot see: selectors
  that match, referenced Secrets and volumes that exist, images never pulled,
  and daemon command lines that dodoor's own parser accepts.
* compose/docker-stack*.yml: each daemon's command line parses, reads the token
  from the secret it mounts, and never from the environment. (The stack itself
  runs in the ``-m swarm`` suite.)
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from dodoor.tools.cli import build_parser

yaml = pytest.importorskip("yaml", reason="PyYAML comes with the test extra (kubernetes-validate)")

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "compose" / "k8s"
COMPOSE = REPO / "compose"
DAEMONS = {"loadstore", "scheduler", "agent"}


def k8s_documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


@pytest.fixture(scope="module")
def validator():
    kv = pytest.importorskip("kubernetes_validate",
                             reason="kubernetes-validate is in the test extra: pip install '.[test]'")
    from kubernetes_validate import utils
    versions = utils.all_versions()
    if not versions:
        pytest.skip("kubernetes-validate ships no schemas here: nothing to validate against offline")
    return kv, utils


def test_manifests_are_valid_kubernetes_objects_offline(validator):
    kv, utils = validator
    docs = k8s_documents()
    assert {d["kind"] for _, d in docs} >= {"Namespace", "Secret", "StatefulSet", "Deployment",
                                            "Service", "DaemonSet"}
    # the oldest and the newest API version the package bundles schemas for
    oldest = max("1.27", utils.all_versions()[0][:4], key=lambda v: tuple(map(int, v.split("."))))
    for version in sorted({oldest, utils.latest_version()}):
        for name, doc in docs:
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as exc:
                pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']} is not a valid "
                            f"Kubernetes {version} object: {exc.message} at "
                            f"{'/'.join(map(str, exc.path))}")


def test_a_broken_manifest_is_caught(validator):
    kv, utils = validator
    _, deployment = next((n, d) for n, d in k8s_documents() if d["kind"] == "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, utils.latest_version(), strict=True)
    typo = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kv.ValidationError):
        kv.validate(typo, utils.latest_version(), strict=True)


def _workloads() -> dict[str, dict]:
    return {d["kind"]: d for _, d in k8s_documents()
            if d["kind"] in ("StatefulSet", "Deployment", "DaemonSet")}


def test_manifests_fit_together():
    docs = [d for _, d in k8s_documents()]
    secrets = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    workloads = _workloads()
    assert set(workloads) == {"StatefulSet", "Deployment", "DaemonSet"}
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"dodoor"}
    for kind, w in workloads.items():
        template = w["spec"]["template"]
        labels = template["metadata"]["labels"]
        assert w["spec"]["selector"]["matchLabels"].items() <= labels.items(), kind
        pod = template["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in w["spec"].get("volumeClaimTemplates", [])}
        for container in pod["containers"]:
            # images come from build-images.sh on every node: never pulled
            assert container["imagePullPolicy"] == "Never", kind
            assert not any(e["name"] in ("DODOOR_TOKEN", "DODOOR_TOKEN_FILE")
                           for e in container.get("env", [])), "the token is a Secret file"
            for mount in container["volumeMounts"]:
                assert mount["name"] in volumes or mount["name"] in claims, (kind, mount)
        for volume in volumes.values():
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets, (kind, volume)
    # the load store's headless Service names its StatefulSet; the schedulers' Service
    # selects the Deployment's pods
    assert workloads["StatefulSet"]["spec"]["serviceName"] == "loadstore"
    assert services["loadstore"]["spec"]["clusterIP"] == "None"
    for name, kind in (("loadstore", "StatefulSet"), ("scheduler", "Deployment")):
        selector = services[name]["spec"]["selector"]
        assert selector.items() <= workloads[kind]["spec"]["template"]["metadata"]["labels"].items()


def _k8s_args(container: dict) -> list[str]:
    """The container's args with $(VAR) expanded as the kubelet would (to a sample)."""
    env = {e["name"]: f"sample-{e['name'].lower()}" for e in container.get("env", [])}
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in container["args"]]


def _check_daemon_args(argv: list[str], token_path: str) -> None:
    args = build_parser().parse_args(argv)
    assert args.command in DAEMONS
    assert args.token_file == token_path and args.token is None, argv
    if args.command != "loadstore":
        assert args.loadstore.startswith("http://loadstore:8090"), argv
        assert args.advertise_url, "each replica must advertise where it can be reached"


def test_k8s_daemon_command_lines_parse_and_read_the_token_file():
    seen = set()
    for kind, w in _workloads().items():
        pod = w["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            token_mount = next(m for m in container["volumeMounts"]
                               if "secret" in volumes.get(m["name"], {}))
            token_key = "token"
            _check_daemon_args(_k8s_args(container), f"{token_mount['mountPath']}/{token_key}")
            seen.add(container["args"][0])
    assert seen == DAEMONS
    secret = next(d for _, d in k8s_documents() if d["kind"] == "Secret")
    assert "token" in secret["stringData"]


# ---- the Swarm stack files -------------------------------------------------------

STACK_ENV = {"DODOOR_IMAGE": "dodoor:latest", "DODOOR_POLICY": "dodoor-wait:d=16",
             "DODOOR_SCHEDULER_PORT": "8100", "DODOOR_GATEWAY_PORT": "8180"}


def _substitute(text: str) -> str:
    """The stack's ${VAR}, ${VAR:-default} and ${VAR:?msg}, then $$ → $ (as stack deploy does)."""
    def one(m: re.Match) -> str:
        name, op, rest = m.group(1), m.group(2), m.group(3)
        if name in STACK_ENV:
            return STACK_ENV[name]
        return rest if op == ":-" else ""
    out = re.sub(r"(?<!\$)\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, text)
    return out.replace("$$", "$")


def _stack(name: str) -> dict:
    return yaml.safe_load(_substitute((COMPOSE / name).read_text()))


def _daemon_argv(service: dict) -> list[str]:
    """The daemon's argv: the image entrypoint ``dodoor`` plus command, or the `sh -c` line
    with its per-task variables filled in."""
    entry = service.get("entrypoint")
    if entry:
        assert entry[:2] == ["sh", "-c"], entry
        line = entry[2].replace('"$(hostname -i | cut -d\' \' -f1)"', "10.0.0.2")
        line = line.replace("$(hostname -i | cut -d' ' -f1)", "10.0.0.2")
        env = {k: "" if v is None else str(v) for k, v in service.get("environment", {}).items()}
        env = {k: v.replace("{{", "").replace("}}", "").replace(".", "") for k, v in env.items()}
        line = re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), ""), line)
        argv = shlex.split(line)
        assert argv[:2] == ["exec", "dodoor"], argv
        return argv[2:]
    return list(service["command"])


def test_stack_daemons_parse_and_read_the_token_from_their_secret():
    stack = _stack("docker-stack.yml")
    assert stack["secrets"]["token"].get("external") is True
    for name in DAEMONS:
        service = stack["services"][name]
        assert "DODOOR_TOKEN" not in service.get("environment", {}), name
        (secret,) = service["secrets"]
        assert secret["source"] == "token"
        _check_daemon_args(_daemon_argv(service), f"/run/secrets/{secret['target']}")
    agent = stack["services"]["agent"]
    assert agent["deploy"]["mode"] == "global"
    assert "{{.Node.Hostname}}" in agent["environment"]["DODOOR_ID"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in agent["volumes"]
    assert stack["services"]["scheduler"]["ports"] == ["8100:8100"]
    # an agent rescheduled within the dead-after resumes instead of being declared dead
    loadstore = stack["services"]["loadstore"]["command"]
    assert loadstore[loadstore.index("--dead-after-ms") + 1] == "10000"


def test_one_node_override_gives_each_slot_its_id_and_journal():
    base = _stack("docker-stack.yml")["services"]["agent"]
    local = _stack("docker-stack.local.yml")
    agent = local["services"]["agent"]
    assert agent["deploy"]["mode"] == "replicated"
    assert "{{.Task.Slot}}" in agent["environment"]["DODOOR_ID"]
    (journal,) = agent["volumes"]
    base_target = next(v.split(":")[1] for v in base["volumes"] if v.startswith("journal:"))
    # same target: `stack deploy` merges volumes by target, so this one replaces the base's
    assert journal["target"] == base_target
    assert "{{.Task.Slot}}" in local["volumes"][journal["source"]]["name"]
    _check_daemon_args(_daemon_argv({**base, "environment": {**base["environment"],
                                                             **agent["environment"]}}),
                       "/run/secrets/dodoor_token")


def test_gateway_override_runs_the_gateway_module():
    from dodoor.tools import gateway

    service = _stack("docker-stack.gateway.yml")["services"]["gateway"]
    assert service["entrypoint"][:3] == ["python", "-m", "dodoor.tools.gateway"]
    assert service["ports"][0]["mode"] == "host"
    with pytest.raises(SystemExit) as exc:  # --help parses the flags and exits 0
        gateway.main([*service["entrypoint"][3:], "--help"])
    assert exc.value.code == 0
