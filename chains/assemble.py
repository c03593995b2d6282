"""Context assembly: fill CONTEXT_TOKENS, counted with the model's own tokenizer, by priority.

persona core > the message > recent short-term memory > lore > summary. What does not fit is
cut and reported (and logged), so `--explain` can show what the model did not see.

The prompt is laid out for KV-cache reuse: what changes least comes first.

    system turn      the frame and the persona (the same for every reply and every member)
    conversation     the channel's recent messages as turns (grows at the end as the channel talks)
    context          the summary and the lore found for this reply (new for every reply), as a
                     system turn where the chat template allows one there, else at the start of the
                     last user turn
    last user turn   the message being answered

so consecutive replies in a channel share everything up to the context block, and the engine
computes only what is new. Old messages leave the conversation in steps of `HISTORY_STEP`, not one
at a time, so that its beginning (and the cache behind it) stays the same for several replies.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from chains.names import SpecialTokenGuard, one_line, skeleton
from chains.types import ChatMessage, LoreItem
from prompts import Persona, PromptSet

logger = logging.getLogger(__name__)

MAX_HISTORY_MESSAGE_TOKENS = 80  # one long old message must not crowd out the rest
MAX_LORE_ITEM_TOKENS = 70  # a long lore post is shortened rather than dropped
MIN_SUMMARY_TOKENS = 12
LORE_RESERVE_ITEMS = 2  # room kept for the best lore entries before history fills the budget
HISTORY_STEP = 4  # old messages are dropped this many at a time (by their position in the channel)
FRAME_USER = "a member"  # what {{user}} reads as in the frame, which is shared by every member


@dataclass
class Assembled:
    """The prompt string and how the budget was spent."""

    prompt: str
    tokens: int
    budget: int
    sections: dict[str, int] = field(default_factory=dict)
    cut: list[str] = field(default_factory=list)
    speakers: tuple[str, ...] = ()  # the member labels the prompt shows


def speaker_label(name: str, character: str) -> str:
    """A member's name as shown to the model: one line, no colon, and never passing for the character.

    A member whose name looks like the character's (the same letters, or look-alikes from another
    script, such as a Cyrillic "Ѕusu") is shown as "name (member)".
    """
    clean = one_line(re.sub(r"[:\uff1a\ufe55\ua789\u2236]+", " ", name)) or "someone"
    return f"{clean} (member)" if skeleton(clean) == skeleton(character) else clean


class ContextAssembler:
    """Builds the chat-templated prompt for a reply within a token budget."""

    def __init__(self, tokenizer, prompts: PromptSet, persona: Persona, budget: int) -> None:
        self.tokenizer = tokenizer
        self.prompts = prompts
        self.persona = persona
        self.budget = budget
        self.guard = SpecialTokenGuard(tokenizer)  # member text never turns into control tokens
        # A custom system.txt may still place summary, lore and the member in the frame (no cache reuse).
        self._in_frame = set(prompts.system.variables) & {"summary", "lore", "user"}

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def truncate(self, text: str, tokens: int) -> str:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) <= tokens:
            return text
        return self.tokenizer.decode(ids[: max(tokens - 1, 0)]).rstrip() + "…"

    def _lore_line(self, item: LoreItem) -> str:
        """One lore entry: on one line, its author marked like a speaker (never as the character)."""
        author = "lorebook" if item.source == "lorebook" else speaker_label(item.author or "someone", self.persona.name)
        content = item.content if item.source == "lorebook" else one_line(item.content)
        return self.prompts.lore.format(
            author=self.guard(author), date=self.guard(item.date or "-"), content=self.guard(content)
        )

    def _lore_text(self, lore: Sequence[LoreItem]) -> str:
        lines = "\n".join(self._lore_line(item) for item in lore)
        return f"{self.prompts.headings.get('lore', '')}\n{lines}".strip() if lines else ""

    def _summary_text(self, summary: str) -> str:
        return f"{self.prompts.headings.get('summary', '')}\n{self.guard(summary)}".strip() if summary else ""

    def _system(self, user: str, summary: str, lore: Sequence[LoreItem]) -> str:
        user = self.guard(user)
        values = {
            "char": self.persona.name,
            "persona": self.persona.core(user if "user" in self._in_frame else FRAME_USER),
        }
        if "user" in self._in_frame:
            values["user"] = user
        if "summary" in self._in_frame:
            values["summary"] = self._summary_text(summary)
        if "lore" in self._in_frame:
            values["lore"] = self._lore_text(lore)
        return self.prompts.system.format(**values)

    def _context(self, summary: str, lore: Sequence[LoreItem]) -> str:
        """The block placed right before the message: what changes with every reply."""
        summary_text = "" if "summary" in self._in_frame else self._summary_text(summary)
        lore_text = "" if "lore" in self._in_frame else self._lore_text(lore)
        if not summary_text and not lore_text:
            return ""
        return self.prompts.context.format(summary=summary_text, lore=lore_text).strip()

    def _lore_cost(self, items: Sequence[LoreItem]) -> int:
        ranked = sorted(items, key=lambda i: i.score, reverse=True)
        if not ranked:
            return 0
        heading = self.count(self.prompts.headings.get("lore", "")) + 3
        return heading + sum(
            self.count(self._lore_line(replace(i, content=self.truncate(i.content, MAX_LORE_ITEM_TOKENS)))) + 1
            for i in ranked
        )

    def _line(self, item: ChatMessage) -> str:
        label = speaker_label(item.author, self.persona.name)
        return self.guard(f"{label}: {self.truncate(item.content, MAX_HISTORY_MESSAGE_TOKENS)}")

    def _turns(self, history: Sequence[ChatMessage], message: ChatMessage, message_text: str) -> list[dict]:
        """The conversation as chat turns (consecutive lines of one role in one turn), the message last, on its own."""
        turns: list[dict] = []
        for item in history:
            role, text = ("assistant", self.guard(item.content)) if item.from_character else ("user", self._line(item))
            if turns and turns[-1]["role"] == role:
                turns[-1]["content"] += "\n" + text
            else:
                turns.append({"role": role, "content": text})
        while turns and turns[0]["role"] == "assistant":  # templates such as Mistral's start with a user turn
            turns.pop(0)
        label = speaker_label(message.author, self.persona.name)
        return [*turns, {"role": "user", "content": self.guard(f"{label}: {message_text}")}]

    def render(self, system: str, turns: list[dict], context: str = "") -> str:
        """The prompt in the model's chat template; `context` goes right before the message being answered."""
        if not getattr(self.tokenizer, "chat_template", None):
            lines = [system] + [
                t["content"] if t["role"] == "user" else f"{self.persona.name}: {t['content']}" for t in turns
            ]
            return "\n".join(lines[:-1] + ([context] if context else []) + lines[-1:]) + f"\n{self.persona.name}:"
        *before, last = turns
        attempts = []
        if context:  # a system turn of its own: the model reads it as what it knows, not as a member's words
            attempts.append(
                [{"role": "system", "content": system}, *before, {"role": "system", "content": context}, last]
            )
        merged = [*before, {"role": "user", "content": f"{context}\n{last['content']}" if context else last["content"]}]
        if len(merged) > 1 and merged[-2]["role"] == "user":  # one user turn, as the lines of a channel
            merged[-2:] = [{"role": "user", "content": f"{merged[-2]['content']}\n{merged[-1]['content']}"}]
        attempts.append([{"role": "system", "content": system}, *merged])
        folded = [dict(t) for t in merged]  # templates without a system role: the frame opens the first user turn
        folded[0]["content"] = f"{system}\n\n{folded[0]['content']}"
        attempts.append(folded)
        for number, messages in enumerate(attempts):
            try:
                return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except Exception:  # this template refuses the layout: try the next one
                if number == len(attempts) - 1:
                    raise
        raise AssertionError("unreachable")

    def _prompt(
        self,
        user: str,
        kept: Sequence[ChatMessage],
        message: ChatMessage,
        text: str,
        summary: str,
        lore: Sequence[LoreItem],
    ) -> str:
        return self.render(
            self._system(user, summary, lore), self._turns(kept, message, text), self._context(summary, lore)
        )

    def assemble(
        self,
        message: ChatMessage,
        message_text: str,
        history: Sequence[ChatMessage],
        lore: Sequence[LoreItem],
        summary: str,
        first_position: int = 0,
    ) -> Assembled:
        """Fit persona, message, history, lore and summary into the budget, in that priority.

        `first_position` is the channel position of `history[0]` (see ShortTermMemory): old
        messages are dropped at multiples of HISTORY_STEP so the prompt's beginning stays stable.
        """
        user = speaker_label(message.author, self.persona.name)
        cut: list[str] = []
        base = self.count(self._prompt(user, (), message, message_text, "", ()))
        if base > self.budget:  # the persona is never cut: shorten the message instead
            over = base - self.budget
            keep = max(self.count(message_text) - over - 2, 8)
            message_text = self.truncate(message_text, keep)
            cut.append(f"message shortened to {keep} tokens")
            base = self.count(self._prompt(user, (), message, message_text, "", ()))
        sections = {"persona+frame": base - self.count(message_text), "message": self.count(message_text)}
        left = self.budget - base

        # The best lore entries keep some room (at most half of what is left), so that a lore question
        # in a busy channel is not answered from chat history alone.
        reserve = min(
            self._lore_cost(sorted(lore, key=lambda i: i.score, reverse=True)[:LORE_RESERVE_ITEMS]), left // 2
        )
        left -= reserve
        start = len(history)
        for i in range(len(history) - 1, -1, -1):  # newest first: how far back fits
            item = history[i]
            cost = self.count(item.content if item.from_character else self._line(item)) + 6  # role markers of a turn
            if cost > left:
                break
            left -= cost
            start = i
        # Start at a multiple of HISTORY_STEP (by channel position): the same start for several replies,
        # unless so little fits that dropping more would leave almost nothing.
        aligned = -(-(first_position + start) // HISTORY_STEP) * HISTORY_STEP - first_position
        if len(history) - aligned < HISTORY_STEP:
            aligned = start
        for item in history[start:aligned]:  # dropped for a stable beginning: their room goes to lore
            left += self.count(item.content if item.from_character else self._line(item)) + 6
        kept = list(history[aligned:])
        if aligned:
            cut.append(f"{aligned} older messages")
        sections["history"] = self.budget - base - left - reserve
        left += reserve

        chosen: list[LoreItem] = []
        heading = self.count(self.prompts.headings.get("lore", "")) + 1
        for item in sorted(lore, key=lambda i: i.score, reverse=True):
            item = replace(item, content=self.truncate(item.content, MAX_LORE_ITEM_TOKENS))
            cost = self.count(self._lore_line(item)) + 1
            cost += 0 if chosen else heading + 2
            if cost > left:
                cut.append(f"lore: {item.content[:40]!r}")
                continue
            chosen.append(item)
            left -= cost
        sections["lore"] = self.budget - base - sections["history"] - left

        summary_text = ""
        if summary:
            room = left - self.count(self.prompts.headings.get("summary", "")) - 3
            if room >= MIN_SUMMARY_TOKENS:
                summary_text = self.truncate(summary, room)
                if summary_text != summary:
                    cut.append("summary shortened")
            else:
                cut.append("summary")
        prompt = self._prompt(user, kept, message, message_text, summary_text, chosen)
        tokens = self.count(prompt)
        while tokens > self.budget and (kept or chosen):  # tokenization at joins can differ slightly
            if kept:
                kept.pop(0)
                cut.append("1 older message (final fit)")
            else:
                chosen.pop()
                cut.append("1 lore entry (final fit)")
            prompt = self._prompt(user, kept, message, message_text, summary_text, chosen)
            tokens = self.count(prompt)
        sections["summary"] = self.count(summary_text) if summary_text else 0
        if cut:
            logger.info("context over budget (%d tokens), cut: %s", self.budget, "; ".join(cut))
        speakers = tuple(
            dict.fromkeys(speaker_label(m.author, self.persona.name) for m in (*kept, message) if not m.from_character)
        )
        return Assembled(
            prompt=prompt, tokens=tokens, budget=self.budget, sections=sections, cut=cut, speakers=speakers
        )
