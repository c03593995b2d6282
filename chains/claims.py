"""The claim check of a reply to a question: what it may say, and what replaces what it may not.

Grounding on (`GROUNDING=check`), a reply to a question may not hold a claim (a figure, a code-like
name, a proper name) that nothing the bot was given holds: the lore found, the message, the
conversation and its summary, the persona, the names of who speaks. With evidence (chains/grounding.py),
a reply that invents one, or does not use the evidence, is replaced by the answer line, the evidence
said as who said it (a line for each message quoted). Without evidence, its claims are checked as well unless the
question asks for the character's own taste ("what's the best mario game?": "super mario 64" is its pick, not a fact
to make up; "why does my XIAO ignore the UF2?" gets no "released in 2024", "which networks will it run on?" no
"the Nexus One"): the sentences with a made-up one are dropped, and with none left the persona's line for a question
it cannot answer is said.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence

from chains.grounding import Evidence, Grounding, asks_for_figure, asks_for_taste, figures, known_claims
from chains.types import ChatMessage, LoreItem, Verdict
from prompts import Persona, PromptFile

logger = logging.getLogger(__name__)

_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])\s+")
_SENTENCE_END = re.compile(r"[.!?…]+[)\"'”’*_~]*(?=\s|$)|\n")


class ClaimCheck:
    """What one reply to a question may claim, and the answer that replaces a reply that claims more."""

    def __init__(
        self,
        persona: Persona,
        message: ChatMessage,
        lore: Sequence[LoreItem],
        history: Sequence[ChatMessage],
        summary: str,
        names: Iterable[str],
        evidence: Evidence | None,
        answer: PromptFile | None,
    ) -> None:
        self.persona, self.question, self.evidence, self.answer = persona, message.content, evidence, answer
        self.taste = asks_for_taste(message.content)  # without evidence: nothing checked, or only figures asked for
        self.figures_asked = asks_for_figure(message.content)
        names = [*names, persona.name]
        self.known = known_claims(
            [
                *(item.content for item in lore),
                *(item.date for item in lore),
                message.content,
                *(m.content for m in history),
                summary,
                persona.description,
                persona.speaking_style,
                persona.greeting,
                *(line for example in persona.examples for line in example),  # its own voice: ":3", "<3"
                persona.scenario,
                persona.personality,
                persona.system_prompt,
                persona.post_history_instructions,
                *names,
            ],
            names,
        )

    def invented(self, text: str) -> set[str]:
        """The claims of `text` nothing given holds (figures, code-like and proper names); without evidence, when the
        character is asked for its taste, only the figures it is asked for ("how much did it raise?" may not get a
        made-up amount, "which networks will it run on?" a made-up "Nexus One"; "what's the best mario game?" may get
        "super mario 64", "how many mario games would you recommend?" "Nintendo" but no made-up count)."""
        invented = Grounding.unsupported(text, self.known)
        if self.evidence is None and self.taste:
            return invented & figures(text) if self.figures_asked else set()
        return invented

    def answer_from_lore(self, verdict: Verdict, invented: set[str], check: Callable[[str], Verdict]) -> Verdict | None:
        """The answer line, when the reply invents a claim or does not use the evidence; else None.

        `check` validates the line as any reply is validated (pings, links, length); a line it refuses is None.
        """
        evidence = self.evidence
        if evidence is None or self.answer is None:
            return None
        if not invented and verdict.ok and Grounding.uses(verdict.text, evidence, self.question):
            return None
        lines = [self._quote(quoted) for quoted in evidence.quoted]
        answer = check("\n".join(lines))
        if len(lines) > 1 and (not answer.ok or any(fix.startswith("capped") for fix in answer.fixes)):
            answer = check(lines[0])  # both do not fit: the best one alone
        if not answer.ok:
            return None
        why = f"invented {', '.join(sorted(invented))}" if invented else "did not use the lore"
        logger.info("reply %s: answered from the lore (evidence %.2f)", why, evidence.score)
        return Verdict(ok=True, text=answer.text, fixes=(*answer.fixes, f"answered from the lore ({why})"))

    def _quote(self, evidence: Evidence) -> str:
        """The answer line for one piece of evidence: its passage, said as who said it."""
        author = evidence.item.author if evidence.item.source == "index" and evidence.item.author else "the lore"
        return self.answer.format(author=author, content=evidence.passage)

    def without_invented(self, verdict: Verdict, invented: set[str], attempt: int, cut: bool = False) -> Verdict:
        """No evidence to answer from (or its line refused): the reply without its sentences that hold an
        invented claim, or, with none left, the persona's line for a question it cannot answer. `cut`: the
        generation was stopped at the invention, so what follows its sentence is unfinished ("... in 2024. It")
        and goes too."""
        text = verdict.text
        if cut:
            ends = [m.end() for m in _SENTENCE_END.finditer(text)]
            text = text[: ends[-1]] if ends else ""
        lines = [
            " ".join(s for s in _SENTENCE_BREAK.split(line) if not self.invented(s)).strip()
            for line in text.splitlines()
        ]
        why = f"dropped what invented {', '.join(sorted(invented))}"
        logger.info("reply to a question: %s", why)
        text = "\n".join(line for line in lines if line) or self.persona.unknown(attempt)
        return Verdict(ok=True, text=text, fixes=(*verdict.fixes, why))
