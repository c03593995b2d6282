"""The reply chain: one declarative LCEL pipeline from a channel message to an in-character reply.

    memory -> preprocess -> retrieve -> ground -> assemble -> respond

`respond` streams: it hands the prompt to the generation service and yields `ReplyResult`s as the
reply grows (`partial=True`, the text already repaired and safe to show), then the final one. A
reply that fails validation is generated once more, then replaced by an in-character fallback
line, as is a generation error or timeout (chains/drafting.py). A question with close enough lore
(`ground`, see chains/grounding.py) is checked against it: a reply that invents a figure or a name is
stopped before it is shown, and one that does not use the lore is replaced by the answer line
(chains/claims.py). A question asking for a figure ("how much", "when") without such lore still may
not be answered with a made-up one: the sentences holding one are dropped (with none left, the
persona's `unknown` line is said). (The retry lives inside the streaming stage: LangChain's
`with_retry`/`with_fallbacks` cannot retry a stream that has already yielded.)

`chain.stream(...)` / `chain.astream(...)` give every step; `chain.invoke(...)` gives the final
result. `StageTimer` (a callback handler) records how long each named stage took.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough

from chains.assemble import Assembled, ContextAssembler
from chains.drafting import Drafting, ReplyResult
from chains.grounding import Evidence, Grounding
from chains.links import LinkPolicy
from chains.memory import ShortTermMemory
from chains.preprocess import Analysis, analyze
from chains.retrieve import LoreRetrieval
from chains.types import ChatMessage
from llm.generation import GenerationService
from prompts import Persona, PromptFile

logger = logging.getLogger(__name__)

STAGES = ("memory", "preprocess", "retrieve", "ground", "assemble", "first_token", "generate", "validate", "fallback")
EMPTY_MESSAGE_TEXT = "(mentions you without saying anything)"


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


def _after_reply(tokenizer) -> str:
    """What the chat template writes between the character's reply and the next member's turn
    ("" without a template)."""
    if not getattr(tokenizer, "chat_template", None):
        return ""
    turns = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "y"},
        {"role": "user", "content": "z"},
    ]
    try:
        rendered = tokenizer.apply_chat_template(turns, tokenize=False)
    except Exception:  # a template with other rules: the end-of-sequence token is enough
        return ""
    return rendered[rendered.find("y") + 1 : rendered.find("z")] if "y" in rendered else ""


def template_stops(tokenizer) -> tuple[str, ...]:
    """Where a turn of the chat template ends or the next begins: a reply stops there."""
    after_reply = _after_reply(tokenizer)
    stops = [getattr(tokenizer, "eos_token", None)]
    stops += [t for t in getattr(tokenizer, "all_special_tokens", ()) if t and after_reply and t in after_reply]
    return tuple(dict.fromkeys(s for s in stops if s))


def turn_end(tokenizer) -> str:
    """The token the model writes when the character's turn is over: the first stop after a reply, else EOS."""
    after_reply = _after_reply(tokenizer)
    found = [(after_reply.find(s), s) for s in template_stops(tokenizer) if s in after_reply]
    return min(found)[1] if found else tokenizer.eos_token


