"""The image's install without Docker: the Dockerfile's own pip commands, then its container.

No Docker engine runs here, so the two `RUN … pip …` lines are read out of the Dockerfile and run
with /bin/sh, the container paths (/src, /wheels, /opt/venv, the data dir) mapped into a temporary
dir and `python`/`pip` standing for the image's. Stage 1 builds wheels from a copy of what its
COPY lines copy (minus .dockerignore); stage 2 makes a fresh venv and installs them --no-index.
Then the installed `open-clanker` runs with the image's ENV and CMD, as a container would.

Dependencies come from a wheelhouse under the system temp dir, keyed by pyproject.toml, the
image's EXTRAS and the Python version. The first run fills it with the Dockerfile's `pip wheel`
through the machine's package index (~20 s for the whole test); every later run builds with
`--no-index` from it, so it touches no network (~12 s on 2 cores). pip's HTTP cache would still
ask the index about every package on every run; a venv with --system-site-packages would not
test the dependency set at all.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

from tests import dockerfile
from tests.proc import GatewayProcess, clean_env, free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKER = dockerfile.load()
TOKEN = "wheel-test-token-0123456789abcdef"
PUBLIC_HOST = "clanker.example.com"


def extras() -> str:
    return DOCKER.global_args.get("EXTRAS", "")


def to_host(text: str, paths: dict[str, Path]) -> str:
    """Replace each container path (a whole path or a prefix of one) by its host dir."""
    for container in sorted(paths, key=len, reverse=True):
        pattern = r"(?<![\w./-])" + re.escape(container) + r"(?![\w.-])"
        text = re.sub(pattern, lambda _m, c=container: str(paths[c]), text)
    return text


def shims(tmp: Path) -> Path:
    """`python` and `pip` on PATH, standing for the base image's."""
    bin_dir = tmp / "shims"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    pip = bin_dir / "pip"
    pip.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pip "$@"\n')
    pip.chmod(0o755)
    return bin_dir


def host_env(shim_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OPENCLAW_") and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    env["PATH"] = f"{shim_dir}:{env.get('PATH', '/usr/bin:/bin')}"
    env["EXTRAS"] = extras()
    env.update(extra)
    return env


def stage_env(
    stage: dockerfile.Stage, paths: dict[str, Path], base: dict[str, str]
) -> dict[str, str]:
    """The stage's ENV lines over `base`, container paths mapped, `$PATH` expanded."""
    env = dict(base)
    for name, value in stage.env().items():
        env[name] = to_host(value, paths).replace("$PATH", base.get("PATH", ""))
    return env


def pip_run(stage: dockerfile.Stage) -> tuple[list[str], str]:
    runs = [(flags, cmd) for flags, cmd in stage.runs() if re.search(r"\bpip\b", cmd)]
    assert len(runs) == 1, f"expected one pip RUN in stage {stage.name or stage.base}: {runs}"
    return runs[0]


def copy_context(stage: dockerfile.Stage, workdir: Path) -> None:
    """What the stage's COPY lines copy from the build context, .dockerignore applied."""
    for args in stage.args_of("COPY"):
        *sources, dest = args.split()
        assert not any(s.startswith("--") for s in sources), "COPY --from/--chown not expected"
        target = workdir / dest
        for source in sources:
            assert not dockerfile.dockerignored(source), f"{source} is in .dockerignore"
            src = ROOT / source
            if src.is_dir():
                shutil.copytree(
                    src,
                    target,
                    ignore=lambda d, names: [
                        n
                        for n in names
                        if dockerfile.dockerignored(str((Path(d) / n).relative_to(ROOT)))
                    ],
                )
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target / src.name)


def sh(command: str, env: dict[str, str], cwd: Path, timeout: float = 300) -> None:
    """A RUN line's shell form, as Docker runs it: `/bin/sh -c` (dash on Debian)."""
    result = subprocess.run(
        ["/bin/sh", "-c", command],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def build_wheels(tmp: Path, wheels: Path, shim_dir: Path, pip_env: dict[str, str]) -> None:
    """Stage 1: its WORKDIR, its COPY lines, its `pip wheel` with /wheels -> `wheels`."""
    stage = DOCKER.build
    workdir = tmp / "ctx" / stage.one("WORKDIR").lstrip("/")
    if not workdir.exists():
        workdir.mkdir(parents=True)
        copy_context(stage, workdir)
    _flags, command = pip_run(stage)
    paths = {"/wheels": wheels, stage.one("WORKDIR"): workdir}
    sh(to_host(command, paths), host_env(shim_dir, **pip_env), workdir)


def wheelhouse(tmp: Path, shim_dir: Path) -> Path:
    """Dependency wheels for this pyproject.toml, filled once through the package index."""
    key = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes()
        + f"{extras()}|{sys.version}|{platform.machine()}".encode()
    ).hexdigest()[:16]
    home = Path(tempfile.gettempdir()) / "open-clanker-wheelhouse"
    cache = home / key
    if (cache / "complete").exists():
        return cache
    home.mkdir(exist_ok=True)
    for old in home.iterdir():  # earlier pyprojects' and killed runs' (not a running one's)
        if not old.name.startswith(key) and time.time() - old.stat().st_mtime > 3600:
            shutil.rmtree(old, ignore_errors=True)
    staging = home / f"{key}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    build_wheels(tmp, staging, shim_dir, {})
    # The isolated build of our own wheel needs the build backend from the wheelhouse too.
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    sh(
        f"pip wheel --wheel-dir {staging} " + " ".join(f"'{r}'" for r in requires),
        host_env(shim_dir),
        tmp,
    )
    for ours in staging.glob("open_clanker-*.whl"):
        ours.unlink()
    (staging / "complete").touch()
    try:
        staging.rename(cache)
    except OSError:  # another run filled it first
        shutil.rmtree(staging, ignore_errors=True)
    return cache


