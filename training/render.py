"""Training samples rendered into the very prompt a live reply gets.

A sample of `training.data_prep` is a channel situation (history, message, target). It is turned
into token ids with the bot's own `ContextAssembler`, prompt files, persona and the tokenizer of the
model being trained: the frame and persona as the system turn, the channel's messages as turns
(the target's author as the character), the message last. The completion is the target followed
by the token that ends the character's turn in the chat template, so the adapter learns to stop
where the bot stops reading. Both are tokenized as serving tokenizes (no special tokens added).
"""

from __future__ import annotations

from dataclasses import dataclass

from chains.assemble import ContextAssembler
from chains.preprocess import analyze
from chains.reply import EMPTY_MESSAGE_TEXT, turn_end
from chains.types import ChatMessage
from prompts import Persona, PromptSet, load_persona, load_prompts


@dataclass(frozen=True)
class Rendered:
    prompt: str
    completion: str
    prompt_ids: list[int]
    completion_ids: list[int]

    @property
    def tokens(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)


class SampleRenderer:
    """Renders samples with the serving assembly, within CONTEXT_TOKENS and the trainer's max length."""

    def __init__(
        self, tokenizer, prompts: PromptSet, persona: Persona, context_tokens: int, max_length: int | None = None
    ) -> None:
        self.tokenizer = tokenizer
        self.persona = persona
        self.context_tokens = context_tokens
        self.max_length = max_length
        self.assembler = ContextAssembler(tokenizer, prompts, persona, context_tokens)
        self.end = turn_end(tokenizer)

    @classmethod
    def from_settings(cls, tokenizer, settings, max_length: int | None = None) -> SampleRenderer:
        """The renderer for the prompt files, persona and context size the bot is configured with."""
        return cls(
            tokenizer,
            load_prompts(settings.PROMPTS_DIR),
            load_persona(settings.PERSONA_FILE),
            settings.CONTEXT_TOKENS,
            max_length,
        )

    def situation(self, sample: dict) -> tuple[ChatMessage, str, list[ChatMessage]]:
        """The message, its text as the chain passes it on, and the history, as the reply chain sees them."""

        def chat(turn: dict) -> ChatMessage:
            own = bool(turn.get("own"))
            return ChatMessage(self.persona.name if own else turn["author"], turn["content"], from_character=own)

        message = chat(sample["message"])
        text = analyze(message.content, self.persona.name).query or EMPTY_MESSAGE_TEXT
        return message, text, [chat(turn) for turn in sample.get("history", [])]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def render(self, sample: dict) -> Rendered | None:
        """The sample's prompt and completion, or None when even a bare prompt does not fit max_length."""
        completion = self.assembler.guard(sample["target"]) + self.end
        completion_ids = self.encode(completion)
        budget = self.context_tokens
        if self.max_length is not None:
            budget = min(budget, self.max_length - len(completion_ids))
        message, text, history = self.situation(sample)
        self.assembler.budget = budget
        prompt = self.assembler.assemble(message, text, history, [], "").prompt
        prompt_ids = self.encode(prompt)
        if self.max_length is not None and len(prompt_ids) + len(completion_ids) > self.max_length:
            return None
        return Rendered(prompt, completion, prompt_ids, completion_ids)
