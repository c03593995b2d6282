"""Lore classification: a score in [0, 1] per message and the reasons behind it.

A message is lore when it records something the community wants remembered: pinned posts,
announcements, well-reacted or substantial posts, and questions the community answered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from indexes.records import StoredMessage

LORE_THRESHOLD = 0.5
ANNOUNCEMENT = re.compile(
    r"\b(official|announc\w*|rules?|award|goes to|welcome to|in memory|what we know|meetup|"
    r"record|founded|every (monday|tuesday|wednesday|thursday|friday|saturday|sunday))\b",
    re.IGNORECASE,
)


def score_message(
    message: StoredMessage, reply_count: int = 0, keywords: Iterable[str] = ()
) -> tuple[float, list[str]]:
    """Lore score and the human-readable reasons for it."""
    score, reasons = 0.0, []
    if message.is_pinned:
        score += 0.5
        reasons.append("pinned")
    reactions = message.reaction_count
    if reactions >= 10:
        score += 0.2
        reasons.append(f"{reactions} reactions")
    elif reactions >= 5:
        score += 0.1
        reasons.append(f"{reactions} reactions")
    length = len(message.content)
    if length >= 200:
        score += 0.15
        reasons.append("long, substantial post")
    elif length >= 80:
        score += 0.05
        reasons.append("substantial post")
    if ANNOUNCEMENT.search(message.content):
        score += 0.1
        reasons.append("announcement style")
    if message.content.rstrip().endswith("?") and reply_count >= 2:
        score += 0.15
        reasons.append(f"question with {reply_count} answers")
    elif reply_count >= 3:
        score += 0.1
        reasons.append(f"{reply_count} replies")
    lowered = message.content.lower()
    hits = [k for k in keywords if k and k.lower() in lowered]
    if hits:
        score += 0.2
        reasons.append("keywords: " + ", ".join(hits))
    return min(score, 1.0), reasons


def classify(messages: list[StoredMessage], reply_counts: dict[int, int], keywords: Iterable[str] = ()) -> int:
    """Set lore_score and lore_reasons on each message; returns how many are lore."""
    keywords = list(keywords)
    lore = 0
    for message in messages:
        message.lore_score, message.lore_reasons = score_message(message, reply_counts.get(message.id, 0), keywords)
        lore += message.lore_score >= LORE_THRESHOLD
    return lore


def classify_store(store, keywords: Iterable[str] = (), batch: int = 5000) -> int:
    """Score every stored message; rows whose score or reasons change are rewritten. Returns the lore count."""
    keywords = list(keywords)
    replies = store.reply_counts()
    changed: list[tuple[float, list[str], int]] = []
    lore = 0
    for message in store.iter_messages():
        score, reasons = score_message(message, replies.get(message.id, 0), keywords)
        lore += score >= LORE_THRESHOLD
        if abs(score - message.lore_score) > 1e-9 or reasons != message.lore_reasons:
            changed.append((score, reasons, message.id))
            if len(changed) >= batch:
                store.set_lore(changed)
                changed = []
    if changed:
        store.set_lore(changed)
    return lore