def install_like_the_image(tmp: Path) -> dict[str, Path]:
    shim_dir = shims(tmp)
    wheels = tmp / "wheels"
    cache = wheelhouse(tmp, shim_dir)
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(cache)}
    try:
        build_wheels(tmp, wheels, shim_dir, offline)
    except AssertionError:  # the wheelhouse went stale (cleaned by hand?): refill it once
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(wheels, ignore_errors=True)
        cache = wheelhouse(tmp, shim_dir)
        build_wheels(tmp, wheels, shim_dir, {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(cache)})
    assert len(list(wheels.glob("open_clanker-*.whl"))) == 1

    stage = DOCKER.final
    flags, command = pip_run(stage)
    mounts = [f.removeprefix("--mount=") for f in flags if f.startswith("--mount=")]
    assert len(mounts) == 1, "stage 2 should bind-mount the wheels from stage 1"
    mount = dict(kv.split("=", 1) for kv in mounts[0].split(","))
    assert mount["from"] == DOCKER.build.name and mount["source"] == "/wheels"
    venv = tmp / "venv"
    data = tmp / "data"
    data.mkdir()
    paths = {mount["target"]: wheels, "/opt/venv": venv, stage.one("WORKDIR"): data}
    sh(to_host(command, paths), stage_env(stage, paths, host_env(shim_dir)), tmp)
    return paths


class InstalledGateway(GatewayProcess):
    """GatewayProcess running a given command line instead of this interpreter's module."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, port: int) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )


def test_the_image_install_runs_and_passes_its_healthcheck(tmp_path: Path) -> None:
    paths = install_like_the_image(tmp_path)
    venv, data = paths["/opt/venv"], paths[DOCKER.final.one("WORKDIR")]
    config = tmp_path / "config.toml"  # mounted at /etc/open-clanker/config.toml in compose
    shutil.copy(ROOT / "config.example.toml", config)
    env = stage_env(
        DOCKER.final, paths, clean_env(data, HOME=str(data), OPENCLAW_CONFIG=str(config))
    )
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(name, None)
    assert env["OPENCLAW_DATA_DIR"] == str(data)

    cmd = DOCKER.final.exec_form("CMD")
    exe = shutil.which(cmd[0], path=env["PATH"])
    assert exe is not None and Path(exe).parent == venv / "bin", exe
    port = free_port()
    argv = [exe, *cmd[1:], "--port", str(port)]

    # (a) No token on a 0.0.0.0 bind: a one-line refusal that names the variable.
    refused = subprocess.run(argv, env=env, cwd=data, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr
    naming = [line for line in refused.stderr.splitlines() if "OPENCLAW_GATEWAY_TOKEN" in line]
    assert len(naming) == 1, refused.stderr

    # (b) With the token (and allowed_hosts, as behind a proxy) it serves /health and the page.
    env["OPENCLAW_GATEWAY_TOKEN"] = TOKEN
    env["OPENCLAW_SERVER__ALLOWED_HOSTS"] = f'["{PUBLIC_HOST}"]'
    gw = InstalledGateway(argv, env, data, port)
    try:
        gw.wait_healthy(timeout=30)
        page = urllib.request.Request(f"{gw.base_url}/", headers={"Host": PUBLIC_HOST})
        with urllib.request.urlopen(page, timeout=5) as r:
            assert r.status == 200 and b"<html" in r.read().lower()  # package data installed
        vendored = f"{gw.base_url}/static/vendor/markdown-it.min.js"
        with urllib.request.urlopen(urllib.request.Request(vendored), timeout=5) as r:
            assert r.status == 200 and b"markdownit" in r.read()  # the web chat's libraries too

        # (c) The HEALTHCHECK command line, from the Dockerfile, with the test's port.
        _opts, check = DOCKER.final.healthcheck()
        exposed = DOCKER.final.one("EXPOSE")
        assert any(f":{exposed}/" in part for part in check), check
        check_argv = [part.replace(f":{exposed}/", f":{port}/") for part in check]
        check_exe = shutil.which(check_argv[0], path=env["PATH"])
        assert check_exe is not None and Path(check_exe).parent == venv / "bin"
        healthy = subprocess.run(
            [check_exe, *check_argv[1:]], env=env, capture_output=True, text=True, timeout=30
        )
        assert healthy.returncode == 0, healthy.stderr
    finally:
        code, _out, err = gw.stop(signal.SIGTERM)
    assert code == 0, err[-2000:]  # `docker stop` sends SIGTERM: drain and exit 0
    assert (data / "open-clanker.db").is_file()

    dead = subprocess.run(
        [check_exe, *check_argv[1:]], env=env, capture_output=True, text=True, timeout=30
    )
    assert dead.returncode != 0  # the check notices a gateway that is gone
