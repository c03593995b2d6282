"""Drafting one reply: its attempts, what is shown as it streams, and how it ends.

A `Drafting` hands the prompt to the generation service (`attempts`: one job per attempt), takes
the pieces as they come (`feed`: the repaired text safe to show so far, the end at another speaker's
line or, past WRAP_UP_FRACTION of MAX_NEW_TOKENS, at a sentence end), and decides at the end of each
attempt (`finish`): the reply, the answer line or the reply without what it invented (chains/claims.py),
one more attempt at a higher temperature, or the in-character fallback line.
"""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from chains.assemble import Assembled
from chains.claims import ClaimCheck
from chains.grounding import QUESTION_INTENTS
from chains.links import LinkPolicy
from chains.preprocess import Analysis
from chains.types import LoreItem, Verdict
from chains.validate import Members, stream_view, validate
from llm.engines.base import GenerationStats
from llm.generation import REPLY_SLOT, GenerationRequest, GenerationService, Job
from prompts import Persona, PromptFile

logger = logging.getLogger(__name__)

RETRY_TEMPERATURE = 0.9
ATTEMPTS = 2
# Past this share of MAX_NEW_TOKENS a reply ends at its next sentence end, rather than being cut
# mid-sentence by the token limit (and the member waits for fewer tokens).
WRAP_UP_FRACTION = 0.6
_SENTENCE_END = re.compile(r"[.!?…][\"')\]*]*\s*$")


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


def speakers(state: dict, persona: Persona, known: Iterable[str]) -> tuple[list[str], Members, tuple[str, ...]]:
    """Who may not be spoken as: their names (the conversation's members, the prompt's speakers, the lore's
    authors, the known names), them as `Members`, and the stop strings that end a reply at the start of one
    of the prompt's labelled speakers' lines."""
    context: Assembled = state["context"]
    lore_authors = [item.author for item in state["lore"]["items"] if item.source == "index" and item.author]
    window = [m.author for m in state["memory"]["history"] if not m.from_character] + [state["message"].author]
    names = [*window, *context.speakers, *lore_authors, *known]
    members = Members(names, persona.name)
    labels = dict.fromkeys([*context.speakers, *lore_authors])
    return names, members, tuple(f"\n{name}:" for name in labels if name in members)


