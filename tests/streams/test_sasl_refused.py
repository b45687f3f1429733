"""cityflow's SASL settings against a broker that really requires a login.

The embedded broker (Tansu 0.6) with --authentication speaks SASL SCRAM-SHA-512 and refuses
every request before a login. It keeps no users in memory storage (its `user create` must
itself log in first), so no login can succeed here: what these tests pin is that the client
really performs the SCRAM exchange with the configured user, and that a refused login or a
client without security settings ends each command with one line naming the settings to check,
not a traceback, a hang or a misleading "is it running?". A successful SASL login against a
real cluster is not tested here (docs/deploy.md says so)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.broker import EmbeddedBroker

SECRET = "s3cr3t-not-in-any-output"


@pytest.fixture(scope="module")
def login_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log_path = tmp_path_factory.mktemp("sasl") / "tansu.log"
    with EmbeddedBroker(authentication=True).start(log_path=log_path) as broker:
        yield broker


def _cityflow(bootstrap: str, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ,
        "CITYFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "CITYFLOW_LAKE": str(tmp_path / "lake"),
        "CITYFLOW_WEB_PORT": "0",
        **env,
    }
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], check=False, capture_output=True,
                          text=True, env=full, timeout=120)


def _sasl(user: str) -> dict[str, str]:
    return {
        "CITYFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "CITYFLOW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "CITYFLOW_KAFKA_SASL_USERNAME": user,
        "CITYFLOW_KAFKA_SASL_PASSWORD": SECRET,
    }


def _error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_a_refused_login_stops_the_worker_with_one_line(login_broker: EmbeddedBroker, tmp_path: Path) -> None:
    result = _cityflow(login_broker.bootstrap, tmp_path, "worker", **_sasl("lamp-operator"))
    assert result.returncode == 1, result.stderr[-2000:]
    lines = _error_lines(result)
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(f"error: {login_broker.bootstrap} accepts connections, but SASL SCRAM-SHA-512 "
                               "login as 'lamp-operator' (SASL_PLAINTEXT) did not succeed")
    assert "CITYFLOW_KAFKA_SASL_USERNAME, CITYFLOW_KAFKA_SASL_PASSWORD" in lines[0]
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stderr + result.stdout
    # the worker stopped before it opened its web server or landed anything
    assert not (tmp_path / "lake").exists() or not any((tmp_path / "lake").rglob("*.parquet"))


def test_the_client_performs_the_scram_exchange_with_the_configured_user(login_broker: EmbeddedBroker,
                                                                          tmp_path: Path) -> None:
    """The refusal above comes from the broker's user check, not from a client that never tried:
    kafka-python sent the SCRAM client-first message naming the user (seen in its debug log, where
    the client also logs its configuration: the password must be masked there)."""
    result = _cityflow(login_broker.bootstrap, tmp_path, "--verbose", "topics", "create", **_sasl("wifi-desk"))
    assert result.returncode == 1
    lines = _error_lines(result)
    assert len(lines) == 1 and "login as 'wifi-desk' (SASL_PLAINTEXT) did not succeed" in lines[0]
    assert "'sasl_plain_password': '***'" in result.stderr
    assert "SaslHandshakeRequest" in result.stderr and "mechanism='SCRAM-SHA-512'" in result.stderr
    assert "n=wifi-desk," in result.stderr  # SCRAM client-first: n=<user>,r=<nonce>
    assert SECRET not in result.stderr + result.stdout


@pytest.mark.slow  # ~13 s: the client's bootstrap timeout
def test_a_client_without_security_settings_is_told_which_setting_to_set(login_broker: EmbeddedBroker,
                                                                        tmp_path: Path) -> None:
    result = _cityflow(login_broker.bootstrap, tmp_path, "topics", "describe")
    assert result.returncode == 1
    lines = _error_lines(result)
    assert len(lines) == 1 and "accepts connections, but it did not answer this client as Kafka" in lines[0]
    assert "CITYFLOW_KAFKA_SECURITY_PROTOCOL" in lines[0] and "Traceback" not in result.stderr


def test_nothing_listening_still_says_no_kafka_answered(tmp_path: Path) -> None:
    with EmbeddedBroker(authentication=True).start(log_path=tmp_path / "t.log") as broker:
        address = broker.bootstrap
    result = _cityflow(address, tmp_path, "topics", "describe", **_sasl("x"))  # stopped: nothing listens
    assert result.returncode == 1
    lines = _error_lines(result)
    assert len(lines) == 1 and lines[0].startswith(f"error: no Kafka answered at {address}")
