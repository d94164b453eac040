"""Serving beyond this machine needs both a UI login and an API key; without them
the real `hearth` command refuses to start and says how to set them up."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import ROOT, free_port
from webui.api.auth import keys_match
from webui.app.flags import build_parser, check_network_safety, settings_from_args


def run_hearth(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("HEARTH_AUTH", "HEARTH_API_KEY")}
    return subprocess.run([sys.executable, "-m", "webui", "--no-model", "--port", str(free_port()), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env={**clean, **(env or {})})


@pytest.mark.parametrize("args, env, missing, present", [
    (["--listen"], {}, ["--auth USER:PASSWORD", "--api-key KEY"], []),
    (["--listen", "--auth", "me:pw"], {}, ["--api-key KEY"], ["--auth USER"]),
    (["--listen", "--api-key", "k3y"], {}, ["--auth USER:PASSWORD"], ["--api-key KEY"]),
    (["--listen"], {"HEARTH_AUTH": "me:pw"}, ["--api-key KEY", "HEARTH_API_KEY"], ["--auth USER"]),
    (["--host", "0.0.0.0", "--auth", "me:pw"], {}, ["--api-key KEY"], []),
])
def test_serving_on_the_network_without_authentication_is_refused(args, env, missing, present):
    done = run_hearth(*args, env=env)
    assert done.returncode != 0
    message = done.stderr.strip()
    assert message.startswith("hearth: refusing to serve on the network without authentication")
    assert len(message.splitlines()) == 1
    for text in missing:
        assert text in message
    for text in present:
        assert text not in message
    assert "drop --listen" in message
    assert "serving on" not in done.stdout  # it never bound a port


def test_listen_with_both_is_allowed():
    """Checked without binding: tests never listen beyond loopback."""
    args = build_parser().parse_args(["--listen", "--auth", "me:pw", "--api-key", "k3y"])
    settings = settings_from_args(args)
    assert settings.host == "0.0.0.0" and settings.listen
    assert check_network_safety(settings) is None


def test_the_api_key_can_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("HEARTH_API_KEY", "from-env")
    monkeypatch.setenv("HEARTH_AUTH", "me:pw")
    settings = settings_from_args(build_parser().parse_args(["--listen"]))
    assert settings.api_key == "from-env" and check_network_safety(settings) is None


def test_bad_auth_values_are_refused():
    assert "USER:PASSWORD" in run_hearth("--auth", "nocolon").stderr
    assert "must not be blank" in check_network_safety(
        settings_from_args(build_parser().parse_args(["--api-key", "   "])))


def test_keys_are_compared_exactly():
    assert keys_match("sekrit", "sekrit")
    assert not keys_match("sekri", "sekrit") and not keys_match("sekrit ", "sekrit")
    assert keys_match("clé-ünïcode", "clé-ünïcode")
