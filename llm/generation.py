"""The generation service: one worker thread owns the model; everything that generates goes through it.

- Replies go first. Background work (rolling summaries) runs only once no reply has been waiting or
  generating for `background_idle_s` (members often ask again right away), and a reply that arrives
  preempts it at the engine's next token or prefill batch; the preempted work goes back in the queue.
- Background work is coalesced by key: asking again for a summary of a channel that already has one
  waiting does not queue a second one (the waiting one reads the newest messages when it runs).
- One cancellation mechanism: `Job.cancel()`, a reader leaving the stream, or the job's deadline
  passing all make the engine stop at its next token (see `llm.engines`). No abandoned generation
  keeps the model: the worker takes the next job only once the engine has returned.
- Readers consume `Job.pieces()` (or `apieces()` on an event loop) as text is made.
- `wait_for_replies()` lets other work that competes for the cores (live indexing) hold off while
  a reply is waiting or generating.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from llm.engines.base import GenerationStats

logger = logging.getLogger(__name__)

REPLY_SLOT, BACKGROUND_SLOT = 0, 1
BACKGROUND_IDLE_SECONDS = 2.0  # background work starts only after the model had no reply for this long
_DONE = object()


class GenerationTimeout(Exception):
    """The generation took longer than its deadline and was stopped."""


class ServiceClosed(RuntimeError):
    """The generation service has been closed."""


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate: a full prompt (chat template applied), how long, and where to stop."""

    prompt: str
    max_new_tokens: int | None = None
    temperature: float | None = None
    stop: tuple[str, ...] = ()
    slot: int = REPLY_SLOT


class BackgroundTask(Protocol):
    """Work generated only while no reply waits: built when it runs, told how it ended."""

    def prepare(self) -> GenerationRequest | None:
        """The request to run now, or None when there is nothing left to do."""

    def finish(self, text: str) -> None:
        """The generation completed."""

    def abort(self, reason: str) -> None:
        """It was preempted or failed: give back what `prepare` took, to be prepared again later."""


