"""Deployment files are checked like code: the Dockerfile (hadolint and its shape), compose.yaml, the systemd unit."""

from __future__ import annotations

import configparser
import http.server
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
UNIT = ROOT / "deploy" / "systemd" / "crm-risk.service"
DEPLOY_CONFIG = ROOT / "deploy" / "crm-risk.toml"
SECRETS_EXAMPLE = ROOT / "deploy" / "crm-risk.secrets.example.toml"
CONFIG_IN_CONTAINER = "/etc/crm-risk/crm-risk.toml"


def tool(name: str) -> str | None:
    """A command from this virtualenv (the dev extra installs it) or the PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined."""
    joined, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        current += (
            " " + stripped.removesuffix("\\").strip()
            if current
            else stripped.removesuffix("\\").strip()
        )
        if not stripped.endswith("\\"):
            joined.append(current)
            current = ""
    found = []
    for text in joined:
        keyword, _, rest = text.partition(" ")
        found.append((keyword.upper(), rest.strip()))
    return found


def final_stage(path: Path) -> list[tuple[str, str]]:
    steps = instructions(path)
    last_from = max(index for index, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def metrics_port() -> int:
    return int(tomllib.loads(DEPLOY_CONFIG.read_text())["metrics"]["port"])


# -- Dockerfile -----------------------------------------------------------------------------------


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (the dev extra installs it where a wheel exists)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_the_image_is_slim_runs_as_a_non_root_user_and_one_process() -> None:
    stage = final_stage(DOCKERFILE)
    assert re.fullmatch(r"python:3\.\d+-slim", stage[0][1]), stage[0]
    users = [arguments for keyword, arguments in stage if keyword == "USER"]
    assert users, "the final stage never leaves root"
    user = users[-1].split(":")[0]
    assert user not in ("0", "root")
    entry = [arguments for keyword, arguments in stage if keyword == "ENTRYPOINT"]
    command = [arguments for keyword, arguments in stage if keyword == "CMD"]
    assert len(entry) == 1 and len(command) == 1
    assert yaml.safe_load(entry[0]) == ["crm-risk"]
    assert yaml.safe_load(command[0]) == ["run", "--config", CONFIG_IN_CONTAINER]
    assert not [arguments for keyword, arguments in stage if keyword == "ADD"]


def test_the_health_check_asks_the_workers_healthz_on_the_configured_port() -> None:
    stage = final_stage(DOCKERFILE)
    checks = [arguments for keyword, arguments in stage if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    assert f"127.0.0.1:{metrics_port()}/healthz" in checks[0]
    assert ("EXPOSE", str(metrics_port())) in stage


@pytest.mark.parametrize(
    ("status", "healthy"), [(200, True), (503, False)], ids=["ok", "unhealthy"]
)
def test_the_health_probe_passes_on_200_and_fails_on_503(status: int, healthy: bool) -> None:
    checks = [
        arguments for keyword, arguments in final_stage(DOCKERFILE) if keyword == "HEALTHCHECK"
    ]
    probe = yaml.safe_load(checks[0].split("CMD", 1)[1].strip())
    assert probe[0] == "python"

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code = probe[2].replace(f":{metrics_port()}/", f":{server.server_address[1]}/")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    finally:
        server.shutdown()
        server.server_close()  # the listening socket, which shutdown() leaves open
        thread.join(5)
    assert (result.returncode == 0) is healthy


def test_the_build_context_leaves_out_tests_state_and_secrets() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".git", ".venv", "tests", "*.db", "*.secrets.toml"):
        assert pattern in ignored


@pytest.mark.slow
def test_the_image_builds_where_a_container_engine_runs(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run([docker, "info"], capture_output=True, check=False).returncode
    ):
        pytest.skip("no container engine on this machine: the Dockerfile is checked by hadolint")
    result = subprocess.run(
        [docker, "build", "--tag", "crm-risk-connector:test", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]


# -- compose.yaml -----------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    checker = tool("check-jsonschema")
    assert checker, "check-jsonschema is part of the dev extra"
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_postgresql_and_two_workers_that_wait_for_it() -> None:
    services = compose()["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert "healthcheck" in services["postgres"]
    worker = services["worker"]
    assert worker["build"] == "."
    assert worker["deploy"]["replicas"] == 2
    assert worker["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert worker["restart"] in ("unless-stopped", "always", "on-failure")
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in worker["volumes"]}
    assert (ROOT / mounts[CONFIG_IN_CONTAINER]).resolve() == DEPLOY_CONFIG
    store_url = tomllib.loads(DEPLOY_CONFIG.read_text())["store"]["url"]
    assert store_url.startswith("postgresql://") and "@postgres:" in store_url


def test_compose_keeps_passwords_out_of_the_file() -> None:
    services = compose()["services"]
    password = services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert password.startswith("${") and password.endswith("}")
    assert services["worker"]["environment"]["PGPASSWORD"] == password
    assert compose()["secrets"]["crm-risk.secrets.toml"]["file"] == "./deploy/crm-risk.secrets.toml"
    assert "deploy/crm-risk.secrets.toml" in (ROOT / ".gitignore").read_text().split()


def test_the_compose_setup_makes_the_secrets_file_readable_by_the_images_user() -> None:
    # Compose mounts a file secret with its owner and mode on the host (uid/gid/mode are ignored
    # for file secrets): a root-owned chmod 600 copy is unreadable by the image's USER.
    user = [arguments for keyword, arguments in final_stage(DOCKERFILE) if keyword == "USER"][-1]
    uid = user.split(":")[0]
    chown = (
        f"chown {uid}:{uid} deploy/crm-risk.secrets.toml && chmod 600 deploy/crm-risk.secrets.toml"
    )
    assert chown in COMPOSE.read_text()
    assert chown in SECRETS_EXAMPLE.read_text()
    assert "environment variable" in SECRETS_EXAMPLE.read_text()
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert chown in readme


def test_the_systemd_setup_lets_the_worker_read_its_files_and_no_one_else() -> None:
    steps = [line.lstrip("# ").strip() for line in UNIT.read_text().splitlines()]
    service = unit()["Service"]
    group = service["Group"]
    secrets = next(step for step in steps if step.startswith("install") and "secrets" in step)
    assert f"-m 0640 -o root -g {group} " in secrets
    pgpass = next(step for step in steps if step.startswith("install") and "pgpass" in step)
    assert f"-m 0600 -o {service['User']} " in pgpass
    assert f"-g {group}" in SECRETS_EXAMPLE.read_text()


def test_the_deployment_config_loads_with_the_example_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from connector.config import load_config

    for name in list(__import__("os").environ):
        if name.startswith("CRMRISK_"):
            monkeypatch.delenv(name)
    config = load_config(str(DEPLOY_CONFIG), secrets_path=str(SECRETS_EXAMPLE))
    assert config.store.url.startswith("postgresql://")
    assert config.metrics.port == metrics_port() and config.metrics.host == "0.0.0.0"
    assert config.connections and all(conn.enabled for conn in config.connections.values())


# -- systemd ------------------------------------------------------------------------------------------


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_the_systemd_unit_restarts_on_failure_but_not_on_a_bad_config() -> None:
    service = unit()["Service"]
    assert service["Restart"] == "on-failure"
    assert "78" in service["RestartPreventExitStatus"].split()
    assert int(service["RestartSec"].removesuffix("s")) >= 5
    assert unit()["Unit"]["StartLimitBurst"]
    assert service["User"] not in ("root", "0")
    assert service["KillSignal"] == "SIGTERM" and service["TimeoutStopSec"]
    command = shlex.split(service["ExecStart"])
    assert Path(command[0]).name == "crm-risk"
    assert command[command.index("run") :] == ["run", "--config", CONFIG_IN_CONTAINER]


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit is checked by parsing only")
    crm_risk = tool("crm-risk")
    assert crm_risk
    # systemd checks that the program exists: point the copy at this virtualenv's crm-risk.
    copy = tmp_path / "crm-risk.service"
    copy.write_text(UNIT.read_text().replace("/opt/crm-risk/.venv/bin/crm-risk", crm_risk))
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
