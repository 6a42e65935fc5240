"""Append-only JSONL trace store: one episode per line, crash-safe, thread- and process-safe."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from precision_router.errors import TraceFileError, TraceSchemaError, TraceWriteError
from precision_router.text import scrub
from precision_router.traces.schema import SCHEMA_VERSION, Episode

try:  # POSIX: serialise appends across processes
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["JsonlTraceStore", "ReadReport", "TraceStore", "read_trace_files"]

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

    Each episode is written on a descriptor opened with ``O_APPEND``, under a thread lock and an
    exclusive ``flock`` (so processes appending to one file never interleave either), then
    ``fsync``-ed. A write either completes or raises :class:`~precision_router.errors.TraceWriteError`:
    a short write (disk full, a file-size limit) is retried until every byte is written, and a
    write that fails part-way is cut back off the file, so ``append`` never acknowledges a torn
    line. A crash can at worst leave a torn *last* line: readers detect it, log a warning and skip
    it (as they skip any corrupt line or stray JSON value); earlier records are never affected,
    and the next append starts on a fresh line. A record of an unknown ``schema_version`` raises
    :class:`~precision_router.errors.TraceSchemaError`. Reading streams the file line by line.

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
        """Append ``episode`` as one line: complete and durable once this returns.

        Raises:
            TraceWriteError: the episode could not be serialised or written completely (the
                path is a folder or not writable, the disk is full, a file-size limit); nothing
                of it is left in the file.
        """
        payload = _serialize(episode, self.path)
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as exc:
                msg = f"cannot open trace file {self.path} for appending ({exc}); give a writable file path"
                raise TraceWriteError(msg) from exc
            try:
                with _exclusive(fd):
                    start = os.fstat(fd).st_size
                    if start and os.pread(fd, 1, start - 1) != b"\n":
                        # A previous writer crashed mid-line: start this record on its own line.
                        payload = b"\n" + payload
                    try:
                        _write_all(fd, payload)
                        if self.fsync:
                            os.fsync(fd)
                    except OSError as exc:
                        with contextlib.suppress(OSError):
                            os.ftruncate(fd, start)  # take back the partial line
                        msg = (
                            f"could not write an episode to {self.path} ({exc}); nothing of it was kept: "
                            "free disk space or raise the file-size limit, then write it again"
                        )
                        raise TraceWriteError(msg) from exc
            finally:
                os.close(fd)

    def extend(self, episodes: Iterable[Episode]) -> None:
        """Append several episodes, one line each."""
        for episode in episodes:
            self.append(episode)

    # -- reading -----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Episode]:
        return self.iter_episodes()

    def iter_episodes(self, *, missing_ok: bool = True) -> Iterator[Episode]:
        """Yield every valid episode in file order, streaming the file line by line.

        Torn or corrupt lines, and JSON values that are not trace records (``42``, ``null``,
        an object without ``schema_version``), are skipped with a warning.

        Args:
            missing_ok: a missing file reads as an empty store (a store nothing was written to
                yet); ``False`` raises :class:`~precision_router.errors.TraceFileError` instead.

        Raises:
            TraceSchemaError: a record has a ``schema_version`` this version cannot read.
            TraceFileError: the path is a folder or unreadable, or missing with ``missing_ok=False``.
        """
        report = ReadReport()
        self.last_report = report
        try:
            fh = self.path.open("rb")
        except FileNotFoundError as exc:
            if missing_ok:
                return
            msg = f"no such trace file: {self.path}; check the path (traces are .jsonl files written by a run)"
            raise TraceFileError(msg) from exc
        except OSError as exc:
            msg = f"cannot read trace file {self.path} ({exc}); give the path of a .jsonl trace file"
            raise TraceFileError(msg) from exc
        with fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    # only the last line can lack its newline: a write interrupted by a crash
                    self._skip(report, number, torn=not raw.endswith(b"\n"))
                    continue
                if not isinstance(record, dict) or "schema_version" not in record:
                    logger.warning("%s:%d: JSON line that is not a trace record skipped", self.path, number)
                    report.skipped_lines.append(number)
                    continue
                version = record["schema_version"]
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

    def read(self, *, missing_ok: bool = True) -> list[Episode]:
        """All valid episodes (see :meth:`iter_episodes`)."""
        return list(self.iter_episodes(missing_ok=missing_ok))

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


def read_trace_files(paths: Sequence[str | os.PathLike[str]]) -> list[Episode]:
    """Every episode of the given trace files, in order; each file must exist.

    Raises:
        TraceFileError: a path is missing, a folder or unreadable.
    """
    return [episode for path in paths for episode in JsonlTraceStore(path).iter_episodes(missing_ok=False)]


def _serialize(episode: Episode, path: Path) -> bytes:
    """One JSON line for ``episode``; lone surrogates in its text are replaced (U+FFFD)."""
    try:
        try:
            text = episode.model_dump_json()
        except ValueError:  # lone surrogates cannot be encoded: replace them and dump again
            text = json.dumps(scrub(episode.model_dump(mode="json")), ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8") + b"\n"
    except (TypeError, ValueError) as exc:
        msg = (
            f"episode {episode.episode_id} cannot be written to {path} as JSON ({exc}); "
            "keep info values JSON-serialisable"
        )
        raise TraceWriteError(msg) from exc


def _write_all(fd: int, payload: bytes) -> None:
    """``os.write`` until every byte is written; a write that makes no progress raises."""
    view = memoryview(payload)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            msg = f"short write: {len(view)} of {len(payload)} bytes not written"
            raise OSError(msg)
        view = view[written:]


@contextlib.contextmanager
def _exclusive(fd: int) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``fd`` (a no-op where ``fcntl`` is missing)."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
