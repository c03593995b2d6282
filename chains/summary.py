"""The summarizer behind short-term memory's rolling summary: the summarize prompt and the LLM."""

from __future__ import annotations

import threading

from langchain_core.language_models import BaseLLM
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import RunnableLambda

from chains.memory import Summarizer
from chains.types import ChatMessage
from prompts import Persona, PromptSet

SUMMARY_MAX_NEW_TOKENS = 80
SUMMARY_SYSTEM = "You write short, factual summaries of Discord chats."


def build_summarizer(llm: BaseLLM, tokenizer, prompts: PromptSet, persona: Persona, model_lock: threading.Lock | None = None) -> Summarizer:
    """A function (previous summary, new messages) -> new summary, made by the LLM."""

    def to_prompt(inputs: dict) -> str:
        lines = "\n".join(
            f"{persona.name if m.from_character else m.author}: {m.content[:300]}" for m in inputs["messages"]
        )
        text = prompts.summarize.format(char=persona.name, summary=inputs["summary"] or "(none)", messages=lines)
        if getattr(tokenizer, "chat_template", None):
            # A system turn of our own, or templates such as SmolLM2's insert their default one.
            turns = [{"role": "system", "content": SUMMARY_SYSTEM}, {"role": "user", "content": text}]
            return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        return text

    options = {"pipeline_kwargs": {"max_new_tokens": SUMMARY_MAX_NEW_TOKENS, "do_sample": False}}
    bound = llm.bind(**options) if type(llm).__name__ == "HuggingFacePipeline" else llm
    chain = (RunnableLambda(to_prompt, name="summary_prompt") | bound | StrOutputParser()).with_config(run_name="summarize")

    lock = model_lock or threading.Lock()

    def summarize(previous: str, messages: list[ChatMessage]) -> str:
        with lock:  # the reply path never waits on this call, only on the model being free
            return chain.invoke({"summary": previous, "messages": messages})

    return summarize
