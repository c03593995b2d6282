import threading

from chains.memory import ShortTermMemory
from chains.types import ChatMessage


def msg(i: int, author: str = "alice") -> ChatMessage:
    return ChatMessage(author=author, content=f"message {i}", message_id=i)


def test_window_is_per_channel_and_bounded():
    memory = ShortTermMemory(window=3, summarize_interval=100)
    for i in range(5):
        memory.add(1, msg(i))
    memory.add(2, msg(99))
    assert [m.message_id for m in memory.snapshot(1).messages] == [2, 3, 4]
    assert [m.message_id for m in memory.snapshot(2).messages] == [99]


def test_summary_refreshes_every_interval_in_the_background():
    release = threading.Event()
    seen = []

    def slow_summarizer(previous, batch):
        release.wait(5)
        seen.append((previous, [m.message_id for m in batch]))
        return f"summary after {batch[-1].message_id}"

    memory = ShortTermMemory(window=10, summarize_interval=3, summarizer=slow_summarizer)
    assert memory.add(1, msg(1)) is None and memory.add(1, msg(2)) is None
    job = memory.add(1, msg(3))
    assert job is not None
    # the summarizer is still blocked: reading memory (the reply path) does not wait for it
    assert memory.snapshot(1).summary == "" and not job.done()
    release.set()
    job.result(5)
    assert memory.snapshot(1).summary == "summary after 3"
    for i in (4, 5):
        memory.add(1, msg(i))
    memory.add(1, msg(6)).result(5)
    assert seen[-1] == ("summary after 3", [4, 5, 6])
    assert memory.snapshot(1).summary == "summary after 6"


def test_failed_summary_keeps_the_previous_one_and_retries_later():
    calls = []

    def flaky(previous, batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("model crashed")
        return "ok"

    memory = ShortTermMemory(window=10, summarize_interval=2, summarizer=flaky)
    memory.add(1, msg(1))
    memory.add(1, msg(2)).result(5)
    assert memory.snapshot(1).summary == ""
    memory.add(1, msg(3)).result(5)  # the failed batch is summarized with the next one
    assert calls == [2, 3] and memory.snapshot(1).summary == "ok"


def test_clear_forgets_window_and_summary():
    memory = ShortTermMemory(window=5, summarize_interval=1, summarizer=lambda p, b: "s")
    memory.add(1, msg(1)).result(5)
    memory.clear(1)
    snap = memory.snapshot(1)
    assert snap.messages == () and snap.summary == ""
