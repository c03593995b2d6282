"""The rolling summary's prompt, and the summary sharing the model with replies through the generation service."""

import threading

from app.runtime import build_runtime
from chains.summary import build_summary_request
from chains.types import ChatMessage
from fakes.llm import ScriptedLLM
from fakes.polling import wait_until
from llm.generation import BACKGROUND_SLOT


def test_summary_request_uses_the_prompt_file_and_the_chat_template(tokenizer, prompt_set, persona):
    request = build_summary_request(tokenizer, prompt_set, persona)
    made = request(
        "earlier: greetings",
        [ChatMessage("bob", "who holds the record?"), ChatMessage("Susu", "kiwi!", from_character=True)],
    )
    assert (
        "Earlier summary: earlier: greetings" in made.prompt
        and "bob: who holds the record?" in made.prompt
        and "Susu: kiwi!" in made.prompt
    )
    assert "<|im_start|>user" in made.prompt and "SmolLM" not in made.prompt
    assert made.slot == BACKGROUND_SLOT and made.temperature == 0.0  # its own cache slot, greedy


def test_a_long_backlog_is_cut_to_the_budget_keeping_the_newest(tokenizer, prompt_set, persona):
    request = build_summary_request(tokenizer, prompt_set, persona, budget=300)
    made = request("", [ChatMessage("bob", f"message number {i} " + "blah " * 40) for i in range(30)])
    assert len(tokenizer.encode(made.prompt, add_special_tokens=False)) <= 300 and "message number 29" in made.prompt


def test_summary_and_reply_never_generate_at_the_same_time(settings, fake_bundle):
    bundle = fake_bundle(["x"])
    bundle.llm = ScriptedLLM(responses=["kiwi holds the tetris record; bob asked about it."], piece_delay=0.02)
    settings = settings.model_copy(update={"SUMMARIZE_INTERVAL": 2})
    runtime = build_runtime(settings, model=bundle, with_index=False)
    runtime.service.background_idle_s = 0
    runtime.observe(1, ChatMessage("alice", "one", message_id=1))
    runtime.observe(1, ChatMessage("bob", "two", message_id=2))  # starts the background summary
    assert wait_until(lambda: bundle.llm.running == 1)  # the summary is generating when the reply is asked for
    reply = threading.Thread(target=runtime.reply, args=(1, ChatMessage("bob", "@Susu hi", message_id=3)))
    reply.start()
    reply.join(10)
    assert wait_until(lambda: runtime.memory.snapshot(1).summary.startswith("kiwi holds"))
    assert bundle.llm.most_running == 1
    runtime.close()


def test_a_long_backlog_is_fitted_counting_each_message_once(tokenizer, prompt_set, persona):
    """The generation worker builds this prompt while holding the model: it must stay linear."""

    class Counting:
        def __init__(self, inner):
            self.inner, self.chars = inner, 0

        def encode(self, text, **kwargs):
            self.chars += len(text)
            return self.inner.encode(text, **kwargs)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    counting = Counting(tokenizer)
    request = build_summary_request(counting, prompt_set, persona, budget=300)
    backlog = [ChatMessage("bob", f"message number {i} lol") for i in range(200)]
    made = request("", backlog)
    assert "message number 199" in made.prompt and "message number 0 " not in made.prompt
    assert len(tokenizer.encode(made.prompt, add_special_tokens=False)) <= 300
    backlog_chars = sum(len(f"bob: {m.content}") + 1 for m in backlog)
    assert counting.chars <= backlog_chars + 4 * len(made.prompt)  # each message counted once
