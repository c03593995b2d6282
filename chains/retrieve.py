"""Lore lookup for a reply: the weighted LlamaIndex retriever plus the card's lorebook entries.

A missing or unreadable index never stops a reply: it is logged and the reply is made without lore.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from chains.types import ChatMessage, LoreItem
from prompts import LorebookEntry

logger = logging.getLogger(__name__)

LoreSearch = Callable[..., list[LoreItem]]  # (query, channel_id=None)


def _ids(meta: dict) -> tuple[int, ...]:
    """The stored messages a hit's words came from: itself, then the thread it answers."""
    ids = [meta.get("message_id"), *meta.get("thread_ids", ())]
    return tuple(int(i) for i in ids if str(i or "").isdigit())


def llama_index_search(retriever) -> LoreSearch:
    """Adapt a LlamaIndex retriever (e.g. indexes.vector.WeightedRetriever) to a LoreSearch.

    A search made for a channel passes it on (`for_channel`, where the retriever scopes by channel):
    a private thread's messages are found only in that thread.
    """

    def search(query: str, channel_id: int | None = None) -> list[LoreItem]:
        scoped = retriever.for_channel(channel_id) if hasattr(retriever, "for_channel") else retriever
        items = []
        for hit in scoped.retrieve(query):
            meta = hit.node.metadata
            items.append(
                LoreItem(
                    content=hit.node.get_content(),
                    author=str(meta.get("author", "")),
                    date=str(meta.get("date", "")),
                    score=float(hit.score or 0.0),
                    source="index",
                    scores=dict(meta.get("scores", {})),
                    reasons=str(meta.get("lore_reasons", "")),
                    thread=str(meta.get("replying_to", "")),
                    message_ids=_ids(meta),
                    more_ids=tuple(int(i) for i in meta.get("more_ids", ())),
                    asks=bool(meta.get("asks")),
                )
            )
        return items

    return search


def lorebook_hits(entries: Sequence[LorebookEntry], text: str) -> list[LoreItem]:
    """Lorebook entries whose keys appear in the scanned text, highest priority first."""
    hits = [e for e in entries if e.matches(text)]
    hits.sort(key=lambda e: (-e.priority, e.insertion_order))
    return [
        LoreItem(content=e.content, author="lorebook", score=1.0 + e.priority / 100, source="lorebook") for e in hits
    ]


class LoreRetrieval:
    """The retrieve stage: index search (if any) and lorebook, failures downgraded to warnings."""

    def __init__(self, search: LoreSearch | None, lorebook: Sequence[LorebookEntry] = (), scan_depth: int = 4) -> None:
        self.search = search
        self.lorebook = tuple(lorebook)
        self.scan_depth = scan_depth
        self.warning = "" if search else "no lore index: replying without lore"

    def __call__(
        self, query: str, needs_lore: bool, recent: Sequence[ChatMessage] = (), channel_id: int | None = None
    ) -> tuple[list[LoreItem], str]:
        """Return (lore items, warning or ''); `channel_id`: where the reply is made (for private threads)."""
        scanned = " ".join([m.content for m in list(recent)[-self.scan_depth :]] + [query])
        items = lorebook_hits(self.lorebook, scanned)
        if not needs_lore:
            return items, ""
        if self.search is None:
            logger.warning(self.warning)
            return items, self.warning
        try:
            return items + self.search(query, channel_id), ""
        except Exception as exc:  # an unreadable index must not cost the reply
            logger.warning("lore index unreadable, replying without lore: %s", exc)
            return items, f"lore index unreadable: {exc}"
