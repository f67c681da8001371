"""The systemd unit (checked by `systemd-analyze`) and the Kubernetes manifests (validated
against the Kubernetes JSON schemas offline), and their agreement with the code: the drain
fits the stop timeouts, probes hit the real routes, secrets arrive as `_FILE`s."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from open_clanker.config.loader import load_config
from open_clanker.gateway.runtime import OUTBOX_FLUSH_TIMEOUT_S
from open_clanker.gateway.server import DRAIN_TIMEOUT_S, HTTP_GRACE_S

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "systemd" / "open-clanker.service"
K8S = ROOT / "deploy" / "kubernetes"
DRAIN_S = DRAIN_TIMEOUT_S + HTTP_GRACE_S + OUTBOX_FLUSH_TIMEOUT_S  # the whole shutdown
K8S_VERSION = "1.30.0"  # the oldest release these manifests are meant for (preStop sleep: 1.30)
SECRET_VARIABLES = {
    "OPENCLAW_GATEWAY_TOKEN",
    "OPENCLAW_ANTHROPIC_API_KEY",
    "OPENCLAW_OPENAI_API_KEY",
    "OPENCLAW_TELEGRAM_BOT_TOKEN",
    "OPENCLAW_DISCORD_BOT_TOKEN",
    "OPENCLAW_STORAGE__URL",
    "OPENCLAW_BUS__URL",
}


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    assert found, "systemd-analyze is missing: `make test` installs Debian's systemd package"
    return found


def verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` on the unit, with ExecStart pointed at a real executable
    (verify checks that it exists; the install path is not on a test machine)."""
    exe = tmp_path / "open-clanker"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    unit = tmp_path / "open-clanker.service"
    unit.write_text(unit_text.replace("/opt/open-clanker/bin/open-clanker", str(exe)))
    return subprocess.run(
        [systemd_analyze(), "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_systemd_unit_verifies_clean(tmp_path: Path) -> None:
    result = verify(UNIT.read_text(), tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    # The check can fail: a mistyped value is reported.
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=stirct")
    assert "protect system value, ignoring: stirct" in verify(broken, tmp_path).stderr


def test_systemd_unit_is_hardened_and_fits_the_drain(tmp_path: Path) -> None:
    s = unit_settings()
    assert s["ExecStart"] == ["/opt/open-clanker/bin/open-clanker gateway"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["DynamicUser"] == ["yes"] and s["StateDirectory"] == ["open-clanker"]
    assert s["ProtectSystem"] == ["strict"] and s["NoNewPrivileges"] == ["yes"]
    assert s["KillSignal"] == ["SIGTERM"]
    assert float(s["TimeoutStopSec"][0]) > DRAIN_S
    assert s["EnvironmentFile"] == ["-/etc/open-clanker/secrets.env"]
    assert "OPENCLAW_DATA_DIR=/var/lib/open-clanker" in s["Environment"]
    # systemd's own exposure score (0 safest, 10 unsafe): "OK" is below 4.
    exe = tmp_path / "oc"
    unit = tmp_path / "open-clanker.service"
    unit.write_text(UNIT.read_text().replace("/opt/open-clanker/bin/open-clanker", str(exe)))
    security = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert match, security.stdout[-2000:] + security.stderr
    assert float(match.group(1)) <= 2.0


def manifests(kind: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((K8S / kind).glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


@pytest.mark.parametrize("layout", ["single", "replicas"])
def test_manifests_validate_against_the_kubernetes_schemas(layout: str) -> None:
    docs = manifests(layout)
    assert {d["kind"] for d in docs} >= {"ConfigMap", "Deployment", "Service"}
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    # The validator does catch a mistake (a misspelt field, in strict mode).
    broken = copy.deepcopy(by_kind(docs, "Deployment"))
    broken["spec"]["template"]["spec"]["terminationGracePeriod"] = 60
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.parametrize("layout", ["single", "replicas"])
def test_manifests_agree_with_the_gateway(layout: str, tmp_path: Path) -> None:
    docs = manifests(layout)
    deployment = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > DRAIN_S + pre_stop
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    ready = container["readinessProbe"]["httpGet"]
    assert ready["path"] == "/ready"
    assert {"name": "Host", "value": "localhost"} in ready["httpHeaders"]
    assert container["ports"] == [{"name": "http", "containerPort": 18789, "protocol": "TCP"}]
    assert pod["securityContext"]["runAsUser"] == 1000  # the image's user (Dockerfile)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True

    # Secrets arrive as files; every variable named is one the gateway reads as a secret.
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    for name, path in env.items():
        assert name.endswith("_FILE") and name.removesuffix("_FILE") in SECRET_VARIABLES
        assert path.startswith(mounts["secrets"] + "/")
    assert "OPENCLAW_GATEWAY_TOKEN_FILE" in env
    assert mounts["config"] == "/etc/open-clanker"
    assert mounts["data"] == "/var/lib/open-clanker"

    # The ConfigMap's config.toml loads as the gateway would load it.
    config_path = tmp_path / "config.toml"
    config_path.write_text(by_kind(docs, "ConfigMap")["data"]["config.toml"])
    config = load_config(config_path).config
    assert config.logging.format == "json"

    if layout == "single":
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        claim = by_kind(docs, "PersistentVolumeClaim")["metadata"]["name"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim
    else:
        assert deployment["spec"]["replicas"] >= 2
        assert "OPENCLAW_STORAGE__URL_FILE" in env and "OPENCLAW_BUS__URL_FILE" in env
        assert by_kind(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
