"""The generation service: one owner of the model, replies first, coalesced background work, real cancellation."""

import pytest

from fakes.llm import ScriptedLLM
from fakes.polling import wait_until
from llm.generation import BACKGROUND_SLOT, GenerationRequest, GenerationService, GenerationTimeout, ServiceClosed


class Task:
    """A background task that records what happened to it."""

    def __init__(self, name: str, log: list, requests: int = 1) -> None:
        self.name, self.log, self.left = name, log, requests

    def prepare(self):
        if self.left <= 0:
            return None
        self.log.append(("prepare", self.name))
        return GenerationRequest(f"summarize {self.name}", slot=BACKGROUND_SLOT)

    def finish(self, text: str) -> None:
        self.left -= 1
        self.log.append(("finish", self.name, text))

    def abort(self, reason: str) -> None:
        self.log.append(("abort", self.name, reason))


@pytest.fixture
def services():
    made = []

    def make(llm, **kwargs):
        made.append(GenerationService(llm, **kwargs))
        return made[-1]

    yield make
    for service in made:
        service.close()


def test_a_reply_streams_its_pieces_and_statistics(services):
    service = services(ScriptedLLM(responses=["mrrp, hello there traveler"]))
    job = service.reply(GenerationRequest("prompt"))
    assert "".join(job.pieces()) == "mrrp, hello there traveler"
    assert job.wait(5) and job.stats.generated_tokens == 4 and job.first_piece_seconds is not None


def test_replies_go_before_waiting_background_work(services):
    log = []
    llm = ScriptedLLM(responses=["first reply", "second reply", "a summary"], delay=0.3)
    service = services(llm, background_idle_s=0)
    blocker = service.reply(GenerationRequest("p0"))  # occupies the worker while the rest is queued
    assert wait_until(lambda: llm.running)
    service.background("summary", Task("channel", log))
    second = service.reply(GenerationRequest("p1"))
    assert "".join(blocker.pieces()) == "first reply" and "".join(second.pieces()) == "second reply"
    assert wait_until(lambda: any(e[0] == "finish" for e in log))
    assert llm.prompts == ["p0", "p1", "summarize channel"]


def test_background_work_is_coalesced_by_key(services):
    log = []
    llm = ScriptedLLM(responses=["reply", "summary"], delay=0.2)
    service = services(llm, background_idle_s=0)
    job = service.reply(GenerationRequest("busy"))
    assert service.background(("summary", 1), Task("a", log))
    assert not service.background(("summary", 1), Task("b", log))  # one is already waiting for this channel
    assert service.background(("summary", 2), Task("c", log))
    "".join(job.pieces())
    assert service.wait_idle(10)
    assert [e[1] for e in log if e[0] == "finish"] == ["a", "c"]


def test_background_work_waits_until_the_model_had_no_reply_for_a_while(services):
    log = []
    llm = ScriptedLLM(responses=["reply", "summary"])
    service = services(llm, background_idle_s=0.5)
    "".join(service.reply(GenerationRequest("reply")).pieces())
    service.background("summary", Task("a", log))
    follow_up = service.reply(GenerationRequest("follow-up"))  # a member asks again right away
    "".join(follow_up.pieces())
    assert wait_until(lambda: log)
    assert llm.prompts[:2] == ["reply", "follow-up"]  # the summary did not slip in between


def test_a_reply_preempts_running_background_work_which_runs_again_later(services):
    log = []
    llm = ScriptedLLM(responses=["a very long summary " * 20, "the reply", "a short summary"], piece_delay=0.02)
    service = services(llm, background_idle_s=0)
    task = Task("a", log)
    service.background("summary", task)
    assert wait_until(lambda: llm.pieces >= 3)  # the summary is generating
    reply = service.reply(GenerationRequest("reply"))
    assert "".join(reply.pieces()) == "the reply"
    assert wait_until(lambda: any(e[0] == "finish" for e in log))
    assert ("abort", "a", "preempted by a reply") in log and log[-1] == ("finish", "a", "a short summary")
    assert llm.stopped_early == 1 and llm.most_running == 1  # stopped at once; never two generations at a time


