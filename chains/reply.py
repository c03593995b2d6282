"""The reply chain: one declarative LCEL pipeline from a channel message to an in-character reply.

    memory -> preprocess -> retrieve -> ground -> assemble -> respond

`respond` streams: it hands the prompt to the generation service and yields `ReplyResult`s as the
reply grows (`partial=True`, the text already repaired and safe to show), then the final one. A
reply that fails validation is generated once more, then replaced by an in-character fallback
line, as is a generation error or timeout. A question with close enough lore (`ground`, see
chains/grounding.py) is checked against it: a reply that invents a figure or a name is stopped before
it is shown, and one that does not use the lore is replaced by the answer line. A question asking for a
figure ("how much", "when") without such lore still may not be answered with a made-up one: the
sentences holding one are dropped
(with none left, the persona's `unknown` line is said). (The retry lives inside the streaming stage: LangChain's
`with_retry`/`with_fallbacks` cannot retry a stream that has already yielded.)

`chain.stream(...)` / `chain.astream(...)` give every step; `chain.invoke(...)` gives the final
result. `StageTimer` (a callback handler) records how long each named stage took.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough

from chains.assemble import Assembled, ContextAssembler
from chains.grounding import QUESTION_INTENTS, Evidence, Grounding, asks_for_figure, figures, known_claims
from chains.links import LinkPolicy
from chains.memory import ShortTermMemory
from chains.preprocess import Analysis, analyze
from chains.retrieve import LoreRetrieval
from chains.types import ChatMessage, LoreItem, Verdict
from chains.validate import Members, stream_view, validate
from llm.engines.base import GenerationStats
from llm.generation import REPLY_SLOT, GenerationRequest, GenerationService, Job
from prompts import Persona, PromptFile

logger = logging.getLogger(__name__)

STAGES = ("memory", "preprocess", "retrieve", "ground", "assemble", "first_token", "generate", "validate", "fallback")
RETRY_TEMPERATURE = 0.9
ATTEMPTS = 2
# Past this share of MAX_NEW_TOKENS a reply ends at its next sentence end, rather than being cut
# mid-sentence by the token limit (and the member waits for fewer tokens).
WRAP_UP_FRACTION = 0.6
_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])\s+")
_SENTENCE_END = re.compile(r"[.!?…][\"')\]*]*\s*$")
EMPTY_MESSAGE_TEXT = "(mentions you without saying anything)"


class InvalidReply(Exception):
    """A generated reply failed validation twice."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(", ".join(verdict.problems))
        self.verdict = verdict


@dataclass
class ReplyResult:
    """The reply (or, with `partial`, the part of it that is safe to show so far) and how it was made."""

    text: str
    ok: bool  # False when the fallback line was used
    partial: bool = False
    analysis: Analysis | None = None
    lore: list[LoreItem] = field(default_factory=list)
    lore_warning: str = ""
    assembled: Assembled | None = None
    attempts: list[Verdict] = field(default_factory=list)
    error: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    generated_tokens: int = 0
    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens the engine took from its KV cache instead of computing
    reuse_reported: bool = False  # False when the engine did not say (a server's stream closed early)
    engine: GenerationStats | None = None  # the engine's own figures for the last generation
    sources: frozenset[int] = frozenset()  # the final reply: ids of the messages its prompt held (app.runtime)

    def __add__(self, other: ReplyResult) -> ReplyResult:
        return other  # streamed results: the later one holds everything (invoke() keeps the last)


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
    """What the chat template writes between the character's reply and the next member's turn ("" without a template)."""
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


