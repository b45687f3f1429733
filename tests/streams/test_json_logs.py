"""`--log-format json` / CITYFLOW_LOG_FORMAT=json: a real worker's whole log is JSON lines (Faust's
own output included), each with time, level, logger and worker id, and topic/partition where the
record is about one; a hostile value cannot break a line."""

from __future__ import annotations

import json
import logging

import pytest

from jobs.logs import JsonFormatter, RedactSecrets
from jobs.runner import WorkerProcess
from streams.broker import city_topics, ensure_topics


def test_json_formatter_fields_and_escaping() -> None:
    record = logging.LogRecord("streams.sink", logging.WARNING, __file__, 1,
                               'flush topic=%s partition=%d device="%s"', ("city.traffic.v1", 3, 'x"\ny'), None)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    out = json.loads(line)
    assert out["level"] == "WARNING" and out["logger"] == "streams.sink"
    assert out["topic"] == "city.traffic.v1" and out["partition"] == 3
    assert out["message"].endswith('device="x"\ny"') and out["time"].endswith("Z") and ":" in out["worker"]


@pytest.mark.parametrize(("message", "args", "shown"), [
    # kafka-python logs its whole configuration at DEBUG, i.e. with --verbose
    ("Starting KafkaAdminClient with configuration: %s",
     ({"sasl_plain_username": "cityflow", "sasl_plain_password": "hunter2", "ssl_password": None},),
     "{'sasl_plain_username': 'cityflow', 'sasl_plain_password': '***', 'ssl_password': None}"),
    ("connecting with password=hunter2 user=%s", ("bob",), "connecting with password=*** user=bob"),
    ('{"client_secret": "hunter2"}', (), '{"client_secret": "***"}'),
])
def test_passwords_never_reach_the_log(message: str, args: tuple, shown: str) -> None:
    record = logging.LogRecord("kafka.admin.client", logging.DEBUG, __file__, 1, message, args, None)
    assert RedactSecrets().filter(record)
    assert "hunter2" not in record.getMessage() and record.getMessage().endswith(shown)


@pytest.mark.e2e
def test_a_worker_logs_json_lines_only(fresh_broker, tmp_path) -> None:
    ensure_topics(fresh_broker, city_topics(4))
    worker = WorkerProcess(fresh_broker, str(tmp_path / "lake"), tmp_path / "w.log",
                           env={"CITYFLOW_LOG_FORMAT": "json"}).start()
    try:
        worker.wait_ready(timeout=60)
    finally:
        assert worker.stop() == 0, worker.log_tail()
    lines = [line for line in worker.log_path.read_text().splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
    assert len(records) > 5
    assert all({"time", "level", "logger", "message", "worker"} <= set(r) for r in records)
    assert any(r.get("topic", "").startswith("city.") and isinstance(r.get("partition"), int) for r in records), \
        "no record names its topic and partition"
