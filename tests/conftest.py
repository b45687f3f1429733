"""Shared pytest fixtures: a Kafka broker for the session (embedded Tansu unless
CITYFLOW_KAFKA_BOOTSTRAP is set), unique topics on it, and a temporary lake directory."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from contracts import lake as L
from streams.broker import EmbeddedBroker, ensure_topics


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a Kafka for the whole session: CITYFLOW_KAFKA_BOOTSTRAP or an embedded one."""
    external = os.environ.get("CITYFLOW_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker().start(log_path=log_path) as broker:
        yield broker.bootstrap


@pytest.fixture
def lake_dir(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def topic_factory(kafka_bootstrap: str) -> Callable[..., str]:
    """Create a uniquely named topic: `topic_factory(partitions=4, prefix="traffic")` -> name."""

    def create(partitions: int = 1, prefix: str = "test") -> str:
        name = f"test.{prefix}.{uuid.uuid4().hex[:10]}"
        ensure_topics(kafka_bootstrap, {name: partitions})
        return name

    return create


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[str]:
    """A broker of the test's own (memory storage) so the fixed city topics start empty;
    for tests that run real workers on city.<source>.v1 topics."""
    external = os.environ.get("CITYFLOW_KAFKA_BOOTSTRAP")
    if external:
        pytest.skip("needs its own broker; CITYFLOW_KAFKA_BOOTSTRAP points at a shared one")
    with EmbeddedBroker().start(log_path=tmp_path / "tansu.log") as broker:
        yield broker.bootstrap


# -- a temp lake and warehouse file (tests that need other wiring define their own `lake`)
@pytest.fixture
def lake(tmp_path: Path) -> L.Lake:
    return L.Lake(str(tmp_path / "lake"))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "wh" / "city.duckdb"
