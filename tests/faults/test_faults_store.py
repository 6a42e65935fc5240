"""Fault suite, trace store: crashes, concurrent processes, short writes, unwritable stores, junk lines.

Each test reproduces a defect of issue 14 (or guards what already held, as noted) with real
processes, signals and resource limits rather than mocks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from precision_router import AlwaysLow, ConversationTracker, Episode, JsonlTraceStore, PrecisionRouterError, Step

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX faults (signals, flock, rlimits)")


def _python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _episode(i: int = 0, size: int = 100) -> Episode:
    return Episode(conversation_id=f"c{i}", task="t" * size, steps=[Step(index=0, route="low", action="a")])


# -- kill -9 of a writing process (held before the fix: a guard) ------------------------------------

WRITER = """
import sys
from precision_router import Episode, JsonlTraceStore, Step
store = JsonlTraceStore(sys.argv[1])
i = 0
while True:
    episode = Episode(conversation_id=f"{sys.argv[2]}-{i}", task="x" * 40_000, steps=[Step(index=0, route="low")])
    store.append(episode)
    print(episode.conversation_id, flush=True)
    i += 1
"""


def test_kill_9_mid_write_loses_no_acknowledged_episode(trace_path):
    acknowledged: list[str] = []
    for trial in range(3):
        writer = _python(WRITER, str(trace_path), f"w{trial}")
        time.sleep(1.5 + 0.1 * trial)
        writer.send_signal(signal.SIGKILL)
        out, _ = writer.communicate()
        acknowledged += out.split()
        # a survivor appends after the crash; its record must start on a fresh line
        JsonlTraceStore(trace_path).append(_episode(trial))
    assert acknowledged, "the writer never got an append acknowledged"
    store = JsonlTraceStore(trace_path)
    read = {e.conversation_id for e in store.read()}
    assert set(acknowledged) <= read
    assert {"c0", "c1", "c2"} <= read
    # at most one torn line per crash, and only ever a whole record lost (never an acknowledged one)
    assert len(store.last_report.skipped_lines) <= 3


# -- concurrent appends from several processes (defect 12) ------------------------------------------

APPENDER = """
import sys, threading
from precision_router import Episode, JsonlTraceStore, Step
store = JsonlTraceStore(sys.argv[1], fsync=False)
def work(t):
    for i in range(int(sys.argv[3])):
        store.append(Episode(conversation_id=f"{sys.argv[2]}-{t}-{i}", task="y" * (1000 + 997 * (i % 40)),
                             steps=[Step(index=0, route="high")]))
threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
for t in threads: t.start()
for t in threads: t.join()
"""


def test_concurrent_processes_append_whole_lines_and_no_blank_ones(trace_path):
    per_thread = 60
    writers = [_python(APPENDER, str(trace_path), f"p{k}", str(per_thread)) for k in range(4)]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    data = trace_path.read_bytes()
    store = JsonlTraceStore(trace_path)
    episodes = store.read()
    assert len(episodes) == 4 * 2 * per_thread
    assert store.last_report.skipped_lines == []
    assert data.endswith(b"\n")
    assert b"\n\n" not in data and not data.startswith(b"\n"), "blank lines: the tail check raced another process"


# -- short writes under a file-size limit (defect 3) ------------------------------------------------

LIMITED = """
import json, resource, signal, sys
from precision_router import Episode, JsonlTraceStore, PrecisionRouterError, Step
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG / short writes instead of being killed
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
store = JsonlTraceStore(sys.argv[1])
acked, error = [], None
for i in range(40):
    episode = Episode(conversation_id=f"e{i}", task="z" * 30_000, steps=[Step(index=0, route="low")])
    try:
        store.append(episode)
    except Exception as exc:
        error = {"type": type(exc).__name__, "ours": isinstance(exc, PrecisionRouterError)}
        break
    acked.append(episode.conversation_id)
