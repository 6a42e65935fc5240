"""Fault suite, the CLI: every bad argument exits with status 2 and one line, before any model loads."""

from __future__ import annotations

import pytest

from precision_router.cli import main


def _refuse(*args, **kwargs):
    raise AssertionError("a model, checkpoint or game set was loaded before the arguments were checked")


@pytest.fixture
def files(tmp_path, monkeypatch):
    """Trace and checkpoint files, and every loader replaced by one that fails the test."""
    import precision_router
    import precision_router.models.pair
    from precision_router.routing.encoder import StepEncoder
    from precision_router.routing.learned import LearnedRouter
    from precision_router.routing.network import RouterNet

    # the package first: reading its lazy attribute caches the real function, which the undo restores
    monkeypatch.setattr(precision_router, "load_precision_pair", _refuse, raising=False)
    monkeypatch.setattr(precision_router.models.pair, "load_precision_pair", _refuse)
    monkeypatch.setattr(RouterNet, "load", _refuse)
    monkeypatch.setattr(LearnedRouter, "from_checkpoint", _refuse)
    monkeypatch.setattr(StepEncoder, "__init__", _refuse)
    try:
        import precision_router_alfworld.cli as alfworld_cli
        import precision_router_alfworld.factory as factory
    except ImportError:
        pass
    else:
        for module in (alfworld_cli, factory):
            for name in ("load_pair", "load_models", "resolve_games"):
                monkeypatch.setattr(module, name, _refuse, raising=False)
    traces = tmp_path / "kl.jsonl"
    traces.write_text("")
    (tmp_path / "router.pt").write_bytes(b"")
    (tmp_path / "folder").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


CORE = {
    "unknown policy": ["calibrate", "--traces", "kl.jsonl", "--policy", "smart", "--target-share", "0.3"],
    "target share 2": ["calibrate", "--traces", "kl.jsonl", "--policy", "entropy@0", "--target-share", "2"],
    "negative share": ["calibrate", "--traces", "kl.jsonl", "--policy", "entropy@0", "--target-share", "-0.1"],
    "random in calibrate": ["calibrate", "--traces", "kl.jsonl", "--policy", "random:0.3", "--target-share", "0.3"],
    "missing checkpoint": [
        "calibrate",
        "--traces",
        "kl.jsonl",
        "--policy",
        "learned:missing.pt",
        "--target-share",
        ".3",
    ],
    "entropy@abc": ["calibrate", "--traces", "kl.jsonl", "--policy", "entropy@abc", "--target-share", "0.3"],
    "entropy@nan": ["calibrate", "--traces", "kl.jsonl", "--policy", "entropy@nan", "--target-share", "0.3"],
    "pt@abc": ["calibrate", "--traces", "kl.jsonl", "--policy", "learned:router.pt@abc", "--target-share", "0.3"],
    "missing traces": ["calibrate", "--traces", "none.jsonl", "--policy", "entropy@0", "--target-share", "0.3"],
    "tau 1.5": ["train-klst", "kl.jsonl", "--out", "r.pt", "--tau", "1.5"],
    "traces are a folder": ["train-klst", "folder", "--out", "r.pt"],
    "missing klst traces": ["train-klst", "none.jsonl", "--out", "r.pt"],
    "out is a folder": ["train-klst", "kl.jsonl", "--out", "folder"],
    "probe tau": ["train-probe", "kl.jsonl", "--out", "p.json", "--labels", "kl", "--tau", "0"],
    "low gptq-9bit": ["models", "--prepare", "smollm2-135m-instruct", "--low", "gptq-9bit"],
}

