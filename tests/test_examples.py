"""Every script in examples/ runs end to end with tiny models (``--tiny``), so none of them rots."""

import importlib.util
import sys
from pathlib import Path

import pytest

from precision_router import JsonlTraceStore

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


def _load(path):
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # typing.get_type_hints resolves the module's annotations through it
    spec.loader.exec_module(module)
    return module


def test_examples_are_found():
    assert {p.stem for p in EXAMPLES} >= {
        "tool_agent",
        "swap_model_create_agent",
        "middleware_agent",
        "custom_graph",
        "collect_traces",
    }


def _check_custom_graph(out):
    assert out["after"][: len(out["before"])] == out["before"]  # the resumed thread kept its routes
    assert out["indices"] and out["indices"][0] == len(out["before"])  # and continued its step count


def _check_collect_traces(out):
    assert out["episodes"] == 3 and out["steps"] >= 3
    assert Path(out["uplift_probe"]).exists()  # a probe learned from the random routes' outcomes
    if "dataset_rows" in out:  # the [train] extra is installed
        assert out["dataset_rows"] == 3 and Path(out["parquet"]).exists()


EXTRA_ARGS = {"collect_traces": ["--episodes", "3"]}
CHECKS = {"custom_graph": _check_custom_graph, "collect_traces": _check_collect_traces}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_with_tiny_models(path, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # anything an example writes by default lands here
    module = _load(path)
    assert module.__doc__ and "--tiny" in module.__doc__, "say how to run the example in its docstring"
    traces = tmp_path / "traces.jsonl"

    out = module.main(["--tiny", "--traces", str(traces), *EXTRA_ARGS.get(path.stem, [])])

    episodes = JsonlTraceStore(traces).read()
    assert episodes, "the example wrote no episode"
    for episode in episodes:
        assert episode.steps and all(step.route in ("high", "low") for step in episode.steps)
    assert "high" in capsys.readouterr().out  # each example reports the routes it took
    if path.stem in CHECKS:
        CHECKS[path.stem](out)
