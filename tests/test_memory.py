"""Short-term memory: per-channel windows and the rolling summary, refreshed through the generation service."""

import pytest

from chains.memory import ShortTermMemory
from chains.types import ChatMessage
from fakes.llm import ScriptedLLM
from fakes.polling import wait_until
from llm.generation import GenerationRequest, GenerationService


def msg(i: int, author: str = "alice") -> ChatMessage:
    return ChatMessage(author=author, content=f"message {i}", message_id=i)


def summary_request(previous: str, batch: list[ChatMessage]) -> GenerationRequest:
    return GenerationRequest(f"previous: {previous} | new: {', '.join(m.content for m in batch)}", slot=1)


@pytest.fixture
def service_for():
    made = []

    def make(llm):
        made.append(GenerationService(llm, background_idle_s=0))
        return made[-1]

    yield make
    for service in made:
        service.close()


def test_window_is_per_channel_and_bounded():
    memory = ShortTermMemory(window=3, summarize_interval=100)
    for i in range(5):
        memory.add(1, msg(i))
    memory.add(2, msg(99))
    assert [m.message_id for m in memory.snapshot(1).messages] == [2, 3, 4]
    assert [m.message_id for m in memory.snapshot(2).messages] == [99]
    assert memory.snapshot(1).first_position == 2 and memory.snapshot(2).first_position == 0


def test_summary_refreshes_every_interval_in_the_background(service_for):
    llm = ScriptedLLM(responses=["summary one", "summary two"])
    service = service_for(llm)
    memory = ShortTermMemory(
        window=10, summarize_interval=3, summary_request=summary_request, schedule=service.background
    )
    assert not memory.add(1, msg(1)) and not memory.add(1, msg(2))
    assert memory.add(1, msg(3))
    assert wait_until(lambda: memory.snapshot(1).summary == "summary one")
    for i in (4, 5, 6):
        memory.add(1, msg(i))
    assert wait_until(lambda: memory.snapshot(1).summary == "summary two")
    assert llm.prompts == [
        "previous:  | new: message 1, message 2, message 3",
        "previous: summary one | new: message 4, message 5, message 6",
    ]


def test_a_late_summary_covers_every_message_since_the_last_one(service_for):
    llm = ScriptedLLM(responses=["reply", "summary"], delay=0.3)
    service = service_for(llm)
    memory = ShortTermMemory(
        window=10, summarize_interval=2, summary_request=summary_request, schedule=service.background
    )
    job = service.reply(GenerationRequest("a reply keeps the model busy"))
    for i in range(1, 6):  # due at 2 and at 4: one task, coalesced
        memory.add(1, msg(i))
    "".join(job.pieces())
    assert wait_until(lambda: memory.snapshot(1).summary == "summary")
    assert (
        llm.prompts[1] == "previous:  | new: message 1, message 2, message 3, message 4, message 5" and llm.calls == 2
    )


def test_failed_summary_keeps_the_previous_one_and_retries_with_the_next_messages(service_for):
    llm = ScriptedLLM(responses=["ok"], error="model crashed")
    service = service_for(llm)
    memory = ShortTermMemory(
        window=10, summarize_interval=2, summary_request=summary_request, schedule=service.background
    )
    memory.add(1, msg(1))
    memory.add(1, msg(2))
    assert wait_until(lambda: llm.calls == 1) and service.wait_idle(5)
    assert memory.snapshot(1).summary == ""
    llm.error = ""
    memory.add(1, msg(3))  # the failed batch is summarized with the next one
    assert wait_until(lambda: memory.snapshot(1).summary == "ok")
    assert llm.prompts[-1] == "previous:  | new: message 1, message 2, message 3"


def test_clear_forgets_window_and_summary_and_discards_a_summary_in_progress(service_for):
    llm = ScriptedLLM(responses=["stale summary " * 10], piece_delay=0.02)
    service = service_for(llm)
    memory = ShortTermMemory(
        window=5, summarize_interval=1, summary_request=summary_request, schedule=service.background
    )
    memory.add(1, msg(1))
    assert wait_until(lambda: llm.pieces > 0)
    memory.clear(1)
    assert service.wait_idle(10)
    snap = memory.snapshot(1)
    assert snap.messages == () and snap.summary == ""


def test_forgetting_a_member_drops_their_messages_and_the_summaries_they_are_in(service_for):
    llm = ScriptedLLM(responses=["bob loves tetris"])
    service = service_for(llm)
    memory = ShortTermMemory(
        window=10, summarize_interval=2, summary_request=summary_request, schedule=service.background
    )
    memory.add(1, ChatMessage("bob", "I love tetris", author_id=7, message_id=1))
    memory.add(1, ChatMessage("alice", "me too", author_id=8, message_id=2))
    memory.add(2, ChatMessage("carol", "other channel", author_id=9, message_id=3))
    assert wait_until(lambda: memory.snapshot(1).summary == "bob loves tetris")
    memory.add(2, ChatMessage("bob", "a plain-text name only", message_id=4))
    assert memory.forget({7}, {"Bob"}) == 2
    assert [m.author for m in memory.snapshot(1).messages] == ["alice"] and memory.snapshot(1).summary == ""
    assert [m.author for m in memory.snapshot(2).messages] == ["carol"]


