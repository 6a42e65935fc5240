import sys

import pytest
import torch

from precision_router.errors import MissingExtraError, TokenizerMismatchError
from precision_router.models.pair import load_precision_pair
from precision_router.models.quantize import parse_precision, rtn_quantize_
from precision_router.testing import mean_next_token_kl, tiny_causal_lm, tiny_tokenizer


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-model")
    tokenizer = tiny_tokenizer()
    tiny_causal_lm(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_parse_precision():
    assert parse_precision("gptq-3bit").key == "gptq-3bit-g32"
    assert parse_precision("GPTQ-4bit-g128").group_size == 128
    assert parse_precision("rtn-4bit").method == "rtn"
    assert parse_precision("bf16").dtype == "bfloat16"
    with pytest.raises(ValueError, match="unknown precision"):
        parse_precision("int3")


def test_rtn_changes_linear_weights_but_not_embeddings(tiny_pair):
    high, low = tiny_pair
    h, lo = high.hf_model, low.hf_model
    assert torch.equal(h.model.embed_tokens.weight, lo.model.embed_tokens.weight)
    q = h.model.layers[0].mlp.up_proj.weight
    q_low = lo.model.layers[0].mlp.up_proj.weight
    assert not torch.equal(q, q_low)
    groups = q_low.reshape(q_low.shape[0], -1, 32)
    assert max(len(torch.unique(g)) for g in groups.reshape(-1, 32)) <= 8  # 3 bits: at most 8 levels per group
    assert mean_next_token_kl(h, lo, high.tokenizer) > 0.05


def test_rtn_quantize_is_idempotent_on_its_grid():
    model = tiny_causal_lm(seed=1)
    rtn_quantize_(model, 4)
    before = model.model.layers[1].self_attn.q_proj.weight.clone()
    rtn_quantize_(model, 4)
    assert torch.allclose(before, model.model.layers[1].self_attn.q_proj.weight, atol=1e-5)


def test_pair_from_a_folder_shares_one_tokenizer(tiny_folder):
    high, low = load_precision_pair(tiny_folder, low="rtn-4bit", max_tokens=4)
    assert high.tokenizer is low.tokenizer
    assert high.model_name.endswith("@fp32") and low.model_name.endswith("@rtn-4bit-g32")
    assert mean_next_token_kl(high.hf_model, low.hf_model, high.tokenizer) > 0
    assert high.invoke("hi").usage_metadata["output_tokens"] <= 4


def test_low_folder_with_another_tokenizer_is_refused(tiny_folder, tmp_path):
    tokenizer = tiny_tokenizer()
    tokenizer.add_tokens(["<not-in-the-other-vocab>"])
    tiny_causal_lm(tokenizer).save_pretrained(tmp_path / "other")
    tokenizer.save_pretrained(tmp_path / "other")
    with pytest.raises(TokenizerMismatchError, match="different tokenizers"):
        load_precision_pair(tiny_folder, low=str(tmp_path / "other"))


def test_missing_gptq_extra_names_the_install_command(monkeypatch, tiny_folder):
    monkeypatch.setitem(sys.modules, "gptqmodel", None)
    monkeypatch.setenv("PRECISION_ROUTER_CACHE", str(tiny_folder.parent / "cache-missing"))
    with pytest.raises(MissingExtraError, match=r'pip install "precision-router\[gptq\]"'):
        load_precision_pair(tiny_folder, low="gptq-4bit")


@pytest.mark.gptq
def test_gptq_low_copy_differs_and_is_cached(tiny_folder, tmp_path, monkeypatch):
    pytest.importorskip("gptqmodel")
    monkeypatch.setenv("PRECISION_ROUTER_CACHE", str(tmp_path / "cache"))
    high, low = load_precision_pair(tiny_folder, low="gptq-3bit")
    kl = mean_next_token_kl(high.hf_model, low.hf_model, high.tokenizer)
    assert kl > 0.05
    dequant = list((tmp_path / "cache" / "models").glob("*/gptq-3bit-g32-dequant/precision_router.json"))
    assert len(dequant) == 1

    import precision_router.models.quantize as quantize

    def refuse(*args, **kwargs):
        raise AssertionError("GPTQ ran again although the checkpoint is cached")

    monkeypatch.setattr(quantize, "gptq_quantize", refuse)
    _, again = load_precision_pair(tiny_folder, low="gptq-3bit")
    assert torch.equal(
        again.hf_model.model.layers[0].mlp.down_proj.weight, low.hf_model.model.layers[0].mlp.down_proj.weight
    )