def _history_before(messages: Sequence[ChatMessage], trigger: ChatMessage) -> list[ChatMessage]:
    """The remembered messages that came before the trigger (the trigger itself excluded)."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m is trigger or (trigger.message_id is not None and m.message_id == trigger.message_id):
            return list(messages[:i])
    return list(messages)


def build_reply_chain(
    service: GenerationService,
    retrieval: LoreRetrieval,
    assembler: ContextAssembler,
    memory: ShortTermMemory,
    persona: Persona,
    *,
    reply_max_chars: int = 600,
    timeout_s: float = 30.0,
    stops: tuple[str, ...] = (),
    token_counter=None,
    max_new_tokens: int | None = None,
    known_names: Iterable[str] = (),
    grounding: Grounding | None = None,
    answer: PromptFile | None = None,
    links: LinkPolicy | None = None,
) -> Runnable:
    """Compose the reply chain. Input: {"channel_id": int, "message": ChatMessage}. Output: ReplyResult(s).

    `known_names` holds the member names the bot knows beyond the conversation (a `chains.names.KnownNames`,
    read afresh for each reply), so a reply never speaks as any of them. `grounding` checks replies to
    questions against the lore they found, and `answer` is the line they are replaced with when they do
    not use it.
    """

    def load_memory(state: dict) -> dict:
        snapshot = memory.snapshot(state["channel_id"])
        history = _history_before(snapshot.messages, state["message"])
        return {"history": history, "summary": snapshot.summary, "first_position": snapshot.first_position}

    def preprocess(state: dict) -> Analysis:
        return analyze(state["message"].content, persona.name)

    def retrieve(state: dict) -> dict:
        analysis: Analysis = state["analysis"]
        items, warning = retrieval(
            analysis.query, analysis.needs_lore, state["memory"]["history"], channel_id=state["channel_id"]
        )
        return {"items": items, "warning": warning}

    def ground(state: dict) -> Evidence | None:
        if grounding is None:
            return None
        analysis: Analysis = state["analysis"]
        return grounding.evidence(analysis.query, analysis.intent, state["lore"]["items"])

    def assemble(state: dict) -> Assembled:
        return assembler.assemble(
            state["message"],
            state["analysis"].query or EMPTY_MESSAGE_TEXT,
            state["memory"]["history"],
            state["lore"]["items"],
            state["memory"]["summary"],
            state["memory"]["first_position"],
        )

    def drafting(state: dict) -> Drafting:
        return Drafting(
            state,
            persona,
            reply_max_chars,
            stops,
            token_counter,
            max_new_tokens,
            known_names,
            answer,
            links,
            grounding is not None,
        )

    def respond(state: dict) -> Iterator[ReplyResult]:
        draft = drafting(state)
        for job in draft.attempts(service, timeout_s):  # the retry loop (shared with `arespond`)
            try:
                with contextlib.closing(job.pieces()) as pieces:
                    for piece in pieces:
                        if update := draft.feed(piece):
                            yield update
                        if draft.ended:
                            break
            except Exception as exc:
                draft.failed(exc)
        yield draft.final

    async def arespond(state: dict) -> AsyncIterator[ReplyResult]:
        draft = drafting(state)
        for job in draft.attempts(service, timeout_s):  # pieces come without blocking the event loop
            pieces = job.apieces()
            try:
                async for piece in pieces:
                    if update := draft.feed(piece):
                        yield update
                    if draft.ended:
                        break
            except Exception as exc:
                draft.failed(exc)
            finally:
                await pieces.aclose()
        yield draft.final

    return (
        RunnablePassthrough.assign(memory=RunnableLambda(load_memory, name="memory"))
        | RunnablePassthrough.assign(analysis=RunnableLambda(preprocess, name="preprocess"))
        | RunnablePassthrough.assign(lore=RunnableLambda(retrieve, name="retrieve"))
        | RunnablePassthrough.assign(evidence=RunnableLambda(ground, name="ground"))
        | RunnablePassthrough.assign(context=RunnableLambda(assemble, name="assemble"))
        | RunnableLambda(respond, afunc=arespond, name="respond")
    ).with_config(run_name="reply")


def _finish(result: ReplyResult, timer: StageTimer, started: float) -> ReplyResult:
    result.timings = {**timer.seconds, **result.timings, "total": time.perf_counter() - started}
    return result


def stream_reply(chain: Runnable, channel_id: int, message: ChatMessage) -> Iterator[ReplyResult]:
    """The chain's results as they come; the last one is final and carries the timings."""
    timer, started = StageTimer(), time.perf_counter()
    for result in chain.stream({"channel_id": channel_id, "message": message}, config={"callbacks": [timer]}):
        yield result if result.partial else _finish(result, timer, started)


async def astream_reply(chain: Runnable, channel_id: int, message: ChatMessage) -> AsyncIterator[ReplyResult]:
    """`stream_reply` for an event loop (the chain's `.astream`)."""
    timer, started = StageTimer(), time.perf_counter()
    async for result in chain.astream({"channel_id": channel_id, "message": message}, config={"callbacks": [timer]}):
        yield result if result.partial else _finish(result, timer, started)


def run_reply(chain: Runnable, channel_id: int, message: ChatMessage) -> ReplyResult:
    """Invoke the chain with a StageTimer and attach the timings (seconds per stage, and total)."""
    timer, started = StageTimer(), time.perf_counter()
    result: ReplyResult = chain.invoke({"channel_id": channel_id, "message": message}, config={"callbacks": [timer]})
    return _finish(result, timer, started)
