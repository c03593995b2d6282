"""The rolling summary made by the LLM, and its sharing of the model with replies."""

import threading
import time

from langchain_core.language_models import FakeListLLM

from app.runtime import build_runtime
from chains.summary import build_summarizer
from chains.types import ChatMessage


STATE = {"active": 0, "most": 0, "prompts": []}


class CountingLLM(FakeListLLM):
    """Records in STATE how many calls run at once and the prompts it was given."""

    def _call(self, prompt, *args, **kwargs):
        STATE["active"] += 1
        STATE["most"] = max(STATE["most"], STATE["active"])
        STATE["prompts"].append(prompt)
        time.sleep(0.3)
        STATE["active"] -= 1
        return "kiwi holds the tetris record; bob asked about it."


def test_summarizer_uses_the_prompt_file_and_the_chat_template(tokenizer, prompt_set, persona):
    llm = CountingLLM(responses=["x"])
    summarize = build_summarizer(llm, tokenizer, prompt_set, persona)
    out = summarize("earlier: greetings", [ChatMessage("bob", "who holds the record?"), ChatMessage("Susu", "kiwi!", from_character=True)])
    prompt = STATE["prompts"][-1]
    assert out.startswith("kiwi holds")
    assert "Earlier summary: earlier: greetings" in prompt and "bob: who holds the record?" in prompt and "Susu: kiwi!" in prompt
    assert "<|im_start|>user" in prompt and "SmolLM" not in prompt


def test_summary_and_reply_never_generate_at_the_same_time(settings, fake_bundle):
    bundle = fake_bundle(["x"])
    bundle.llm = CountingLLM(responses=["x"])
    STATE.update(active=0, most=0)
    settings = settings.model_copy(update={"SUMMARIZE_INTERVAL": 2})
    runtime = build_runtime(settings, model=bundle, with_index=False)
    runtime.observe(1, ChatMessage("alice", "one", message_id=1))
    job = runtime.memory.add(1, ChatMessage("bob", "two", message_id=2))  # starts the background summary
    reply = threading.Thread(target=runtime.reply, args=(1, ChatMessage("bob", "@Susu hi", message_id=3)))
    reply.start()
    reply.join(10)
    job.result(10)
    assert STATE["most"] == 1
    assert runtime.memory.snapshot(1).summary.startswith("kiwi holds")
    runtime.close()
