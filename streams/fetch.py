"""Raw fetched records for the ingest consumer: aiokafka without a ConsumerRecord per message.

aiokafka's `getmany` wraps every fetched record in a `ConsumerRecord` (eleven fields, two
`len` calls and a headers tuple, in Python). The ingest service reads only `offset`, `key` and
`value`, and that wrapping was the largest single cost of a worker (about 30 % of its CPU on
the benchmark). A consumer built with `value_deserializer=raw_value` gets aiokafka's own
record objects instead (the C `DefaultRecord`, or `LegacyRecord` for old message formats),
which carry exactly those attributes.

The switch is a subclass of aiokafka's `PartitionRecords` that differs only for consumers
marked that way; every other consumer in the process (Faust's own) is untouched. It relies on
two aiokafka internals (`fetcher.PartitionRecords` and its `_consumer_record`): `install`
checks both, and if a future aiokafka changes them it logs a warning and leaves aiokafka as it
is. `raw_value` is an identity function, so the records are then ordinary ConsumerRecords with
the same three attributes: slower, never wrong.

The other per-record cost of fetching is Python's cyclic GC: every fetched record is a tracked
object, and at the default young threshold (700) collections cost about a third of a worker's
CPU. `raise_gc_threshold` sets the worker's (CITYFLOW_GC_YOUNG_THRESHOLD).
"""

from __future__ import annotations

import gc
import logging
from typing import Any

from aiokafka.consumer import fetcher as _fetcher

log = logging.getLogger(__name__)

__all__ = ["install", "raise_gc_threshold", "raw_value"]


def raw_value(value: bytes | None) -> bytes | None:
    """The ingest consumer's value deserializer: the bytes as they are. Also the marker that
    asks for raw records."""
    return value


_Original: Any = _fetcher.PartitionRecords


class _RawPartitionRecords(_Original):  # type: ignore[misc, valid-type]
    def _consumer_record(self, tp: Any, record: Any) -> Any:
        if self._value_deserializer is raw_value:
            return record
        return super()._consumer_record(tp, record)


def install() -> bool:
    """Make consumers built with `value_deserializer=raw_value` return raw records. Idempotent;
    False (and aiokafka unchanged) if aiokafka's internals are not the ones this was built on."""
    current = _fetcher.PartitionRecords
    if current is _RawPartitionRecords:
        return True
    if current is not _Original or not callable(getattr(_Original, "_consumer_record", None)) \
            or "_value_deserializer" not in _Original.__init__.__code__.co_names:
        log.warning("aiokafka %s: fetcher internals changed; ingest uses ConsumerRecords (slower)",
                    getattr(_fetcher, "__version__", "?"))
        return False
    _fetcher.PartitionRecords = _RawPartitionRecords
    return True


def raise_gc_threshold(young: int) -> tuple[int, ...]:
    """Collect young objects every `young` net allocations instead of Python's 700 (each
    fetched record is a tracked object); 0 leaves it as it is. Returns the thresholds now."""
    if young:
        _, *older = gc.get_threshold()
        gc.set_threshold(young, *older)
        log.info("gc thresholds %s (CITYFLOW_GC_YOUNG_THRESHOLD)", gc.get_threshold())
    return gc.get_threshold()