def test_cancel_stops_the_engine_before_the_next_job_starts(services):
    llm = ScriptedLLM(responses=["word " * 500, "next"], piece_delay=0.01)
    service = services(llm)
    job = service.reply(GenerationRequest("long"))
    pieces = job.pieces()
    next(pieces)
    job.cancel()
    following = service.reply(GenerationRequest("next"))
    assert "".join(following.pieces()) == "next"
    assert llm.stopped_early == 1 and llm.pieces < 100 and llm.most_running == 1


def test_leaving_the_stream_early_cancels_the_generation(services):
    llm = ScriptedLLM(responses=["word " * 500], piece_delay=0.01)
    service = services(llm)
    job = service.reply(GenerationRequest("long"))
    for index, _ in enumerate(job.pieces()):
        if index == 3:
            break
    assert job.wait(5) and job.cancelled and llm.stopped_early == 1 and llm.pieces < 100


def test_the_deadline_raises_a_timeout_and_stops_the_engine(services):
    llm = ScriptedLLM(responses=["slow " * 500], piece_delay=0.02)
    service = services(llm, timeout_s=0.2)
    job = service.reply(GenerationRequest("slow"))
    with pytest.raises(GenerationTimeout):
        "".join(job.pieces())
    assert job.wait(5) and llm.stopped_early == 1 and llm.running == 0


def test_engine_errors_reach_the_reader(services):
    llm = ScriptedLLM(responses=["back again"], error="CUDA out of memory")
    service = services(llm)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        "".join(service.reply(GenerationRequest("x")).pieces())
    llm.error = ""
    assert "".join(service.reply(GenerationRequest("y")).pieces()) == "back again"  # the worker lives on


def test_wait_for_replies_blocks_while_a_reply_is_generating(services):
    llm = ScriptedLLM(responses=["word " * 30], piece_delay=0.02)
    service = services(llm)
    job = service.reply(GenerationRequest("x"))
    assert not service.wait_for_replies(timeout=0.05)
    "".join(job.pieces())
    assert service.wait_for_replies(timeout=5)


def test_close_cancels_what_waits_and_what_runs(services):
    llm = ScriptedLLM(responses=["word " * 500], piece_delay=0.01)
    service = services(llm)
    running = service.reply(GenerationRequest("a"))
    waiting = service.reply(GenerationRequest("b"))
    assert wait_until(lambda: llm.pieces > 0)
    service.close()
    with pytest.raises(ServiceClosed):
        "".join(waiting.pieces())
    assert running.wait(5) and llm.stopped_early == 1


def test_an_event_loop_reads_a_reply_while_its_executor_threads_are_all_busy(services):
    """Live indexing waits in the loop's default executor for as long as replies keep coming; reading
    a reply must not need one of those threads, or it starves until its deadline."""
    import asyncio
    import threading
    from concurrent.futures import ThreadPoolExecutor

    llm = ScriptedLLM(responses=["mrrp, the tavern remembers"], delay=0.05)
    service = services(llm, timeout_s=2)
    read_done = threading.Event()

    async def read() -> str:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=2))
        busy = [asyncio.to_thread(read_done.wait, 10) for _ in range(2)]  # every thread taken meanwhile
        busy = [asyncio.ensure_future(b) for b in busy]
        await asyncio.sleep(0.05)
        try:
            return "".join([piece async for piece in service.reply(GenerationRequest("x")).apieces()])
        finally:
            read_done.set()
            await asyncio.gather(*busy)

    assert asyncio.run(read()) == "mrrp, the tavern remembers"


def test_an_event_loop_reader_gets_a_timeout_at_the_deadline(services):
    import asyncio

    llm = ScriptedLLM(responses=["slow " * 500], piece_delay=0.02)
    service = services(llm, timeout_s=0.2)

    async def read() -> None:
        async for _ in service.reply(GenerationRequest("slow")).apieces():
            pass

    with pytest.raises(GenerationTimeout):
        asyncio.run(read())
    assert wait_until(lambda: llm.stopped_early == 1 and llm.running == 0)
