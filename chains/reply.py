"""The reply chain: one declarative LCEL pipeline from a channel message to an in-character reply.

    memory -> preprocess -> retrieve -> assemble -> (generate -> validate, retried once)
           -> result, with an in-character fallback line if generation fails or times out

Each stage is a named runnable that takes its parts as arguments, so tests hand in fakes.
`StageTimer` (a callback handler) records how long each named stage took.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseLLM
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough

from chains.assemble import Assembled, ContextAssembler
from chains.memory import ShortTermMemory
from chains.preprocess import Analysis, analyze
from chains.retrieve import LoreRetrieval
from chains.types import ChatMessage, LoreItem, Verdict
from chains.validate import validate
from prompts import Persona

logger = logging.getLogger(__name__)

STAGES = ("memory", "preprocess", "retrieve", "assemble", "generate", "validate", "fallback")
RETRY_TEMPERATURE = 0.9
EMPTY_MESSAGE_TEXT = "(mentions you without saying anything)"


class InvalidReply(Exception):
    """A generated reply failed validation (the chain retries once, then falls back)."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(", ".join(verdict.problems))
        self.verdict = verdict


class GenerationTimeout(Exception):
    """Generation took longer than GENERATION_TIMEOUT_SECONDS."""


@dataclass
class ReplyResult:
    """The reply and everything `--explain` shows about how it was made."""

    text: str
    ok: bool  # False when the fallback line was used
    analysis: Analysis | None = None
    lore: list[LoreItem] = field(default_factory=list)
    lore_warning: str = ""
    assembled: Assembled | None = None
    attempts: list[Verdict] = field(default_factory=list)
    error: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    generated_tokens: int = 0


class StageTimer(BaseCallbackHandler):
    """Callback that sums the wall time of each named stage of the chain."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._started: dict[UUID, tuple[str, float]] = {}

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        name = kwargs.get("name")
        if name in STAGES:
            self._started[run_id] = (name, time.perf_counter())

    def _stop(self, run_id: UUID) -> None:
        if run_id in self._started:
            name, started = self._started.pop(run_id)
            self.seconds[name] += time.perf_counter() - started

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._stop(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._stop(run_id)


def _history_before(messages: Sequence[ChatMessage], trigger: ChatMessage) -> list[ChatMessage]:
    """The remembered messages that came before the trigger (the trigger itself excluded)."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m is trigger or (trigger.message_id is not None and m.message_id == trigger.message_id):
            return list(messages[:i])
    return list(messages)


def build_reply_chain(
    llm: BaseLLM,
    retrieval: LoreRetrieval,
    assembler: ContextAssembler,
    memory: ShortTermMemory,
    persona: Persona,
    *,
    reply_max_chars: int = 600,
    timeout_s: float = 30.0,
    token_counter=None,
    model_lock: threading.Lock | None = None,
) -> Runnable:
    """Compose the reply chain. Input: {"channel_id": int, "message": ChatMessage}. Output: ReplyResult."""
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="generate")
    retry_kwargs = {"pipeline_kwargs": {"do_sample": True, "temperature": RETRY_TEMPERATURE}}
    tunable = type(llm).__name__ == "HuggingFacePipeline"
    lock = model_lock or threading.Lock()

    def invoke_locked(prompt: str, **kwargs: Any) -> str:
        with lock:
            return llm.invoke(prompt, **kwargs)

    def load_memory(state: dict) -> dict:
        snapshot = memory.snapshot(state["channel_id"])
        return {"history": _history_before(snapshot.messages, state["message"]), "summary": snapshot.summary}

    def preprocess(state: dict) -> Analysis:
        return analyze(state["message"].content, persona.name)

    def retrieve(state: dict) -> dict:
        analysis: Analysis = state["analysis"]
        items, warning = retrieval(analysis.query, analysis.needs_lore, state["memory"]["history"])
        return {"items": items, "warning": warning}

    def assemble(state: dict) -> Assembled:
        return assembler.assemble(
            state["message"],
            state["analysis"].query or EMPTY_MESSAGE_TEXT,
            state["memory"]["history"],
            state["lore"]["items"],
            state["memory"]["summary"],
        )

    def generate(state: dict) -> dict:
        kwargs = retry_kwargs if state["attempts"] and tunable else {}
        future = pool.submit(invoke_locked, state["context"].prompt, **kwargs)
        try:
            raw = future.result(timeout=timeout_s)
        except FutureTimeout:
            raise GenerationTimeout(f"generation took longer than {timeout_s:.0f}s") from None
        return {**state, "raw": raw}

    def check(state: dict) -> Verdict:
        members = {m.author for m in state["memory"]["history"]} | {state["message"].author}
        verdict = validate(state["raw"], state["message"].content, persona.name, reply_max_chars, members)
        state["attempts"].append(verdict)
        if not verdict.ok:
            raise InvalidReply(verdict)
        return verdict

    def fallback(state: dict) -> Verdict:
        error = state.get("error")
        if isinstance(error, InvalidReply):
            logger.warning("reply failed validation twice (%s); using the fallback line", error)
        else:
            logger.error("generation failed; using the fallback line", exc_info=error)
        reason = f"{type(error).__name__}: {error}"
        return Verdict(ok=False, text=persona.fallback(len(state["attempts"])), problems=("fallback", reason))

    def result(state: dict) -> ReplyResult:
        verdict: Verdict = state["verdict"]
        tokens = token_counter(state["attempts"][-1].text) if token_counter and state["attempts"] else 0
        return ReplyResult(
            text=verdict.text,
            ok=verdict.ok,
            analysis=state["analysis"],
            lore=state["lore"]["items"],
            lore_warning=state["lore"]["warning"],
            assembled=state["context"],
            attempts=list(state["attempts"]),
            error=verdict.problems[1] if not verdict.ok and len(verdict.problems) > 1 else "",
            generated_tokens=tokens,
        )

    draft = (
        RunnableLambda(generate, name="generate") | RunnableLambda(check, name="validate")
    ).with_retry(retry_if_exception_type=(InvalidReply,), stop_after_attempt=2, wait_exponential_jitter=False)
    reply = draft.with_fallbacks(
        [RunnableLambda(fallback, name="fallback")], exceptions_to_handle=(Exception,), exception_key="error"
    )
    return (
        RunnablePassthrough.assign(attempts=lambda _: [])
        | RunnablePassthrough.assign(memory=RunnableLambda(load_memory, name="memory"))
        | RunnablePassthrough.assign(analysis=RunnableLambda(preprocess, name="preprocess"))
        | RunnablePassthrough.assign(lore=RunnableLambda(retrieve, name="retrieve"))
        | RunnablePassthrough.assign(context=RunnableLambda(assemble, name="assemble"))
        | RunnablePassthrough.assign(verdict=reply)
        | RunnableLambda(result, name="result")
    ).with_config(run_name="reply")


def run_reply(chain: Runnable, channel_id: int, message: ChatMessage) -> ReplyResult:
    """Invoke the chain with a StageTimer and attach the timings (seconds per stage, and total)."""
    timer = StageTimer()
    started = time.perf_counter()
    result: ReplyResult = chain.invoke({"channel_id": channel_id, "message": message}, config={"callbacks": [timer]})
    result.timings = dict(timer.seconds)
    result.timings["total"] = time.perf_counter() - started
    return result