@dataclass
class Job:
    """One reply generation: its text as it is made, its statistics, and how to stop it."""

    request: GenerationRequest
    deadline: float  # time.monotonic() after which the generation is stopped
    callbacks: Any = None
    stats: GenerationStats = field(default_factory=GenerationStats)
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    first_piece: float | None = None
    finished: float | None = None
    _queue: queue.SimpleQueue = field(default_factory=queue.SimpleQueue, repr=False)
    _cancelled: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _wake: Callable[[], None] | None = field(default=None, repr=False)  # an event loop's reader waits
    _wake_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def cancel(self) -> None:
        """Stop the generation at the engine's next token (or before it starts)."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def should_stop(self) -> bool:
        return self._cancelled.is_set() or time.monotonic() >= self.deadline

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker is done with this job (the model is free of it)."""
        return self._done.wait(timeout)

    def _put(self, item) -> None:
        """Hand a piece, _DONE or an error to the reader (the worker's side)."""
        self._queue.put(item)
        with self._wake_lock:
            wake = self._wake
        if wake is not None:
            wake()

    def _take(self):
        """The next piece, _DONE, or the engine's error; GenerationTimeout once the deadline has passed."""
        try:
            return self._queue.get(timeout=max(self.deadline - time.monotonic(), 0.0))
        except queue.Empty:
            raise GenerationTimeout(f"no answer within {self.deadline - self.submitted:.0f}s") from None

    def _check_end(self) -> None:
        if self.stats.finish == "cancelled" and not self._cancelled.is_set():
            raise GenerationTimeout(f"no answer within {self.deadline - self.submitted:.0f}s")

    def pieces(self) -> Iterator[str]:
        """The generated text piece by piece; GenerationTimeout at the deadline. Leaving early cancels."""
        try:
            while (item := self._take()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
            self._check_end()
        finally:
            self.cancel()  # a no-op once finished; stops the engine if the reader left early

    async def apieces(self) -> AsyncIterator[str]:
        """`pieces()` for an event loop: the worker wakes the loop when it hands over a piece, so
        reading takes no thread (threads in the loop's default executor may all be busy waiting
        for replies to finish: live indexing does that)."""
        loop = asyncio.get_running_loop()
        arrived = asyncio.Event()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(arrived.set)
            except RuntimeError:  # the loop is closed: nobody reads any more
                pass

        with self._wake_lock:
            self._wake = wake
        try:
            while True:
                arrived.clear()  # cleared before looking, so a piece put after the look wakes us
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    left = self.deadline - time.monotonic()
                    if left <= 0:
                        raise GenerationTimeout(f"no answer within {self.deadline - self.submitted:.0f}s") from None
                    try:
                        await asyncio.wait_for(arrived.wait(), left)
                    except TimeoutError:
                        pass
                    continue
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
            self._check_end()
        finally:
            with self._wake_lock:
                self._wake = None
            self.cancel()

    @property
    def first_piece_seconds(self) -> float | None:
        return None if self.first_piece is None else self.first_piece - self.submitted

    @property
    def generate_seconds(self) -> float:
        """Time the model spent on this job."""
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started


class GenerationService:
    """Owns the LLM: one worker thread runs reply jobs first, background tasks when idle."""

    def __init__(
        self,
        llm,
        *,
        timeout_s: float = 30.0,
        background_idle_s: float = BACKGROUND_IDLE_SECONDS,
        name: str = "generation",
    ) -> None:
        self.llm = llm
        self.timeout_s = timeout_s
        self.background_idle_s = background_idle_s
        self._last_reply = float("-inf")
        self._replies: deque[Job] = deque()
        self._background: deque[tuple[Hashable, BackgroundTask]] = deque()
        self._condition = threading.Condition()
        self._current: Job | None = None
        self._busy = False  # the worker holds a job or a background task
        self._closed = False
        self._worker = threading.Thread(target=self._run, name=name, daemon=True)
        self._worker.start()

    # --- submitting ------------------------------------------------------------------------------

    def reply(self, request: GenerationRequest, timeout_s: float | None = None, callbacks: Any = None) -> Job:
        """Queue a reply generation ahead of any background work; read it with `job.pieces()`."""
        job = Job(request, deadline=time.monotonic() + (timeout_s or self.timeout_s), callbacks=callbacks)
        with self._condition:
            if self._closed:
                raise ServiceClosed("the generation service is closed")
            self._replies.append(job)
            self._condition.notify_all()
        return job

    def background(self, key: Hashable, task: BackgroundTask) -> bool:
        """Queue background work unless work with the same key is already waiting; True if queued."""
        with self._condition:
            if self._closed or any(k == key for k, _ in self._background):
                return False
            self._background.append((key, task))
            self._condition.notify_all()
            return True

    # --- state -----------------------------------------------------------------------------------

    def replies_pending(self) -> bool:
        """True while a reply is waiting for the model or generating."""
        with self._condition:
            return bool(self._replies) or self._current is not None

    def wait_for_replies(self, timeout: float | None = None) -> bool:
        """Block while a reply is waiting or generating; False if still busy after `timeout`."""
        with self._condition:
            return self._condition.wait_for(lambda: not self._replies and self._current is None, timeout)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing at all is queued or running (tests, shutdown)."""
        with self._condition:
            return self._condition.wait_for(
                lambda: not self._replies and not self._background and not self._busy, timeout
            )

    @property
    def background_waiting(self) -> int:
        with self._condition:
            return len(self._background)

    @property
    def running(self) -> bool:
        """Taking work, its worker alive (for health checks)."""
        return not self._closed and self._worker.is_alive()

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking work, cancel what runs, and end the worker."""
        with self._condition:
            self._closed = True
            waiting, self._replies = list(self._replies), deque()
            self._background.clear()
            current = self._current
            self._condition.notify_all()
        for job in [*waiting, *([current] if current else [])]:
            job.cancel()
        for job in waiting:
            job._put(ServiceClosed("the generation service is closed"))
            job._done.set()
        self._worker.join(timeout)

    # --- the worker ------------------------------------------------------------------------------

    def _next(self) -> Job | tuple[Hashable, BackgroundTask] | None:
        with self._condition:
            while not self._closed:
                if self._replies:
                    self._busy = True
                    self._current = self._replies.popleft()
                    return self._current
                quiet_for = self._last_reply + self.background_idle_s - time.monotonic()
                if self._background and quiet_for <= 0:
                    self._busy = True
                    return self._background.popleft()
                self._condition.wait(min(quiet_for, 60.0) if self._background else None)
            return None

    def _idle(self) -> None:
        with self._condition:
            if self._current is not None:
                self._last_reply = time.monotonic()
            self._current = None
            self._busy = False
            self._condition.notify_all()

    def _run(self) -> None:
        while (work := self._next()) is not None:
            try:
                if isinstance(work, Job):
                    self._run_reply(work)
                else:
                    self._run_background(*work)
            except Exception:  # the worker never dies: the job already got its error
                logger.exception("generation worker error")
            finally:
                self._idle()

    def _generate(
        self, request: GenerationRequest, should_stop: Callable[[], bool], stats: GenerationStats, callbacks: Any = None
    ) -> Iterator[str]:
        config = {"callbacks": callbacks} if callbacks is not None else None
        stream = self.llm.stream(
            request.prompt,
            config,
            stop=list(request.stop) or None,
            max_new_tokens=request.max_new_tokens,
            temperature=request.temperature,
            slot=request.slot,
            should_stop=should_stop,
            stats=stats,
        )
        try:
            for piece in stream:
                if isinstance(piece, str) and piece:
                    yield piece
                if should_stop():
                    stats.finish = "cancelled"
                    return
        finally:
            stream.close()  # engines stop generating when their stream is closed

    def _run_reply(self, job: Job) -> None:
        job.started = time.monotonic()
        try:
            if not job.should_stop():
                for piece in self._generate(job.request, job.should_stop, job.stats, job.callbacks):
                    if job.first_piece is None:
                        job.first_piece = time.monotonic()
                    job._put(piece)
            if job.should_stop():
                job.stats.finish = "cancelled"
        except Exception as exc:
            job._put(exc)
        finally:
            job.finished = time.monotonic()
            job._put(_DONE)
            job._done.set()

    def _run_background(self, key: Hashable, task: BackgroundTask) -> None:
        try:
            request = task.prepare()
        except Exception:
            logger.exception("background task %s could not be prepared", key)
            return
        if request is None:
            return
        preempted = lambda: self._closed or bool(self._replies)  # noqa: E731  (read without the lock: a hint)
        stats = GenerationStats()
        try:
            text = "".join(self._generate(request, preempted, stats))
        except Exception as exc:
            logger.warning("background task %s failed: %s", key, exc)
            task.abort(f"failed: {exc}")
            return
        if stats.finish == "cancelled":
            task.abort("preempted by a reply")
            self._requeue(key, task)
            return
        task.finish(text)

    def _requeue(self, key: Hashable, task: BackgroundTask) -> None:
        with self._condition:
            if not self._closed and not any(k == key for k, _ in self._background):
                self._background.append((key, task))
                self._condition.notify_all()