def test_a_summary_postponed_for_long_keeps_only_the_newest_backlog(service_for):
    from chains.memory import SUMMARY_BACKLOG

    llm = ScriptedLLM(responses=["reply", "summary"], delay=0.3)
    service = service_for(llm)
    memory = ShortTermMemory(
        window=10, summarize_interval=2, summary_request=summary_request, schedule=service.background
    )
    job = service.reply(GenerationRequest("a reply keeps the model busy"))
    for i in range(SUMMARY_BACKLOG + 50):
        memory.add(1, msg(i))
    "".join(job.pieces())
    assert wait_until(lambda: memory.snapshot(1).summary == "summary")
    summarized = llm.prompts[1].split("new: ")[1].split(", ")
    assert len(summarized) == SUMMARY_BACKLOG and summarized[-1] == f"message {SUMMARY_BACKLOG + 49}"


def test_a_deleted_or_edited_message_leaves_memory_and_the_summary_made_of_it(service_for):
    llm = ScriptedLLM(responses=["alice lives at 42 Quillmoor Lane", "a summary of other things"], delay=0.2)
    service = service_for(llm)
    memory = ShortTermMemory(
        window=10, summarize_interval=2, summary_request=summary_request, schedule=service.background
    )
    memory.add(1, ChatMessage("alice", "I live at 42 Quillmoor Lane", message_id=1))
    memory.add(1, ChatMessage("bob", "nice street", message_id=2))
    assert wait_until(lambda: "Quillmoor" in memory.snapshot(1).summary)
    memory.add(2, ChatMessage("carol", "nothing to do with it", message_id=3))
    assert memory.drop({1}) == 1
    assert [m.message_id for m in memory.snapshot(1).messages] == [2] and memory.snapshot(1).summary == ""
    assert [m.message_id for m in memory.snapshot(2).messages] == [3]  # other channels untouched

    memory.add(1, ChatMessage("alice", "my new phone number is 555-0199", message_id=4))
    memory.add(1, ChatMessage("bob", "noted", message_id=5))  # a summary of these two is being made
    assert wait_until(lambda: llm.running)
    assert memory.edit(4, "my new phone number is private")
    assert service.wait_idle(10)
    assert "555-0199" not in memory.snapshot(1).summary  # the summary made of the old words was discarded
    assert [m.content for m in memory.snapshot(1).messages if m.message_id == 4] == ["my new phone number is private"]


def test_the_characters_replies_made_from_a_message_go_with_it(service_for):
    llm = ScriptedLLM(responses=["the character said alice lives at 42 Quillmoor Lane"])
    service = service_for(llm)
    memory = ShortTermMemory(
        window=10, summarize_interval=3, summary_request=summary_request, schedule=service.background
    )
    memory.add(1, ChatMessage("alice", "I live at 42 Quillmoor Lane", message_id=1))
    memory.add(1, ChatMessage("bob", "where does alice live?", message_id=2))
    assert memory.prompt_sources(1) == {1, 2}
    memory.add(
        1, ChatMessage("Susu", "alice lives at 42 Quillmoor Lane", from_character=True, sources=frozenset({1, 2}))
    )
    memory.add(1, ChatMessage("Susu", "a reply made from lore only", from_character=True, sources=frozenset({9})))
    assert memory.prompt_sources(1) == {1, 2, 9} and memory.said({1, 5}) == {1: "I live at 42 Quillmoor Lane"}
    assert memory.edit(1, "I moved")
    assert [m.content for m in memory.snapshot(1).messages] == [
        "I moved",
        "where does alice live?",
        "a reply made from lore only",
    ]
    assert memory.drop({9}) == 1  # a lore message, never in memory itself: the reply made from it goes
    assert [m.message_id for m in memory.snapshot(1).messages] == [1, 2]

    memory.add(2, ChatMessage("carol", "hello", message_id=3))
    memory.add(2, ChatMessage("Susu", "quoting lore message 7", from_character=True, sources=frozenset({3, 7})))
    memory.add(2, ChatMessage("dave", "hi", message_id=4))  # the summary is made of these three
    assert wait_until(lambda: "Quillmoor" in memory.snapshot(2).summary)
    assert memory.prompt_sources(2) >= {3, 4, 7} and memory.cited() == {1, 2, 3, 4, 7}
    assert memory.drop({7}) == 1
    snap = memory.snapshot(2)
    assert snap.summary == "" and [m.message_id for m in snap.messages] == [3, 4]  # made from 7's words: dropped
