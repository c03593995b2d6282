"""llama.cpp in this process, through the prebuilt `xllamacpp` wheel: the default engine on CPU hosts.

It reads a GGUF file directly (the packaged SmolLM2 one by default) and applies a LoRA adapter in
GGUF form (`llm.engines.lora_gguf` converts a peft adapter). The server keeps the KV cache of
each slot between requests, so a prompt that starts like the previous one of its slot computes
only what is new: replies use slot 0 and background work (summaries) slot 1, so a summary never
evicts a reply's cache. A generation stops at the next token once `should_stop()` is true.

xllamacpp also listens on a loopback HTTP port; it is locked with a random API key, since only
this process talks to the model.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.language_models.llms import LLM
from pydantic import ConfigDict

from llm.engines.base import CallOptions, EngineError, GenerationStats, StreamingEngine

logger = logging.getLogger(__name__)

SLOTS = 2  # 0: replies, 1: background work
# Prompts are processed this many tokens at a time, and progress is reported after each batch, so
# a generation can also be stopped during a long prefill (about 0.2 s per batch on 2 cores).
PREFILL_BATCH = 64
_END = object()


def start_server(model: Path, *, slot_tokens: int, threads: int, lora: Path | None = None, seed: int | None = None):
    """An in-process llama.cpp server over `model` (GGUF), with `SLOTS` slots of `slot_tokens` each."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.n_parallel = SLOTS
    params.n_ctx = slot_tokens * SLOTS
    params.n_batch = params.n_ubatch = PREFILL_BATCH
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
    params.verbosity = -1  # llama.cpp's own log lines would flood stderr
    params.api_keys = [secrets.token_urlsafe(32)]  # the loopback HTTP port is not for anyone else
    if seed is not None:
        params.sampling.seed = seed
    if lora is not None:
        params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(lora), 1.0)]
    try:
        return xllamacpp.Server(params)
    except RuntimeError as exc:
        raise EngineError(f"llama.cpp could not load {model}{f' with the LoRA {lora}' if lora else ''}: {exc}") from exc


class LlamaCppLLM(StreamingEngine, LLM):
    """A LangChain LLM over an in-process llama.cpp server (`start_server`)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    server: Any
    model_path: str
    max_new_tokens: int = 60
    temperature: float = 0.7
    top_p: float = 0.9
    repeat_penalty: float = 1.05
    seed: int | None = None

    @property
    def _llm_type(self) -> str:
        return "llamacpp"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "max_new_tokens": self.max_new_tokens, "temperature": self.temperature}

    def _request(self, prompt: str, stop: list[str] | None, opts: CallOptions) -> dict:
        temperature = self.temperature if opts.temperature is None else opts.temperature
        body = {
            "prompt": prompt,
            "stream": True,
            "return_progress": True,
            "cache_prompt": True,
            "id_slot": opts.slot,
            "n_predict": opts.max_new_tokens or self.max_new_tokens,
            "temperature": temperature,
            "top_p": self.top_p,
            "repeat_penalty": self.repeat_penalty,
            "stop": list(stop or []),
        }
        if self.seed is not None:
            body["seed"] = self.seed
        return body

    def pieces(self, prompt: str, stop: list[str] | None, opts: CallOptions, stats: GenerationStats) -> Iterator[str]:
        pieces: queue.SimpleQueue = queue.SimpleQueue()
        closed = threading.Event()

        def on_chunk(chunk: dict) -> bool:  # runs on llama.cpp's side, per token or prefill batch; True stops it
            pieces.put(chunk)
            return closed.is_set() or opts.should_stop()

        def generate() -> None:
            try:
                self.server.handle_completions(self._request(prompt, stop, opts), on_chunk)
            except BaseException as exc:  # handed to the consumer
                pieces.put(exc)
            finally:
                pieces.put(_END)

        worker = threading.Thread(target=generate, name="llamacpp", daemon=True)
        worker.start()
        try:
            while (item := pieces.get()) is not _END:
                if isinstance(item, BaseException):
                    raise EngineError(f"llama.cpp failed: {item}") from item
                if "error" in item:
                    raise EngineError(f"llama.cpp refused the request: {item['error'].get('message', item['error'])}")
                _read_stats(item, stats)
                for choice in item.get("choices", ()):
                    if choice.get("finish_reason"):
                        stats.finish = "stop" if choice["finish_reason"] == "stop" else "length"
                    if choice.get("text"):
                        stats.generated_tokens += 1
                        yield choice["text"]
                if opts.should_stop():
                    stats.finish = "cancelled"
                    break
        finally:
            closed.set()  # a consumer that stops early stops llama.cpp at its next token
            worker.join()


def gbnf_literal(text: str) -> str:
    """`text` as a GBNF string literal (a grammar that matches exactly this text)."""
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
    return f'"{escaped}"'


def score(llm: LlamaCppLLM, prompt: str, completion: str, max_tokens: int = 512) -> tuple[float, int]:
    """Summed log-probability of `completion` after `prompt`, and its token count.

    The completion is forced by a grammar that matches only it; llama.cpp reports each chosen
    token's log-probability under the model (before the grammar), which is what perplexity needs.
    """
    body = {
        "prompt": prompt,
        "n_predict": max_tokens,
        "temperature": 0,
        "grammar": f"root ::= {gbnf_literal(completion)}",
        "n_probs": 1,
        "logprobs": 1,
        "cache_prompt": True,
        "id_slot": 1,
    }
    answer = llm.server.handle_completions(body)
    if "error" in answer:
        raise EngineError(f"llama.cpp could not score the text: {answer['error'].get('message', answer['error'])}")
    tokens = ((answer.get("choices") or [{}])[0].get("logprobs") or {}).get("content") or []
    return sum(t["logprob"] for t in tokens), len(tokens)


def _read_stats(chunk: dict, stats: GenerationStats) -> None:
    progress = chunk.get("prompt_progress")  # arrives first, even when the reader stops the stream early
    if progress:
        stats.prompt_tokens = progress.get("total", stats.prompt_tokens)
        stats.cached_tokens = progress.get("cache", stats.cached_tokens)
    usage = chunk.get("usage")
    if usage:
        stats.prompt_tokens = usage.get("prompt_tokens", stats.prompt_tokens)
        stats.generated_tokens = usage.get("completion_tokens", stats.generated_tokens)
        stats.cached_tokens = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", stats.cached_tokens)
    timings = chunk.get("timings")
    if timings:
        stats.cached_tokens = timings.get("cache_n", stats.cached_tokens)
        stats.prompt_tokens = stats.cached_tokens + timings.get("prompt_n", 0)
        stats.prefill_seconds = timings.get("prompt_ms", 0.0) / 1000
        stats.decode_seconds = timings.get("predicted_ms", 0.0) / 1000