ALFWORLD = {
    "run: unknown policy": ["alfworld", "run", "--policy", "smart"],
    "run: unknown task type": ["alfworld", "run", "--task-types", "make_coffee"],
    "run: low gptq-9bit": ["alfworld", "run", "--low", "gptq-9bit"],
    "run: high gptq-3bit": ["alfworld", "run", "--high", "gptq-3bit"],
    "run: traces are a folder": ["alfworld", "run", "--traces", "folder"],
    "run: missing checkpoint": ["alfworld", "run", "--policy", "learned:missing.pt"],
    "eval: calibrated share abc": [
        "eval",
        "--policies",
        "high",
        "calibrated:entropy@0:abc",
        "--calibration-traces",
        "kl.jsonl",
    ],
    "eval: calibrated random": ["eval", "--policies", "calibrated:random:0.3:0.2", "--calibration-traces", "kl.jsonl"],
    "eval: no calibration traces": ["eval", "--policies", "oracle-kl:0.3"],
    "eval: late bad policy": ["eval", "--policies", "high", "low", "learned:missing.pt"],
    "eval: calibration traces missing": ["eval", "--policies", "high", "--calibration-traces", "none.jsonl"],
    "generate: unknown task type": ["alfworld", "generate", "out", "--task-types", "make_coffee"],
    "grpo: missing init": ["train-grpo", "--out", "g.pt", "--init", "missing.pt"],
    "grpo: bad reference": ["train-grpo", "--out", "g.pt", "--references", "random:2"],
    "counterfactual: bad base": ["collect-counterfactual", "--base", "random:1.5"],
    "collect-kl: bad task type": ["collect-kl", "--task-types", "nope"],
    "eval: zero workers": ["eval", "--workers", "0"],
    "eval: negative skip": ["eval", "--skip", "-1"],
    "grpo: negative workers": ["train-grpo", "--out", "g.pt", "--workers", "-1"],
}


def _check_exit(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err


@pytest.mark.parametrize("argv", CORE.values(), ids=CORE.keys())
def test_bad_core_arguments_exit_2_with_one_line(files, capsys, argv):
    _check_exit(argv, capsys)


@pytest.mark.parametrize("argv", ALFWORLD.values(), ids=ALFWORLD.keys())
def test_bad_alfworld_arguments_exit_2_with_one_line(files, capsys, argv):
    pytest.importorskip("precision_router_alfworld.cli")
    _check_exit(argv, capsys)


def test_a_checkpoint_path_with_at_signs_is_accepted(tmp_path):
    from precision_router.routing.spec import parse_policy_spec

    folder = tmp_path / "run@2026"
    folder.mkdir()
    (folder / "router.pt").write_bytes(b"")
    assert parse_policy_spec(f"learned:{folder}/router.pt").path == f"{folder}/router.pt"
    parsed = parse_policy_spec(f"learned:{folder}/router.pt@0.4")
    assert (parsed.path, parsed.value) == (f"{folder}/router.pt", 0.4)


@pytest.mark.parametrize("spec", ["entropy@abc", "entropy@nan", "margin@inf", "random:nan", "random:2", "oracle-kl@x"])
def test_bad_specs_raise_a_spec_error(spec):
    from precision_router import PolicySpecError
    from precision_router.routing.spec import router_from_spec

    with pytest.raises(PolicySpecError, match="bad policy"):
        router_from_spec(spec)


@pytest.mark.parametrize("p_high", ["0.5", None, True, float("nan"), 1.5, [0.5]], ids=repr)
def test_random_router_refuses_what_is_not_a_probability(p_high):
    from precision_router import PolicySpecError, RandomRouter

    with pytest.raises(PolicySpecError, match="p_high must be a number in"):
        RandomRouter(p_high)


def test_the_same_model_as_high_and_low_is_refused():
    from precision_router import AlwaysLow, PrecisionRouterError, PrecisionRoutingMiddleware, RoutedChatModel
    from precision_router.testing import ScriptedChatModel

    model = ScriptedChatModel()
    with pytest.raises(ValueError, match="same model object"):  # pydantic wraps it in a ValidationError
        RoutedChatModel(model, model, AlwaysLow())
    with pytest.raises(PrecisionRouterError, match="same model object"):
        PrecisionRoutingMiddleware(model, model, AlwaysLow())


def test_load_precision_pair_checks_low_before_loading_high(monkeypatch):
    import precision_router.models.pair as pair

    monkeypatch.setattr(pair, "load_causal_lm", _refuse)
    with pytest.raises(ValueError, match="unknown precision"):
        pair.load_precision_pair("smollm2-135m-instruct", low="gptq-9bit")
