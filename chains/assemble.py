"""Context assembly: fill CONTEXT_TOKENS, counted with the model's own tokenizer, by priority.

persona core > the message > recent short-term memory > lore > summary. What does not fit is
cut and reported (and logged), so `--explain` can show what the model did not see.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from chains.types import ChatMessage, LoreItem
from prompts import Persona, PromptSet

logger = logging.getLogger(__name__)

MAX_HISTORY_MESSAGE_TOKENS = 80  # one long old message must not crowd out the rest
MAX_LORE_ITEM_TOKENS = 70  # a long lore post is shortened rather than dropped
MIN_SUMMARY_TOKENS = 12


@dataclass
class Assembled:
    """The prompt string and how the budget was spent."""

    prompt: str
    tokens: int
    budget: int
    sections: dict[str, int] = field(default_factory=dict)
    cut: list[str] = field(default_factory=list)


def speaker_label(name: str, character: str) -> str:
    """A member's name as shown to the model; never the character's own name."""
    clean = re.sub(r"[\r\n:]+", " ", name).strip() or "someone"
    return f"{clean} (member)" if clean.lower() == character.lower() else clean


class ContextAssembler:
    """Builds the chat-templated prompt for a reply within a token budget."""

    def __init__(self, tokenizer, prompts: PromptSet, persona: Persona, budget: int) -> None:
        self.tokenizer = tokenizer
        self.prompts = prompts
        self.persona = persona
        self.budget = budget

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def truncate(self, text: str, tokens: int) -> str:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) <= tokens:
            return text
        return self.tokenizer.decode(ids[: max(tokens - 1, 0)]).rstrip() + "…"

    def _system(self, user: str, summary: str, lore: Sequence[LoreItem]) -> str:
        headings = self.prompts.headings
        lore_text = "\n".join(
            self.prompts.lore.format(author=item.author or "lore", date=item.date or "-", content=item.content)
            for item in lore
        )
        return self.prompts.system.format(
            char=self.persona.name,
            persona=self.persona.core(user),
            user=user,
            summary=f"{headings.get('summary', '')}\n{summary}".strip() if summary else "",
            lore=f"{headings.get('lore', '')}\n{lore_text}".strip() if lore_text else "",
        )

    def _turns(self, history: Sequence[ChatMessage], message: ChatMessage, message_text: str) -> list[dict]:
        turns: list[dict] = []
        for item in [*history, None]:
            if item is None:
                role, text = "user", f"{speaker_label(message.author, self.persona.name)}: {message_text}"
            elif item.from_character:
                role, text = "assistant", item.content
            else:
                role = "user"
                text = f"{speaker_label(item.author, self.persona.name)}: {self.truncate(item.content, MAX_HISTORY_MESSAGE_TOKENS)}"
            if turns and turns[-1]["role"] == role:
                turns[-1]["content"] += "\n" + text
            else:
                turns.append({"role": role, "content": text})
        while turns and turns[0]["role"] == "assistant":  # templates such as Mistral's start with a user turn
            turns.pop(0)
        return turns

    def render(self, system: str, turns: list[dict]) -> str:
        messages = [{"role": "system", "content": system}, *turns]
        if getattr(self.tokenizer, "chat_template", None):
            try:
                return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except Exception:  # a template without a system role: fold it into the first user turn
                folded = [dict(t) for t in turns]
                folded[0]["content"] = f"{system}\n\n{folded[0]['content']}"
                return self.tokenizer.apply_chat_template(folded, tokenize=False, add_generation_prompt=True)
        lines = [system] + [
            t["content"] if t["role"] == "user" else f"{self.persona.name}: {t['content']}" for t in turns
        ]
        return "\n".join(lines) + f"\n{self.persona.name}:"

    def assemble(self, message: ChatMessage, message_text: str, history: Sequence[ChatMessage], lore: Sequence[LoreItem], summary: str) -> Assembled:
        """Fit persona, message, history, lore and summary into the budget, in that priority."""
        user = speaker_label(message.author, self.persona.name)
        cut: list[str] = []
        base_prompt = self.render(self._system(user, "", ()), self._turns((), message, message_text))
        base = self.count(base_prompt)
        if base > self.budget:  # the persona is never cut: shorten the message instead
            over = base - self.budget
            keep = max(self.count(message_text) - over - 2, 8)
            message_text = self.truncate(message_text, keep)
            cut.append(f"message shortened to {keep} tokens")
            base = self.count(self.render(self._system(user, "", ()), self._turns((), message, message_text)))
        sections = {"persona+frame": base - self.count(message_text), "message": self.count(message_text)}
        left = self.budget - base

        kept: list[ChatMessage] = []
        for item in reversed(history):  # newest first
            line = item.content if item.from_character else f"{speaker_label(item.author, self.persona.name)}: {self.truncate(item.content, MAX_HISTORY_MESSAGE_TOKENS)}"
            cost = self.count(line) + 6  # role markers of a turn
            if cost > left:
                cut.append(f"{len(history) - len(kept)} older messages")
                break
            kept.insert(0, item)
            left -= cost
        sections["history"] = self.budget - base - left

        chosen: list[LoreItem] = []
        heading = self.count(self.prompts.headings.get("lore", "")) + 1
        for item in sorted(lore, key=lambda i: i.score, reverse=True):
            item = replace(item, content=self.truncate(item.content, MAX_LORE_ITEM_TOKENS))
            cost = self.count(self.prompts.lore.format(author=item.author, date=item.date, content=item.content)) + 1
            cost += 0 if chosen else heading
            if cost > left:
                cut.append(f"lore: {item.content[:40]!r}")
                continue
            chosen.append(item)
            left -= cost
        sections["lore"] = self.budget - base - sections["history"] - left

        summary_text = ""
        if summary:
            room = left - self.count(self.prompts.headings.get("summary", "")) - 2
            if room >= MIN_SUMMARY_TOKENS:
                summary_text = self.truncate(summary, room)
                if summary_text != summary:
                    cut.append("summary shortened")
            else:
                cut.append("summary")
        prompt = self.render(self._system(user, summary_text, chosen), self._turns(kept, message, message_text))
        tokens = self.count(prompt)
        while tokens > self.budget and kept:  # tokenization at joins can differ slightly: trim oldest
            kept.pop(0)
            cut.append("1 older message (final fit)")
            prompt = self.render(self._system(user, summary_text, chosen), self._turns(kept, message, message_text))
            tokens = self.count(prompt)
        sections["summary"] = self.count(summary_text) if summary_text else 0
        if cut:
            logger.info("context over budget (%d tokens), cut: %s", self.budget, "; ".join(cut))
        return Assembled(prompt=prompt, tokens=tokens, budget=self.budget, sections=sections, cut=cut)
