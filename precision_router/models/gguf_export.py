"""Write a transformers Llama-architecture model and its byte-level BPE tokenizer as a GGUF file.

Used to give llama.cpp the very weights a torch model has (tiny random models in tests, so that
llama.cpp and torch results can be compared on identical weights). Only what llama.cpp's
``llama`` architecture reads is written: hyper-parameters, the GPT-2-style vocabulary with its
merges and chat template, and the tensors (query and key rows permuted to llama.cpp's rotary
layout, as llama.cpp's own converter does).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["write_llama_gguf"]


def _permute(weight: Any, heads: int) -> Any:
    """HF rotary layout (halves) -> llama.cpp's (interleaved pairs), per head."""
    return (
        weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def write_llama_gguf(model: Any, tokenizer: Any, path: str | os.PathLike[str], *, name: str = "model") -> Path:
    """Write ``model`` (a ``LlamaForCausalLM``) and ``tokenizer`` (byte-level BPE) to ``path`` in float32.

    Returns:
        The path written.

    Raises:
        ValueError: the model is not a Llama architecture or the tokenizer is not byte-level BPE.
    """
    import gguf
    import numpy as np

    config = model.config
    if getattr(config, "model_type", None) != "llama":
        msg = f"write_llama_gguf writes Llama models only, not {getattr(config, 'model_type', None)!r}"
        raise ValueError(msg)
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec.get("model", {}).get("type") != "BPE":
        msg = "write_llama_gguf needs a byte-level BPE tokenizer (a PreTrainedTokenizerFast)"
        raise ValueError(msg)
    path = Path(path)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = config.hidden_size // heads
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(getattr(config, "rope_theta", None) or _rope_theta(config)))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    vocab = tokenizer.get_vocab()
    tokens = [""] * config.vocab_size
    for token, index in vocab.items():
        if index < len(tokens):
            tokens[index] = token
    special = set(tokenizer.all_special_tokens) | {t.content for t in tokenizer.added_tokens_decoder.values()}
    types = [
        gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL if t else gguf.TokenType.UNUSED
        for t in tokens
    ]
    tokens = [t or f"[PAD{i}]" for i, t in enumerate(tokens)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for setter, value in (
        (writer.add_bos_token_id, tokenizer.bos_token_id),
        (writer.add_eos_token_id, tokenizer.eos_token_id),
        (writer.add_pad_token_id, tokenizer.pad_token_id),
    ):
        if value is not None:
            setter(int(value))
    writer.add_add_bos_token(False)
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)

    state = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", state["model.norm.weight"])
    if not getattr(config, "tie_word_embeddings", False):
        writer.add_tensor("output.weight", state["lm_head.weight"])
    names = {
        "input_layernorm": "attn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for layer in range(config.num_hidden_layers):
        for hf_name, gguf_name in names.items():
            weight = state[f"model.layers.{layer}.{hf_name}.weight"]
            if gguf_name == "attn_q":
                weight = _permute(weight, heads)
            elif gguf_name == "attn_k":
                weight = _permute(weight, kv_heads)
            writer.add_tensor(f"blk.{layer}.{gguf_name}.weight", np.ascontiguousarray(weight, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _rope_theta(config: Any) -> float:
    parameters = getattr(config, "rope_parameters", None) or {}
    return float(parameters.get("rope_theta", 10000.0))