print(json.dumps({"acked": acked, "error": error}))
"""


def test_a_short_write_is_never_acknowledged(trace_path):
    proc = _python(LIMITED, str(trace_path))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["error"] is not None, "append() returned normally past the file-size limit"
    assert result["error"]["ours"], result
    store = JsonlTraceStore(trace_path)
    assert [e.conversation_id for e in store.read()] == result["acked"]
    assert store.last_report.skipped_lines == []  # the partial line was taken back
    assert trace_path.read_bytes().endswith(b"\n")


# -- unwritable stores: the episode stays open and a retry writes it (defect 2) ----------------------


def _tracker_with_one_step(store) -> ConversationTracker:
    tracker = ConversationTracker(AlwaysLow(), store)
    tracker.record("t1", Step(index=0, route="low", action="go"), task="task")
    return tracker


def test_failed_write_to_a_folder_keeps_the_episode_for_a_retry(tmp_path):
    folder = tmp_path / "is-a-folder.jsonl"
    folder.mkdir()
    tracker = _tracker_with_one_step(JsonlTraceStore(folder))
    with pytest.raises(PrecisionRouterError, match="is-a-folder"):
        tracker.end_episode("t1", success=True)
    assert tracker.open_conversations() == ["t1"]
    tracker.trace_store = JsonlTraceStore(tmp_path / "good.jsonl")
    episode = tracker.end_episode("t1", success=True)
    assert episode is not None and episode.success and len(episode.steps) == 1
    assert [e.conversation_id for e in JsonlTraceStore(tmp_path / "good.jsonl").read()] == ["t1"]
    assert tracker.open_conversations() == []


def test_unserialisable_episode_is_kept_and_reported(trace_path):
    tracker = _tracker_with_one_step(JsonlTraceStore(trace_path))
    with pytest.raises(PrecisionRouterError, match="JSON"):
        tracker.end_episode("t1", info={"handle": object()})
    assert tracker.open_conversations() == ["t1"]
    assert tracker.end_episode("t1", info={"ok": 1}) is not None


READ_ONLY = """
import json, sys
from precision_router import AlwaysLow, ConversationTracker, JsonlTraceStore, PrecisionRouterError, Step
tracker = ConversationTracker(AlwaysLow(), JsonlTraceStore(sys.argv[1]))
tracker.record("t1", Step(index=0, route="low"), task="task")
try:
    tracker.end_episode("t1")
    error = None
except Exception as exc:
    error = {"type": type(exc).__name__, "ours": isinstance(exc, PrecisionRouterError)}
print(json.dumps({"error": error, "open": tracker.open_conversations()}))
"""


def _without_root_file_override() -> None:
    """In the child: drop CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, so even root obeys file modes."""
    if os.geteuid() != 0:
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_read_only_store_raises_and_keeps_the_episode():
    folder = Path(tempfile.mkdtemp(prefix="pr-readonly-"))
    try:
        folder.chmod(0o755)
        path = folder / "traces.jsonl"
        JsonlTraceStore(path).append(_episode())
        path.chmod(0o444)
        proc = _python(READ_ONLY, str(path), preexec_fn=_without_root_file_override)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        result = json.loads(out)
        assert result["error"] == {"type": "TraceWriteError", "ours": True}
        assert result["open"] == ["t1"]
        assert len(JsonlTraceStore(path).read()) == 1
    finally:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()


# -- reading: stray JSON values, missing files (defect 9) -------------------------------------------


@pytest.mark.parametrize("stray", [b"42", b"null", b'{"a": 1}', b'"text"', b"[1, 2]"])
def test_a_stray_json_line_is_skipped_like_other_junk(trace_path, stray):
    store = JsonlTraceStore(trace_path)
    store.append(_episode(0))
    with trace_path.open("ab") as f:
        f.write(stray + b"\nnot json at all\n")
    store.append(_episode(1))
    assert [e.conversation_id for e in store.read()] == ["c0", "c1"]
    assert store.last_report.skipped_lines == [2, 3]


def test_a_missing_trace_file_is_a_clear_error(tmp_path):
    from precision_router.errors import TraceFileError
    from precision_router.traces.store import read_trace_files

    with pytest.raises(TraceFileError, match="no such trace file"):
        read_trace_files([tmp_path / "missing.jsonl"])
    with pytest.raises(TraceFileError):
        JsonlTraceStore(tmp_path / "missing.jsonl").read(missing_ok=False)
    with pytest.raises(TraceFileError):
        JsonlTraceStore(tmp_path).read()  # a folder
    assert JsonlTraceStore(tmp_path / "missing.jsonl").read() == []  # a store nothing was written to yet


def test_reading_streams_the_file(trace_path):
    store = JsonlTraceStore(trace_path)
    store.append(_episode(0))
    episodes = iter(store)
    assert next(episodes).conversation_id == "c0"
    store.append(_episode(1))  # written after reading began: a streaming reader still sees it
    assert next(episodes).conversation_id == "c1"
