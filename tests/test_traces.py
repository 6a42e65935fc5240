import json
import threading

import pytest

from precision_router.errors import TraceSchemaError
from precision_router.traces import Episode, JsonlTraceStore, Step


def _episode(i: int, n_steps: int = 3) -> Episode:
    steps = [
        Step(index=j, observation=f"obs {i}.{j}", action=f"act {i}.{j}", route="high" if j % 2 else "low", p_high=0.5)
        for j in range(n_steps)
    ]
    return Episode(conversation_id=f"c{i}", task=f"task {i}", steps=steps, success=i % 2 == 0)


def test_round_trip_keeps_every_field(trace_path):
    store = JsonlTraceStore(trace_path)
    episode = _episode(1)
    episode.steps[0].candidates = ["go to a", "go to b"]
    episode.steps[0].logprobs = {"high": [-0.1, -2.0], "low": [-0.5, -1.0]}
    episode.steps[0].kl = 0.3
    episode.info["game"] = "g1"
    store.append(episode)
    (back,) = store.read()
    assert back == episode
    assert back.n_high == 1 and back.high_share == pytest.approx(1 / 3)


def test_torn_last_line_is_reported_and_skipped(trace_path, caplog):
    store = JsonlTraceStore(trace_path)
    for i in range(3):
        store.append(_episode(i))
    data = trace_path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    trace_path.write_bytes(data[: last_start + 40])  # crash in the middle of the third record
    with caplog.at_level("WARNING"):
        episodes = store.read()
    assert [e.conversation_id for e in episodes] == ["c0", "c1"]
    assert episodes[0].steps == _episode(0).steps and episodes[1].steps == _episode(1).steps
    assert store.last_report.torn_last_line
    assert store.last_report.skipped_lines == [3]
    assert "torn last line" in caplog.text


def test_append_after_torn_line_starts_a_fresh_line(trace_path):
    store = JsonlTraceStore(trace_path)
    store.append(_episode(0))
    with trace_path.open("ab") as fh:
        fh.write(b'{"schema_version": 1, "epis')  # a crashed writer
    store.append(_episode(1))
    episodes = store.read()
    assert [e.conversation_id for e in episodes] == ["c0", "c1"]
    assert store.last_report.skipped_lines == [2]
    assert not store.last_report.torn_last_line


def test_unknown_schema_version_is_refused(trace_path):
    record = _episode(0).model_dump()
    record["schema_version"] = 99
    trace_path.write_text(json.dumps(record) + "\n")
    with pytest.raises(TraceSchemaError, match="schema_version 99"):
        JsonlTraceStore(trace_path).read()
    with pytest.raises(TraceSchemaError):
        Episode.model_validate(record)


def test_many_threads_never_interleave(trace_path):
    store = JsonlTraceStore(trace_path, fsync=False)

    def write(worker: int) -> None:
        for k in range(25):
            store.append(_episode(worker * 100 + k, n_steps=20))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    episodes = store.read()
    assert len(episodes) == 200
    assert not store.last_report.skipped_lines
    for episode in episodes:
        i = int(episode.conversation_id[1:])
        assert all(step.action.startswith(f"act {i}.") for step in episode.steps)


def test_parquet_export_and_datasets_json_load(trace_path, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    datasets = pytest.importorskip("datasets")
    store = JsonlTraceStore(trace_path)
    first = _episode(0)
    first.info = {"game": "a", "n": 1}
    second = _episode(1)
    second.info = {"other": [1, 2]}
    store.extend([first, second])
    table = pq.read_table(store.to_parquet(tmp_path / "t.parquet"))
    assert table.num_rows == 2
    assert json.loads(table.column("info")[1].as_py()) == {"other": [1, 2]}
    ds = datasets.load_dataset("json", data_files=str(trace_path), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == 2
    assert ds[0]["steps"][1]["route"] == "high"