class _Drafting:
    """One reply's attempts: what to generate, what to show as it streams, and how it ends."""

    def __init__(self, state: dict, persona: Persona, max_chars: int, stops: tuple[str, ...], token_counter,
                 max_new_tokens: int | None, known: Iterable[str] = (), answer: PromptFile | None = None,
                 links: LinkPolicy | None = None, grounded: bool = False) -> None:  # fmt: skip
        self.state, self.persona, self.max_chars, self.token_counter = state, persona, max_chars, token_counter
        self.links = links or LinkPolicy()
        self.evidence: Evidence | None = state.get("evidence")
        # A question's reply is checked for invented claims, with evidence or without (grounding on).
        self.checked = grounded and state["analysis"].intent in QUESTION_INTENTS
        self.figure_asked = asks_for_figure(state["message"].content)
        self.answer = answer
        self.invented: set[str] = set()  # claims of this reply that no lore, question or conversation holds
        self.wrap_up = int(max_new_tokens * WRAP_UP_FRACTION) if max_new_tokens else None
        history = state["memory"]["history"]
        context: Assembled = state["context"]
        lore_authors = [item.author for item in state["lore"]["items"] if item.source == "index" and item.author]
        window = [m.author for m in history if not m.from_character] + [state["message"].author]
        names = [*window, *context.speakers, *lore_authors, *known]
        self.members = Members(names, persona.name)
        labels = dict.fromkeys([*context.speakers, *lore_authors])
        speaker_stops = tuple(f"\n{name}:" for name in labels if name in self.members)
        self.stops = stops + speaker_stops
        self.attempts: list[Verdict] = []
        self.timings: dict[str, float] = defaultdict(float)
        self.known: set[str] = set()  # the claims the lore, the message and the conversation hold
        if self.checked:
            lore = state["lore"]["items"]
            self.known = known_claims([
                *(item.content for item in lore), *(item.date for item in lore), state["message"].content,
                *(m.content for m in history), state["memory"]["summary"], persona.description, persona.scenario,
                persona.personality, persona.system_prompt, persona.post_history_instructions, *names, persona.name,
            ], [*names, persona.name])  # fmt: skip
        self.raw = self.shown = ""
        self.job: Job | None = None
        self.stats = None

    def request(self) -> GenerationRequest:
        self.raw = self.shown = ""
        self.invented = set()  # each attempt is checked afresh
        self.ended, self.pieces = False, 0
        retry = RETRY_TEMPERATURE if self.attempts else None
        return GenerationRequest(self.state["context"].prompt, temperature=retry, stop=self.stops, slot=REPLY_SLOT)

    def started(self, job: Job) -> None:
        self.job = job

    def feed(self, piece: str) -> ReplyResult | None:
        """Take a piece; returns a partial result when the safe text grew. Sets `ended` at another speaker's line."""
        self.raw += piece
        self.pieces += 1
        view, self.ended = stream_view(self.raw, self.persona.name, self.max_chars, self.members, self.links)
        if self.wrap_up and self.pieces >= self.wrap_up and _SENTENCE_END.search(self.raw):
            self.ended = True  # long enough, and a sentence just ended: the reply ends here
            view = stream_view(self.raw + "\n", self.persona.name, self.max_chars, self.members, self.links)[0]
        if view and view != self.shown:
            if self.checked and (invented := self._invented(view)):
                self.invented, self.ended = invented, True  # never shown: the answer line (or less) replaces it
                return None
            self.shown = view
            return self._result(Verdict(ok=True, text=view), partial=True)
        return None

    ended = False
    pieces = 0

    def finish(self) -> ReplyResult | None:
        """The generation is over: the final result, or None when it should be generated again."""
        self._account()
        started = time.perf_counter()
        message = self.state["message"]
        verdict = validate(self.raw, message.content, self.persona.name, self.max_chars, self.members, self.links)
        if self.checked and not self.invented and verdict.ok:
            self.invented = self._invented(verdict.text)
        grounded = self._answer_from_lore(verdict)
        if grounded is None and verdict.ok and self.invented:
            grounded = self._without_invented(verdict)
        self.timings["validate"] += time.perf_counter() - started
        self.attempts.append(verdict)
        if grounded is not None:
            return self._result(grounded)
        if verdict.ok:
            return self._result(verdict)
        if len(self.attempts) >= ATTEMPTS:
            return self.fallback(InvalidReply(verdict))
        return None

    def _answer_from_lore(self, verdict: Verdict) -> Verdict | None:
        """The answer line, when the reply invents a claim or does not use the evidence; else None."""
        evidence = self.evidence
        if evidence is None or self.answer is None:
            return None
        question = self.state["message"].content
        if not self.invented and verdict.ok and Grounding.uses(verdict.text, evidence, question):
            return None
        author = evidence.item.author if evidence.item.source == "index" and evidence.item.author else "the lore"
        line = self.answer.format(author=author, content=evidence.passage)
        answer = validate(line, question, self.persona.name, self.max_chars, self.members, self.links)
        if not answer.ok:
            return None
        why = f"invented {', '.join(sorted(self.invented))}" if self.invented else "did not use the lore"
        logger.info("reply %s: answered from the lore (evidence %.2f)", why, evidence.score)
        return Verdict(ok=True, text=answer.text, fixes=(*answer.fixes, f"answered from the lore ({why})"))

    def _invented(self, text: str) -> set[str]:
        """The claims of `text` no lore, message or name holds: with evidence, figures and names; without, the
        figures a question asking for one is answered with ("how much did it raise?" may not get a made-up
        amount; "what's the best mario game?" may get "super mario 64")."""
        if self.evidence is not None:
            return Grounding.unsupported(text, self.known)
        return Grounding.unsupported(text, self.known) & figures(text) if self.figure_asked else set()

    def _without_invented(self, verdict: Verdict) -> Verdict:
        """No evidence to answer from (or its line refused): the reply without its sentences that hold an
        invented claim, or, with none left, the persona's line for a question it cannot answer."""
        lines = [
            " ".join(s for s in _SENTENCE_BREAK.split(line) if not self._invented(s)).strip()
            for line in verdict.text.splitlines()
        ]
        why = f"dropped what invented {', '.join(sorted(self.invented))}"
        logger.info("reply to a question: %s", why)
        text = "\n".join(line for line in lines if line) or self.persona.unknown(len(self.attempts))
        return Verdict(ok=True, text=text, fixes=(*verdict.fixes, why))

    def fallback(self, error: BaseException) -> ReplyResult:
        if self.job is not None and self.job.finished is None:
            self.job.cancel()
        self._account()
        if isinstance(error, InvalidReply):
            logger.warning("reply failed validation twice (%s); using the fallback line", error)
        else:
            logger.error("generation failed; using the fallback line", exc_info=error)
        reason = f"{type(error).__name__}: {error}"
        verdict = Verdict(ok=False, text=self.persona.fallback(len(self.attempts)), problems=("fallback", reason))
        return self._result(verdict)

    def _account(self) -> None:
        job, self.job = self.job, None
        if job is None:
            return
        job.cancel()  # if the reader stopped early (another speaker's line), the engine stops now
        job.wait(5.0)
        if job.first_piece_seconds is not None and "first_token" not in self.timings:
            self.timings["first_token"] = job.first_piece_seconds
        self.timings["generate"] += (job.finished or time.monotonic()) - job.submitted
        self.stats = job.stats

    def _result(self, verdict: Verdict, partial: bool = False) -> ReplyResult:
        state, stats = self.state, self.stats
        generated = stats.generated_tokens if stats and stats.generated_tokens else 0
        if not generated and self.token_counter and self.attempts and not partial:
            generated = self.token_counter(self.attempts[-1].text)
        return ReplyResult(
            text=verdict.text, ok=verdict.ok, partial=partial, analysis=state["analysis"], lore=state["lore"]["items"],
            lore_warning=state["lore"]["warning"], assembled=state["context"], attempts=list(self.attempts),
            error=verdict.problems[1] if not verdict.ok and len(verdict.problems) > 1 else "",
            timings=dict(self.timings), generated_tokens=generated,
            prompt_tokens=(stats.prompt_tokens if stats and stats.prompt_tokens else state["context"].tokens),
            reused_tokens=stats.cached_tokens if stats else 0, reuse_reported=bool(stats and stats.prompt_tokens), engine=stats,
        )  # fmt: skip


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
    known_names: Callable[[], Iterable[str]] | None = None,
    grounding: Grounding | None = None,
    answer: PromptFile | None = None,
    links: LinkPolicy | None = None,
) -> Runnable:
    """Compose the reply chain. Input: {"channel_id": int, "message": ChatMessage}. Output: ReplyResult(s).

    `known_names` gives the member names the bot knows beyond the conversation (the store's), so a
    reply never speaks as any of them. `grounding` checks replies to questions against the lore
    they found, and `answer` is the line they are replaced with when they do not use it.
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
            state["message"], state["analysis"].query or EMPTY_MESSAGE_TEXT, state["memory"]["history"],
            state["lore"]["items"], state["memory"]["summary"], state["memory"]["first_position"],
        )  # fmt: skip

    def drafting(state: dict) -> _Drafting:
        return _Drafting(
            state, persona, reply_max_chars, stops, token_counter, max_new_tokens,
            known_names() if known_names else (), answer, links, grounding is not None,
        )  # fmt: skip

    def respond(state: dict) -> Iterator[ReplyResult]:
        draft = drafting(state)
        while True:
            job = service.reply(draft.request(), timeout_s)
            draft.started(job)
            try:
                with contextlib.closing(job.pieces()) as pieces:
                    for piece in pieces:
                        if update := draft.feed(piece):
                            yield update
                        if draft.ended:
                            break
            except Exception as exc:
                yield draft.fallback(exc)
                return
            if final := draft.finish():
                yield final
                return

    async def arespond(state: dict) -> AsyncIterator[ReplyResult]:
        draft = drafting(state)
        while True:
            job = service.reply(draft.request(), timeout_s)
            draft.started(job)
            pieces = job.apieces()
            try:
                async for piece in pieces:
                    if update := draft.feed(piece):
                        yield update
                    if draft.ended:
                        break
            except Exception as exc:
                yield draft.fallback(exc)
                return
            finally:
                await pieces.aclose()
            if final := draft.finish():
                yield final
                return

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
