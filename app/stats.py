"""What the bot counts while it runs (`!stats`): messages seen, replies, fallbacks, latencies, tokens.

With METRICS_PORT set, each count also goes to the Prometheus metrics (app/metrics.py).
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.metrics import Metrics


@dataclass
class BotStats:
    """What `!stats` reports: counts since start and the latency of recent replies."""

    started: float = field(default_factory=time.monotonic)
    seen: int = 0
    replies: int = 0
    fallbacks: int = 0
    busy: int = 0
    cooled_down: int = 0
    latencies: collections.deque = field(default_factory=lambda: collections.deque(maxlen=100))
    first_words: collections.deque = field(default_factory=lambda: collections.deque(maxlen=100))
    tokens: int = 0
    generate_seconds: float = 0.0
    prompt_tokens: int = 0
    reused_tokens: int = 0
    metrics: Metrics | None = field(default=None, repr=False)

    def record(
        self,
        seconds: float,
        generated_tokens: int,
        generate_seconds: float,
        ok: bool,
        first_words: float | None = None,
        prompt_tokens: int = 0,
        reused_tokens: int = 0,
    ) -> None:
        self.replies += 1
        self.fallbacks += not ok
        self.latencies.append(seconds)
        if first_words is not None:
            self.first_words.append(first_words)
        self.tokens += generated_tokens
        self.generate_seconds += generate_seconds
        self.prompt_tokens += prompt_tokens
        self.reused_tokens += reused_tokens
        if self.metrics is not None:
            self.metrics.reply(seconds, ok, first_words, generated_tokens, generate_seconds)

    def refused(self, reason: str) -> None:
        """A message asking for a reply got the busy line ("busy") or a reaction: a reply still pending ("pending"),
        the cooldown ("cooldown"), the queue still full after the member was told so ("busy_again")."""
        if reason == "busy":
            self.busy += 1
        else:
            self.cooled_down += 1
        if self.metrics is not None:
            self.metrics.refused(reason)

    def percentile(self, q: float, values: collections.deque | None = None) -> float:
        values = self.latencies if values is None else values
        if not values:
            return 0.0
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.generate_seconds if self.generate_seconds else 0.0
