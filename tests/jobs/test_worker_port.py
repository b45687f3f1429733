"""A second worker on one host: its web port is taken, and it says so in one line naming
CITYFLOW_WEB_PORT (exit 2) before touching Kafka, instead of dying in a Faust traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def _cityflow(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "CITYFLOW_KAFKA_BOOTSTRAP": "127.0.0.1:1", **env}
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], check=False, capture_output=True, text=True, env=full,
                          timeout=60)


def test_a_taken_web_port_stops_the_worker_with_one_line() -> None:
    with socket.socket() as taken:  # what a first worker's web server looks like from here
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _cityflow("worker", "--web-port", str(port))
    assert result.returncode == 2
    err_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    expected = (f"error: CITYFLOW_WEB_PORT={port}: 127.0.0.1:{port} is already in use, probably by another "
                f"cityflow worker on this host; give each worker its own port (CITYFLOW_WEB_PORT={port + 1} "
                f"or --web-port {port + 1}; 0 = no web server)")
    assert err_lines == [expected]
    assert "Traceback" not in result.stderr


def test_a_bad_web_host_is_refused_at_start() -> None:
    result = _cityflow("worker", CITYFLOW_WEB_HOST="http://0.0.0.0")
    assert result.returncode == 2 and "CITYFLOW_WEB_HOST" in result.stderr and "Traceback" not in result.stderr
