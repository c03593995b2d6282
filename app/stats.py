"""What the bot counts while it runs (`!stats`): messages seen, replies, fallbacks, latencies, tokens."""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field


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

    def percentile(self, q: float, values: collections.deque | None = None) -> float:
        values = self.latencies if values is None else values
        if not values:
            return 0.0
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.generate_seconds if self.generate_seconds else 0.0