class Drafting:
    """One reply's attempts: what to generate, what to show as it streams, and how it ends."""

    def __init__(
        self,
        state: dict,
        persona: Persona,
        max_chars: int,
        stops: tuple[str, ...],
        token_counter,
        max_new_tokens: int | None,
        known: Iterable[str] = (),
        answer: PromptFile | None = None,
        links: LinkPolicy | None = None,
        grounded: bool = False,
    ) -> None:
        self.state, self.persona, self.max_chars, self.token_counter = state, persona, max_chars, token_counter
        self.links = links or LinkPolicy()
        self.wrap_up = int(max_new_tokens * WRAP_UP_FRACTION) if max_new_tokens else None
        names, self.members, speaker_lines = speakers(state, persona, known)
        self.stops = stops + speaker_lines
        # A question's reply is checked for invented claims, with evidence or without (grounding on).
        self.claims: ClaimCheck | None = None
        if grounded and state["analysis"].intent in QUESTION_INTENTS:
            self.claims = ClaimCheck(
                persona,
                state["message"],
                state["lore"]["items"],
                state["memory"]["history"],
                state["memory"]["summary"],
                names,
                state.get("evidence"),
                answer,
            )
        self.invented: set[str] = set()  # claims of this attempt that nothing given holds
        self.verdicts: list[Verdict] = []
        self.timings: dict[str, float] = defaultdict(float)
        self.raw = self.shown = ""
        self.ended, self.pieces = False, 0
        self.job: Job | None = None
        self.stats: GenerationStats | None = None
        self.final: ReplyResult | None = None
        self.error: BaseException | None = None

    def attempts(self, service: GenerationService, timeout_s: float) -> Iterator[Job]:
        """The retry loop: a job per attempt for the caller to read (`feed`, or `failed` on an error), until
        the reply is final (`final`): validated, answered from the lore, or the fallback line."""
        while self.final is None:
            self.raw = self.shown = ""
            self.invented = set()  # each attempt is checked afresh
            self.ended, self.pieces, self.error = False, 0, None
            retry = RETRY_TEMPERATURE if self.verdicts else None
            request = GenerationRequest(
                self.state["context"].prompt, temperature=retry, stop=self.stops, slot=REPLY_SLOT
            )
            self.job = service.reply(request, timeout_s)
            yield self.job
            self.final = self.fallback(self.error) if self.error is not None else self.finish()

    def failed(self, error: BaseException) -> None:
        """Reading the attempt's pieces failed (a generation error or timeout): the fallback line ends it."""
        self.error = error

    def feed(self, piece: str) -> ReplyResult | None:
        """Take a piece; returns a partial result when the safe text grew. Sets `ended` at another speaker's line."""
        self.raw += piece
        self.pieces += 1
        view, self.ended = stream_view(self.raw, self.persona.name, self.max_chars, self.members, self.links)
        if self.wrap_up and self.pieces >= self.wrap_up and _SENTENCE_END.search(self.raw):
            self.ended = True  # long enough, and a sentence just ended: the reply ends here
            view = stream_view(self.raw + "\n", self.persona.name, self.max_chars, self.members, self.links)[0]
        if view and view != self.shown:
            if self.claims and (invented := self.claims.invented(view)):
                self.invented, self.ended = invented, True  # never shown: the answer line (or less) replaces it
                return None
            self.shown = view
            return self._result(Verdict(ok=True, text=view), partial=True)
        return None

    def finish(self) -> ReplyResult | None:
        """The generation is over: the final result, or None when it should be generated again."""
        self._account()
        started = time.perf_counter()
        question = self.state["message"].content
        verdict = validate(self.raw, question, self.persona.name, self.max_chars, self.members, self.links)
        grounded = None
        cut = bool(self.invented)  # stopped while streaming, at the invention (`feed`)
        if self.claims is not None:
            if not self.invented and verdict.ok:
                self.invented = self.claims.invented(verdict.text)
            check = lambda line: validate(line, question, self.persona.name, self.max_chars, self.members, self.links)  # noqa: E731
            grounded = self.claims.answer_from_lore(verdict, self.invented, check)
            if grounded is None and verdict.ok and self.invented:
                grounded = self.claims.without_invented(verdict, self.invented, len(self.verdicts), cut)
        self.timings["validate"] += time.perf_counter() - started
        self.verdicts.append(verdict)
        if grounded is not None:
            return self._result(grounded)
        if verdict.ok:
            return self._result(verdict)
        if len(self.verdicts) >= ATTEMPTS:
            return self.fallback(InvalidReply(verdict))
        return None

    def fallback(self, error: BaseException) -> ReplyResult:
        if self.job is not None and self.job.finished is None:
            self.job.cancel()
        self._account()
        if isinstance(error, InvalidReply):
            logger.warning("reply failed validation twice (%s); using the fallback line", error)
        else:
            logger.error("generation failed; using the fallback line", exc_info=error)
        reason = f"{type(error).__name__}: {error}"
        verdict = Verdict(ok=False, text=self.persona.fallback(len(self.verdicts)), problems=("fallback", reason))
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
        if not generated and self.token_counter and self.verdicts and not partial:
            generated = self.token_counter(self.verdicts[-1].text)
        return ReplyResult(
            text=verdict.text,
            ok=verdict.ok,
            partial=partial,
            analysis=state["analysis"],
            lore=state["lore"]["items"],
            lore_warning=state["lore"]["warning"],
            assembled=state["context"],
            attempts=list(self.verdicts),
            error=verdict.problems[1] if not verdict.ok and len(verdict.problems) > 1 else "",
            timings=dict(self.timings),
            generated_tokens=generated,
            prompt_tokens=(stats.prompt_tokens if stats and stats.prompt_tokens else state["context"].tokens),
            reused_tokens=stats.cached_tokens if stats else 0,
            reuse_reported=bool(stats and stats.prompt_tokens),
            engine=stats,
        )
