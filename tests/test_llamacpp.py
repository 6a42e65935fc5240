"""The llama.cpp backend: LlamaCppChatModel, GGUF rungs, candidate scoring equal to torch's.

Unit tests run on a tiny random Llama written to GGUF in the test (no download); the tests on
the real SmolLM2 file are marked slow.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")

from langchain_core.messages import HumanMessage
from langchain_tests.unit_tests import ChatModelUnitTests

from precision_router.errors import TokenizerMismatchError
from precision_router.models.gguf_export import write_llama_gguf
from precision_router.models.llamacpp import GGUFTokenizer, LlamaCppChatModel, default_threads, load_runtime
from precision_router.models.llamacpp_scoring import LlamaCppScorer, scorer_for
from precision_router.testing import tiny_causal_lm, tiny_tokenizer

pytestmark = pytest.mark.llamacpp

_DIR = Path(tempfile.mkdtemp(prefix="precision-router-gguf-"))
PROMPT = "<|im_start|>user\nYou are in the middle of a room. Your task is to: put a clean mug in the coffeemachine."
CANDIDATES = ["go to countertop 1", "take mug 1 from countertop 1", "open fridge 1", "look", "examine book 4"]


@functools.cache
def _tiny(vocab_size: int | None = None) -> tuple[Path, object, object]:
    """(GGUF path, HF model, tokenizer) of one tiny random Llama (F32, same weights on both sides)."""
    tokenizer = tiny_tokenizer()
    model = tiny_causal_lm(tokenizer, vocab_size=vocab_size)
    path = write_llama_gguf(model, tokenizer, _DIR / f"tiny-{vocab_size or 'base'}.gguf", name="tiny")
    return path, model, tokenizer


@functools.lru_cache(maxsize=1)
def _runtime():
    return load_runtime(_tiny()[0], n_ctx=1024, n_threads=1)


def _chat(**kwargs) -> LlamaCppChatModel:
    kwargs.setdefault("max_tokens", 12)
    kwargs.setdefault("model_name", "tiny@f32")
    return LlamaCppChatModel(runtime=_runtime(), **kwargs)


class TestLlamaCppChatModelStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self):
        return LlamaCppChatModel

    @property
    def chat_model_params(self):
        return {"model_path": str(_tiny()[0]), "model": "tiny", "n_threads": 1}

    @property
    def has_tool_calling(self):
        return True

    @property
    def has_structured_output(self):
        return True


def test_tokenization_and_template_match_transformers():
    _, _, tokenizer = _tiny()
    chat = _chat()
    chat.ensure_loaded()
    messages = [HumanMessage("What is 2 + 2? The answer is")]
    text = chat.render(messages)
    reference = tokenizer.apply_chat_template(
        [{"role": "user", "content": messages[0].content}], tokenize=False, add_generation_prompt=True
    )
    assert text == reference
    assert chat.runtime.encode(text) == tokenizer(text, add_special_tokens=False).input_ids


def test_generation_is_deterministic_and_reports_usage():
    chat = _chat()
    first = chat.invoke("Hello there")
    second = chat.invoke("Hello there")
    assert first.content == second.content
    assert first.usage_metadata["input_tokens"] == len(chat.runtime.encode(chat.render([HumanMessage("Hello there")])))
    assert 0 < first.usage_metadata["output_tokens"] <= 12
    assert first.response_metadata["model_name"] == "tiny@f32"


def test_greedy_tokens_equal_torch_on_the_same_weights():
    from precision_router.models.local import LocalChatModel

    _, model, tokenizer = _tiny()
    torch_chat = LocalChatModel(hf_model=model, tokenizer=tokenizer, max_tokens=10)
    assert _chat(max_tokens=10).invoke("Hello there").content == torch_chat.invoke("Hello there").content


def test_stream_stop_strings_and_max_tokens():
    chat = _chat()
    chunks = list(chat.stream("Hello there"))
    assert chunks[-1].chunk_position == "last"
    full = chat.invoke("Hello there").content
    assert "".join(c.content for c in chunks) == full
    assert len(full) > 3
    cut_at = full[2:4]
    stopped = chat.invoke("Hello there", stop=[cut_at]).content
    assert stopped == full[: full.find(cut_at)]
    assert "".join(c.content for c in chat.stream("Hello there", stop=[cut_at])) == stopped
    short = chat.invoke("Hello there", max_tokens=2)
    assert short.usage_metadata["output_tokens"] == 2
    assert short.response_metadata["finish_reason"] == "length"


def test_sampling_uses_temperature_and_seed():
    chat = _chat()
    a = chat.invoke("Hello", temperature=1.5, seed=1, max_tokens=10).content
    b = chat.invoke("Hello", temperature=1.5, seed=1, max_tokens=10).content
    outputs = {chat.invoke("Hello", temperature=1.5, seed=s, max_tokens=10, top_p=0.9).content for s in range(5)}
    assert a == b
    assert len(outputs) > 1


def test_forced_tool_call_is_parsed():
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    message = _chat(max_tokens=16).bind_tools([add], tool_choice="add").invoke("What is 1 + 2?")
    assert [c["name"] for c in message.tool_calls + message.invalid_tool_calls] == ["add"]


def test_routed_chat_model_takes_llamacpp_models():
    from precision_router import AlwaysLow, RoutedChatModel

    high, low = _chat(model_name="tiny@high"), _chat(model_name="tiny@low")
    message = RoutedChatModel(high=high, low=low, router=AlwaysLow()).invoke("Hello")
    assert message.response_metadata["precision_router"]["route"] == "low"
    assert message.usage_metadata["output_tokens"] > 0


def test_scores_equal_torch_on_the_same_weights():
    from precision_router.models.scoring import ActionScorer

    _, model, tokenizer = _tiny()
    expected = ActionScorer(model, tokenizer).score(PROMPT, CANDIDATES)
    scorer = LlamaCppScorer(load_runtime(_tiny()[0], n_ctx=1024, n_threads=1, f32_cache=True))
    got = scorer.score(PROMPT, CANDIDATES)
    lengths = [len(tokenizer(c, add_special_tokens=False).input_ids) + 1 for c in CANDIDATES]
    for value, reference, n in zip(got.tolist(), expected.tolist(), lengths, strict=True):
        assert abs(value - reference) <= 1e-3 * n, (value, reference)
    mean = scorer.score(PROMPT, CANDIDATES, normalize="mean")
    assert mean.tolist() == pytest.approx([v / n for v, n in zip(got.tolist(), lengths, strict=True)])


@pytest.mark.parametrize("flash_attention", [True, None])
def test_flash_attention_setting_scores_as_the_default(flash_attention):
    default = LlamaCppScorer(load_runtime(_tiny()[0], n_ctx=1024, n_threads=1)).score(PROMPT, CANDIDATES)
    runtime = load_runtime(_tiny()[0], n_ctx=1024, n_threads=1, flash_attention=flash_attention)
    other = LlamaCppScorer(runtime).score(PROMPT, CANDIDATES)
    assert other.tolist() == pytest.approx(default.tolist(), rel=1e-3)  # float16 attention either way


def test_scoring_reuses_the_prompt_prefix():
    runtime = load_runtime(_tiny()[0], n_ctx=1024, n_threads=1)
    scorer = LlamaCppScorer(runtime)
    scorer.score(PROMPT, CANDIDATES)
    evaluated = runtime.stats["evaluated_tokens"]
    more = PROMPT + " go to countertop 1. OK."
    again = scorer.score(more, CANDIDATES)
    extra = len(runtime.encode(more)) - len(runtime.encode(PROMPT))
    candidate_tokens = sum(len(runtime.encode(c)) for c in CANDIDATES)  # each candidate without its end token
    assert runtime.stats["evaluated_tokens"] - evaluated <= extra + 1 + candidate_tokens
    fresh = LlamaCppScorer(load_runtime(_tiny()[0], n_ctx=1024, n_threads=1)).score(more, CANDIDATES)
    assert again.tolist() == pytest.approx(fresh.tolist(), abs=1e-4)


def test_scorer_for_picks_the_backend(tiny_pair):
    from precision_router.models.scoring import ActionScorer

    assert isinstance(scorer_for(_chat()), LlamaCppScorer)
    assert isinstance(scorer_for(tiny_pair[0]), ActionScorer)


def test_rungs_are_quantized_once_and_cached(tmp_path, monkeypatch):
    from precision_router.models.gguf_rungs import gguf_rung, load_gguf_pair

    monkeypatch.setenv("PRECISION_ROUTER_CACHE", str(tmp_path))
    source = _tiny()[0]
    rung = gguf_rung(source, "q8_0", "tiny")
    assert rung.exists() and rung.stat().st_size < source.stat().st_size
    mtime = rung.stat().st_mtime_ns
    assert gguf_rung(source, "Q8_0", "tiny").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="unknown GGUF rung"):
        gguf_rung(source, "q9_z", "tiny")
    high, low = load_gguf_pair(source, "f16", "q8_0", n_ctx=512, n_threads=1, max_tokens=4)
    assert high.model_name.endswith("@f16") and low.model_name.endswith("@q8_0")
    assert low.invoke("Hello").usage_metadata["output_tokens"] > 0


def test_mismatched_vocabularies_raise(tmp_path, monkeypatch):
    from precision_router import load_precision_pair

    monkeypatch.setenv("PRECISION_ROUTER_CACHE", str(tmp_path))
    other = _tiny(vocab_size=len(tiny_tokenizer()) + 8)[0]
    with pytest.raises(TokenizerMismatchError):
        load_precision_pair(backend="llama.cpp", high=str(_tiny()[0]), low=str(other), n_ctx=256, n_threads=1)
    same = GGUFTokenizer(_runtime())
    assert len(same) == len(tiny_tokenizer())


# -- the real SmolLM2 file ---------------------------------------------------------------------


def _smol_gguf() -> Path:
    from precision_router.models.presets import get_preset

    try:
        return get_preset("smollm2-135m-instruct").gguf_path()
    except Exception as exc:  # pragma: no cover - depends on the environment
        pytest.skip(f"SmolLM2 weights unavailable: {exc}")


@pytest.mark.slow
@pytest.mark.real_model
def test_smollm2_scores_equal_torch_on_the_same_weights():
    """SmolLM2's Q4_1 file requantized to F32 holds exactly transformers' fp32 dequantization."""
    from precision_router.models.gguf_rungs import gguf_rung
    from precision_router.models.loading import load_causal_lm
    from precision_router.models.scoring import ActionScorer

    f32 = gguf_rung(_smol_gguf(), "f32", "smollm2-135m-instruct")
    loaded = load_causal_lm("smollm2-135m-instruct")
    chat = LlamaCppChatModel(runtime=load_runtime(f32, n_ctx=1024, f32_cache=True))
    prompt = chat.render([HumanMessage(PROMPT.split("\n", 1)[1])])
    assert chat.runtime.encode(prompt) == loaded.tokenizer(prompt, add_special_tokens=False).input_ids
    expected = ActionScorer(loaded.model, loaded.tokenizer).score(prompt, CANDIDATES)
    got = chat.action_scorer().score(prompt, CANDIDATES)
    lengths = [len(loaded.tokenizer(c, add_special_tokens=False).input_ids) + 1 for c in CANDIDATES]
    for value, reference, n in zip(got.tolist(), expected.tolist(), lengths, strict=True):
        assert abs(value - reference) <= 1e-3 * n, (value, reference)


@pytest.mark.slow
@pytest.mark.real_model
def test_smollm2_default_ladder_answers():
    from precision_router import load_precision_pair

    high, low = load_precision_pair(backend="llama.cpp", max_tokens=8)
    assert high.model_name == "smollm2-135m-instruct@q8_0"
    assert low.model_name == "smollm2-135m-instruct@q4_k_m"
    for chat in (high, low):
        assert chat.invoke("Name a fruit.").usage_metadata["output_tokens"] > 0


def test_gguf_rungs_are_checked_before_anything_loads(tmp_path):
    from precision_router.arguments import check_precision
    from precision_router.errors import InvalidArgumentError

    check_precision("q4_k_m", "--low", backend="llama.cpp")
    check_precision("Q8_0", "--high", high=True, backend="llama.cpp")
    with pytest.raises(InvalidArgumentError, match="'q9_zz' is not a GGUF rung"):
        check_precision("q9_zz", "--low", backend="llama.cpp")
    with pytest.raises(InvalidArgumentError, match="--low"):
        check_precision(str(tmp_path / "missing.gguf"), "--low", backend="llama.cpp")
    with pytest.raises(InvalidArgumentError):  # a GGUF rung is no torch precision
        check_precision("q4_k_m", "--low")


def test_default_threads_follow_omp_num_threads(monkeypatch):
    # Ray sets OMP_NUM_THREADS to each worker's CPUs: two workers on two cores must not run 2x2 threads
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert default_threads() == len(os.sched_getaffinity(0))
