"""Fault injection for lake writers: a Lake that counts its mutating operations and, at a
chosen one, "crashes" (raises SimulatedCrash, leaving a torn temp file behind for writes) or
first runs a hook (another writer acting in between), so tests can stop a protocol between any
two steps."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from contracts.lake import Lake


class SimulatedCrash(BaseException):
    """The process 'died' here (a BaseException, so no `except Exception` handler absorbs it)."""


class FaultyLake(Lake):
    """A Lake whose n-th mutating operation (0-based) crashes or is preceded by `hook`."""

    def __init__(self, root: str, crash_at: int | None = None, hook_at: int | None = None,
                 hook: Callable[[], None] | None = None, crash_on: tuple[str, int] | None = None,
                 **kwargs: Any):
        """crash_on=("move", 2): crash at the second `move` from now on (instead of crash_at)."""
        super().__init__(root, **kwargs)
        self.crash_at, self.hook_at, self.hook, self.crash_on = crash_at, hook_at, hook, crash_on
        self.ops: list[str] = []

    def _op(self, what: str, rel: str, torn: bool = False) -> None:
        n = len(self.ops)
        self.ops.append(f"{what} {rel}")
        if n == self.hook_at and self.hook is not None:
            self.hook()
        if self.crash_on is not None and self.crash_on[0] == what:
            self.crash_on = (what, self.crash_on[1] - 1)
            if self.crash_on[1] == 0:
                self.crash_at = n
        if n == self.crash_at:
            if torn and self.is_local:  # half-written temp file, as kill -9 mid-write leaves it
                target = self.path(rel)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(f"{os.path.dirname(target)}/.tmp-{os.path.basename(target)}-torn", "wb") as f:
                    f.write(b"PAR1\x00torn")
            raise SimulatedCrash(f"crash at op {n}: {what} {rel}")

    def write_bytes_atomic(self, rel: str, data: bytes, sync: bool = True) -> None:
        self._op("write", rel, torn=True)
        super().write_bytes_atomic(rel, data, sync)

    def write_parquet_atomic(self, rel: str, *args: Any, **kwargs: Any) -> int:
        self._op("write_parquet", rel, torn=True)
        return super().write_parquet_atomic(rel, *args, **kwargs)

    def create_exclusive(self, rel: str, obj: Any) -> bool:
        self._op("create_exclusive", rel)
        return super().create_exclusive(rel, obj)

    def move(self, src_rel: str, dst_rel: str) -> bool:
        self._op("move", f"{src_rel} -> {dst_rel}")
        return super().move(src_rel, dst_rel)

    def delete(self, rel: str) -> bool:
        self._op("delete", rel)
        return super().delete(rel)

    def delete_dir(self, rel: str) -> bool:
        self._op("delete_dir", rel)
        return super().delete_dir(rel)
