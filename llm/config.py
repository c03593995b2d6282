"""The small configuration the model factory and the generation service need.

`chains/` never reads the application's settings: `app/` builds a `ModelConfig` from them
(`Settings.model_options()`) and passes it in, so the chain, the engines and training can be
used and tested on their own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m-instruct"
ENGINES = ("auto", "transformers", "llamacpp", "openai")


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ModelConfig:
    """Which model, on which engine, sampled how."""

    model_name: str = DEFAULT_MODEL
    engine: str = "auto"  # auto | transformers | llamacpp | openai
    adapter_path: Path | None = None
    quantization: bool = False  # 4-bit NF4 through bitsandbytes (transformers engine)
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "auto"  # weights dtype of the transformers engine
    static_cache: bool = False  # transformers: pre-allocated KV cache instead of prefix reuse
    llamacpp_weights: str = "as-is"  # llamacpp: "as-is" reads the GGUF file directly; "q8_0" re-lays it out once
    cache_dir: Path = Path("data/models")
    threads: int | None = None  # None: every usable core
    context_tokens: int = 384
    max_new_tokens: int = 60
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.05
    timeout_s: float = 30.0
    seed: int | None = None
    # OpenAI-compatible inference server (vLLM, llama.cpp's server, TGI)
    openai_base_url: str | None = None
    openai_model: str | None = None  # the served model name; default: model_name
    openai_adapter: str | None = None  # a LoRA adapter by its served model name
    openai_api_key: str | None = field(default=None, repr=False)

    @property
    def thread_count(self) -> int:
        return self.threads or usable_cores()
