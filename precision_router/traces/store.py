"""Append-only JSONL trace store: one episode per line, crash-safe, thread-safe."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from precision_router.errors import TraceSchemaError
from precision_router.traces.schema import SCHEMA_VERSION, Episode

__all__ = ["JsonlTraceStore", "ReadReport", "TraceStore"]

logger = logging.getLogger(__name__)


@dataclass
class ReadReport:
    """What a read found besides valid episodes."""

    episodes: int = 0
    skipped_lines: list[int] = field(default_factory=list)
    torn_last_line: bool = False


class TraceStore:
    """Interface of a trace store: append whole episodes, read them back."""

    def append(self, episode: Episode) -> None:  # pragma: no cover - interface
        """Persist one finished episode."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[Episode]:  # pragma: no cover - interface
        raise NotImplementedError


class JsonlTraceStore(TraceStore):
    """Episodes as JSON lines in one file.

    Each episode is written with a single ``write`` on a descriptor opened with
    ``O_APPEND``, then flushed and ``fsync``-ed, under a lock, so threads in one process never
    interleave and a crash can at worst leave a torn *last* line. Readers detect a torn or
    corrupt line, log a warning and skip it; earlier records are never affected, and the next
    append starts on a fresh line. A record of an unknown ``schema_version`` raises
    :class:`~precision_router.errors.TraceSchemaError`.

    Args:
        path: the ``.jsonl`` file (created with its parent folders on first append).
        fsync: call ``os.fsync`` after each append (default on; off only for throwaway runs).
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._lock = threading.Lock()
        self.last_report = ReadReport()

    def __repr__(self) -> str:
        return f"JsonlTraceStore({str(self.path)!r})"

    # -- writing -----------------------------------------------------------------------------
    def append(self, episode: Episode) -> None:
        """Append ``episode`` as one line (atomic per line; durable once this returns)."""
        payload = episode.model_dump_json().encode("utf-8") + b"\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if _ends_without_newline(self.path):
                    # A previous writer crashed mid-line: start this record on its own line.
                    payload = b"\n" + payload
                os.write(fd, payload)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)

    def extend(self, episodes: Iterable[Episode]) -> None:
        """Append several episodes, one line each."""
        for episode in episodes:
            self.append(episode)

    # -- reading -----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Episode]:
        return self.iter_episodes()

    def iter_episodes(self) -> Iterator[Episode]:
        """Yield every valid episode in file order; torn or corrupt lines are skipped with a warning.

        Raises:
            TraceSchemaError: a record has a ``schema_version`` this version cannot read.
        """
        report = ReadReport()
        self.last_report = report
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            data = fh.read()
        lines = data.split(b"\n")
        ends_clean = data.endswith(b"\n") or not data
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            is_last = number == len(lines)
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                self._skip(report, number, torn=is_last and not ends_clean)
                continue
            version = record.get("schema_version") if isinstance(record, dict) else None
            if version != SCHEMA_VERSION:
                msg = (
                    f"{self.path}:{number}: trace record has schema_version {version!r}; this "
                    f"precision-router reads version {SCHEMA_VERSION} only. Upgrade "
                    "precision-router, or write these traces to a new file."
                )
                raise TraceSchemaError(msg)
            try:
                episode = Episode.model_validate(record)
            except ValidationError as exc:
                logger.warning("%s:%d: invalid trace record skipped: %s", self.path, number, exc)
                report.skipped_lines.append(number)
                continue
            report.episodes += 1
            yield episode

    def read(self) -> list[Episode]:
        """All valid episodes (see :meth:`iter_episodes`)."""
        return list(self.iter_episodes())

    def _skip(self, report: ReadReport, number: int, *, torn: bool) -> None:
        report.skipped_lines.append(number)
        if torn:
            report.torn_last_line = True
            logger.warning(
                "%s:%d: torn last line (an interrupted write) skipped; earlier records are intact",
                self.path,
                number,
            )
        else:
            logger.warning("%s:%d: corrupt line skipped", self.path, number)

    # -- export ------------------------------------------------------------------------------
    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write every episode to a Parquet file (free-form ``info`` dicts as JSON strings)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [_flat_record(ep) for ep in self.iter_episodes()]
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), out)
        return out


def _flat_record(episode: Episode) -> dict[str, Any]:
    record = episode.model_dump()
    record["info"] = json.dumps(record["info"])
    for step in record["steps"]:
        step["info"] = json.dumps(step["info"])
    return record


def _ends_without_newline(path: Path) -> bool:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size == 0:
        return False
    with path.open("rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) != b"\n"
