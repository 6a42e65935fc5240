import pytest
import torch

from precision_router.models.scoring import ActionScorer, action_log_probs, kl_divergence, next_token_kl, score_naive

PROMPT = (
    "<|im_start|>user\nYou are in the middle of a room. Your task is to: put a mug in the fridge.<|im_end|>\n"
    "<|im_start|>assistant\n"
)
CANDIDATES = [
    "go to cabinet 1",
    "go to cabinet 10",
    "take mug 1 from countertop 1",
    "open fridge 1",
    "look",
    "inventory",
]


def test_packed_equals_naive(tiny_pair):
    high, _ = tiny_pair
    scorer = ActionScorer(high.hf_model, high.tokenizer)
    packed = scorer.score(PROMPT, CANDIDATES)
    naive = score_naive(high.hf_model, high.tokenizer, PROMPT, CANDIDATES)
    assert torch.allclose(packed, naive, atol=1e-4)
    mean = scorer.score(PROMPT, CANDIDATES, normalize="mean")
    assert torch.allclose(
        mean, score_naive(high.hf_model, high.tokenizer, PROMPT, CANDIDATES, normalize="mean"), atol=1e-4
    )


def test_cache_is_reused_across_growing_prompts(tiny_pair):
    high, _ = tiny_pair
    scorer = ActionScorer(high.hf_model, high.tokenizer)
    scorer.score(PROMPT, CANDIDATES)
    prefilled = scorer.stats["prefill_tokens"]
    longer = (
        PROMPT
        + "go to fridge 1<|im_end|>\n<|im_start|>user\nThe fridge 1 is closed.<|im_end|>\n<|im_start|>assistant\n"
    )
    packed = scorer.score(longer, CANDIDATES)
    assert scorer.stats["prefill_tokens"] - prefilled < len(high.tokenizer(longer).input_ids) - 10
    assert torch.allclose(packed, score_naive(high.hf_model, high.tokenizer, longer, CANDIDATES), atol=1e-4)
    # same prompt again: nothing is prefilled
    before = scorer.stats["prefill_tokens"]
    again = scorer.score(longer, CANDIDATES[:2])
    assert scorer.stats["prefill_tokens"] == before
    assert torch.allclose(again, packed[:2], atol=1e-6)
    # a prompt that diverges early still scores correctly
    other = "<|im_start|>user\nSomething else entirely.<|im_end|>\n<|im_start|>assistant\n"
    assert torch.allclose(
        scorer.score(other, CANDIDATES), score_naive(high.hf_model, high.tokenizer, other, CANDIDATES), atol=1e-4
    )


def test_end_token_separates_prefix_candidates(tiny_pair):
    high, _ = tiny_pair
    with_end = ActionScorer(high.hf_model, high.tokenizer).score(PROMPT, ["go to cabinet 1", "go to cabinet 10"])
    without = ActionScorer(high.hf_model, high.tokenizer, end_token="").score(
        PROMPT, ["go to cabinet 1", "go to cabinet 10"]
    )
    # without an end token the shorter candidate's likelihood is an upper bound of the longer one's
    assert without[0] >= without[1]
    assert not torch.allclose(with_end, without)


def test_distributions_and_kl(tiny_pair):
    high, low = tiny_pair
    log_high = action_log_probs(ActionScorer(high.hf_model, high.tokenizer).score(PROMPT, CANDIDATES))
    log_low = action_log_probs(ActionScorer(low.hf_model, low.tokenizer).score(PROMPT, CANDIDATES))
    assert torch.isclose(log_high.exp().sum(), torch.tensor(1.0, dtype=torch.float64))
    assert kl_divergence(log_high, log_high) == pytest.approx(0.0, abs=1e-9)
    assert kl_divergence(log_low, log_high) > 0
    assert next_token_kl(high.hf_model, low.hf_model, high.tokenizer, PROMPT) > 0
    with pytest.raises(ValueError, match="end token"):
        ActionScorer(high.hf_model, high.tokenizer, end_token="not-a-token")
