"""Any OpenAI-compatible inference server (vLLM, llama.cpp's server, TGI), through the `openai` client.

For admins who serve the model on another machine or outgrow one: the bot sends the prompt it
assembled (with the model's chat template) to `/v1/completions` and streams the answer back.
A LoRA adapter is chosen by the name the server serves it under (vLLM `--lora-modules name=path`).
Closing the stream early closes the HTTP response, which these servers take as a cancellation.
Retries on connection errors and 429/5xx answers are the client's own (`max_retries`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.language_models.llms import LLM
from pydantic import ConfigDict, PrivateAttr, SecretStr

from llm.engines.base import CallOptions, EngineError, GenerationStats, StreamingEngine

# OpenAI itself and TGI (by default) accept at most four stop strings; the most important come first.
MAX_STOP_STRINGS = 4


class OpenAICompatibleLLM(StreamingEngine, LLM):
    """A LangChain LLM over an OpenAI-compatible `/v1/completions` endpoint, streamed."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    base_url: str
    model: str
    api_key: SecretStr = SecretStr("not-needed")
    max_new_tokens: int = 60
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int | None = None
    timeout_s: float = 30.0
    max_retries: int = 2
    _client: Any = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "openai-compatible"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "model": self.model, "max_new_tokens": self.max_new_tokens}

    @property
    def client(self):
        if self._client is None:
            import openai

            self._client = openai.OpenAI(
                base_url=self.base_url,
                api_key=self.api_key.get_secret_value(),
                timeout=self.timeout_s,
                max_retries=self.max_retries,
            )
        return self._client

    def pieces(self, prompt: str, stop: list[str] | None, opts: CallOptions, stats: GenerationStats) -> Iterator[str]:
        import openai

        request: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": opts.max_new_tokens or self.max_new_tokens,
            "temperature": self.temperature if opts.temperature is None else opts.temperature,
            "top_p": self.top_p,
        }
        if stop:
            request["stop"] = list(stop)[:MAX_STOP_STRINGS]
        if self.seed is not None:
            request["seed"] = self.seed
        try:
            with self.client.completions.create(**request) as stream:
                for event in stream:
                    if event.usage:
                        stats.prompt_tokens = event.usage.prompt_tokens or 0
                        stats.generated_tokens = event.usage.completion_tokens or 0
                        details = getattr(event.usage, "prompt_tokens_details", None)
                        stats.cached_tokens = getattr(details, "cached_tokens", None) or 0
                    for choice in event.choices:
                        if choice.finish_reason:
                            stats.finish = "stop" if choice.finish_reason == "stop" else "length"
                        if choice.text:
                            yield choice.text
                    if opts.should_stop():
                        stats.finish = "cancelled"
                        break  # leaving the `with` closes the response: the server stops generating
        except openai.APIError as exc:
            raise EngineError(f"the inference server at {self.base_url} failed: {exc}") from exc
