"""Convert a peft LoRA adapter (what `training/` writes) into a GGUF LoRA that llama.cpp applies.

The tensors are named after the base GGUF's own (`blk.N.attn_q.weight.lora_a` / `.lora_b`, through
the `gguf` package's name map), and for the llama architecture the rows of the q/k `lora_b` are
permuted the way llama.cpp's converter permutes q/k weights for its rotary embedding (see
llama.cpp's convert_lora_to_gguf.py). The file is written once per adapter content, under the
model cache, and reused on later starts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np

from llm.engines.base import EngineError

logger = logging.getLogger(__name__)

PERMUTED_ARCHS = {"llama"}  # q/k rows reordered for llama.cpp's rope
SUPPORTED_ARCHS = {"llama", "qwen2", "qwen3"}


def _field(reader, key: str):
    field = reader.fields.get(key)
    return field.contents() if field is not None else None


def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order: per head, the two rotary halves interleaved."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _adapter_tensors(adapter: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise EngineError(f"{adapter}: no adapter_model.safetensors (not a peft LoRA adapter folder)")
    try:
        return load_file(str(weights))
    except Exception:  # bf16 tensors: numpy has no bfloat16, read them through torch
        from safetensors.torch import load_file as load_torch

        return {k: v.float().numpy() for k, v in load_torch(str(weights)).items()}


def convert_lora(adapter: Path, base_gguf: Path, out: Path) -> Path:
    """Write the peft adapter in `adapter` as a GGUF LoRA for the base model `base_gguf`."""
    import gguf

    config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("use_dora") or config.get("alpha_pattern") or config.get("modules_to_save"):
        raise EngineError(
            f"{adapter}: DoRA, per-module alphas and extra saved modules cannot run on llama.cpp; "
            "use ENGINE=transformers"
        )
    reader = gguf.GGUFReader(base_gguf)
    arch = _field(reader, "general.architecture")
    if arch not in SUPPORTED_ARCHS:
        raise EngineError(
            f"{base_gguf}: LoRA conversion supports the {', '.join(sorted(SUPPORTED_ARCHS))} architectures, "
            f"not {arch!r}"
        )
    blocks = int(_field(reader, f"{arch}.block_count"))
    n_head = int(_field(reader, f"{arch}.attention.head_count"))
    n_kv = int(_field(reader, f"{arch}.attention.head_count_kv") or n_head)
    base_names = {t.name for t in reader.tensors}
    names = gguf.get_tensor_name_map(next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch), blocks)
    rank = int(config.get("r", 8))
    alpha = float(config.get("lora_alpha", rank))
    if config.get("use_rslora"):
        alpha *= math.sqrt(rank)  # llama.cpp scales by alpha / rank; rsLoRA by alpha / sqrt(rank)

    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, tensor in _adapter_tensors(adapter).items():
        part = "a" if ".lora_A." in key else "b" if ".lora_B." in key else None
        if part is None:
            raise EngineError(f"{adapter}: unexpected tensor {key!r} (only lora_A/lora_B can be converted)")
        hf_name = key.replace("base_model.model.", "", 1).replace(f".lora_{part.upper()}.weight", ".weight")
        name = names.get_name(hf_name, try_suffixes=(".weight",))
        if name is None or name not in base_names:
            raise EngineError(f"{adapter}: {hf_name} has no counterpart in {base_gguf.name}")
        pairs.setdefault(name, {})[part] = tensor.astype(np.float32)

    partial = out.with_name(out.name + ".partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(partial), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for name, pair in sorted(pairs.items()):
        if set(pair) != {"a", "b"}:
            raise EngineError(f"{adapter}: {name} has only lora_{''.join(pair)}")
        lora_b = pair["b"]
        if arch in PERMUTED_ARCHS and ".attn_q." in name:
            lora_b = _permute(lora_b, n_head)
        elif arch in PERMUTED_ARCHS and ".attn_k." in name:
            lora_b = _permute(lora_b, n_kv)
        writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(pair["a"]))
        writer.add_tensor(f"{name}.lora_b", np.ascontiguousarray(lora_b))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.replace(out)
    logger.info("LoRA %s converted for llama.cpp: %s (%d tensors)", adapter, out, 2 * len(pairs))
    return out


def gguf_lora_for(adapter: Path, base_gguf: Path, cache_dir: Path) -> Path:
    """The GGUF LoRA for `adapter`: a .gguf file as given, or a peft folder converted once (cached by content)."""
    if adapter.is_file() and adapter.suffix == ".gguf":
        return adapter
    digest = hashlib.sha256()
    for part in ("adapter_config.json", "adapter_model.safetensors"):
        path = adapter / part
        if path.is_file():
            digest.update(path.read_bytes())
    digest.update(base_gguf.name.encode())
    out = cache_dir / "lora" / f"{adapter.name}-{digest.hexdigest()[:16]}.gguf"
    return out if out.is_file() else convert_lora(adapter, base_gguf, out)
