"""Settings: every setting refuses an invalid value at start naming its variable and what is
valid; values can come from a CITYFLOW_CONFIG file (.toml or .env) below the environment; and
`cityflow config show` says where each value came from with secrets masked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.settings import Settings, SettingsError, effective_settings, load_settings

# One invalid value per setting and a fragment of the message that says what is valid.
INVALID: dict[str, tuple[str, str]] = {
    "kafka_bootstrap": ("localhost", "expected host:port"),
    "kafka_security_protocol": ("TLS", "'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT' or 'SASL_SSL'"),
    "kafka_sasl_mechanism": ("GSSAPI", "'PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512'"),
    "kafka_ssl_cafile": ("/nonexistent/ca.pem", "expected a readable PEM file"),
    "partitions": ("0", "greater than or equal to 1"),
    "topic_replication_factor": ("many", "valid integer"),
    "topic_retention_hours": ("-1", "greater than 0"),
    "group_id": ("city flow!", "should match pattern"),
    "session_timeout_s": ("0", "greater than 0"),
    "rebalance_timeout_s": ("soon", "valid number"),
    "heartbeat_interval_s": ("-1", "greater than 0"),
    "fetch_max_records": ("0", "greater than or equal to 1"),
    "gc_young_threshold": ("-5", "greater than or equal to 0"),
    "lake": ("ftp://host/lake", "unknown scheme 'ftp'"),
    "flush_rows": ("0", "greater than or equal to 1"),
    "warehouse_remote_io": ("download", "'auto', 'fsspec' or 'extension'"),
    "flush_seconds": ("0", "greater than 0"),
    "idle_flush_rows": ("-1", "greater than or equal to 0"),
    "window_traffic": ('{"size_s": -5}', "size_s must be a positive number of seconds"),
    "window_lighting": ("15m", "expected a JSON object of overrides like"),
    "window_wifi": ('{"hop_s": 7}', "hop"),
    "window_logistics": ('{"grace_s": -1}', "grace"),
    "window_supply": ('{"hop_s": 7}', "hop_s"),
    "detectors": ("everything", "expected 'all', 'none' or detector kinds"),
    "max_event_age_days": ("0", "greater than 0"),
    "max_event_future_s": ("-1", "greater than or equal to 0"),
    "web_port": ("70000", "less than or equal to 65535"),
    "web_host": ("http://0.0.0.0", "expected an IP address or host name"),
    "log_level": ("LOUD", "'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
    "log_format": ("xml", "'text' or 'json'"),
    "report_tz": ("Mars/Olympus", "IANA"),
    "detectors_tz": ("Berlin", "IANA"),
    "district_stage_interval_s": ("0", "greater than 0"),
}
# Settings for which any value is valid, and why.
ANY_VALUE = {
    "kafka_sasl_username": "any user name the cluster knows",
    "kafka_sasl_password": "a secret: any string",
    "warehouse_db": "any file path (created on first build)",
    "datadir": "any directory path (created on start)",
    "detector_overrides": "several variables, CITYFLOW_DETECTOR_<KIND>; checked by "
                          "tests/streams/detectors/test_detector_overrides.py",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CITYFLOW_"):
            monkeypatch.delenv(name)


def test_every_setting_is_covered() -> None:
    assert set(INVALID) | set(ANY_VALUE) == set(Settings.model_fields)
    assert not set(INVALID) & set(ANY_VALUE)


@pytest.mark.parametrize("field", sorted(INVALID))
def test_an_invalid_value_names_the_variable_and_what_is_valid(field: str, monkeypatch: pytest.MonkeyPatch) -> None:
    value, valid = INVALID[field]
    monkeypatch.setenv(f"CITYFLOW_{field.upper()}", value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert f"CITYFLOW_{field.upper()}" in message and valid in message, message


def test_a_settings_file_is_below_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "cityflow.toml"
    toml.write_text('partitions = 8\ngroup_id = "from-file"\nkafka_sasl_password = "hunter2"\n'
                    'lake = "s3://key:secret@bucket/lake"\n[window_traffic]\nsize_s = 120\n')
    monkeypatch.setenv("CITYFLOW_CONFIG", str(toml))
    monkeypatch.setenv("CITYFLOW_GROUP_ID", "from-env")
    s = load_settings(web_port=7000)
    assert (s.partitions, s.group_id, s.window_traffic, s.web_port) == (8, "from-env", {"size_s": 120}, 7000)
    rows = {f: (value, source) for f, _, value, source in effective_settings(s, {"web_port": 7000})}
    assert rows["partitions"] == (8, f"file {toml}")
    assert rows["group_id"] == ("from-env", "environment")
    assert rows["web_port"] == (7000, "argument")
    assert rows["flush_rows"] == (50_000, "default")
    assert rows["kafka_sasl_password"] == ("***", f"file {toml}")
    assert rows["lake"] == ("s3://key:***@bucket/lake", f"file {toml}")

    env = tmp_path / "prod.env"
    env.write_text("CITYFLOW_PARTITIONS=12\nCITYFLOW_WINDOW_WIFI={\"size_s\": 600}\n")
    monkeypatch.setenv("CITYFLOW_CONFIG", str(env))
    s = load_settings()
    assert (s.partitions, s.window_wifi) == (12, {"size_s": 600})


@pytest.mark.parametrize("content, suffix, message", [
    ("partitons = 8\n", ".toml", "unknown setting(s) partitons"),
    ("partitions = \n", ".toml", "not valid TOML"),
    ("CITYFLOW_PARTITONS=8\n", ".env", "unknown setting(s) CITYFLOW_PARTITONS"),
    ("PATH=/bin\n", ".env", "only CITYFLOW_* variables"),
    ('partitions = "many"\n', ".toml", "CITYFLOW_PARTITIONS: Input should be a valid integer"),
])
def test_a_bad_settings_file_is_refused_naming_it(content: str, suffix: str, message: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / f"cityflow{suffix}"
    path.write_text(content)
    monkeypatch.setenv("CITYFLOW_CONFIG", str(path))
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert message in str(err.value)
    if "valid integer" in message:
        assert f"from file {path}" in str(err.value)
    monkeypatch.setenv("CITYFLOW_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(SettingsError, match="no such file"):
        load_settings()


def test_config_show_command(tmp_path: Path) -> None:
    toml = tmp_path / "cityflow.toml"
    toml.write_text('kafka_sasl_password = "hunter2"\npartitions = 6\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYFLOW_")}
    env["CITYFLOW_CONFIG"] = str(toml)

    def cityflow(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "jobs.cli", *args], check=False, capture_output=True, text=True,
                              env={**env, **extra}, timeout=60)

    shown = cityflow("config", "show", "--format", "json", CITYFLOW_FLUSH_SECONDS="2.5")
    assert shown.returncode == 0, shown.stderr
    rows = {r["variable"]: r for r in json.loads(shown.stdout)}
    assert rows["CITYFLOW_PARTITIONS"]["value"] == 6 and rows["CITYFLOW_PARTITIONS"]["source"] == f"file {toml}"
    assert rows["CITYFLOW_FLUSH_SECONDS"]["source"] == "environment"
    assert rows["CITYFLOW_KAFKA_SASL_PASSWORD"]["value"] == "***" and "hunter2" not in shown.stdout

    bad = cityflow("config", "show", CITYFLOW_WEB_PORT="-1")
    assert bad.returncode == 2 and "CITYFLOW_WEB_PORT" in bad.stderr and "Traceback" not in bad.stderr
