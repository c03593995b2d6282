"""Opening the lore index, importing exports, and the first-run build from the sample server.

`indexes/` never reads the application's settings: it is told where the index lives (`IndexPlace`)
and how to import (`ImportOptions`, `Filters`) in plain values, which `app/storage.py` makes from
the settings, so the store and the index can be used and tested on their own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from indexes.disk import disk_errors
from indexes.filters import Filters
from indexes.importer import ImportReport, import_exports
from indexes.store import MessageStore
from indexes.vector import (
    DEFAULT_EMBEDDER,
    LoreIndex,
    build_embedding,
    chroma_client,
    embedder_identity,
    embedder_source,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexPlace:
    """Where the lore index lives and how it is made: embedded Chroma in `folder`, or a Chroma server at host:port."""

    folder: Path  # embedded Chroma's folder (unused with a server)
    host: str | None  # a Chroma server; None: embedded Chroma in `folder`
    port: int
    collection: str  # the collections' base name (each build is `<collection>-<n>-<digest>`)
    min_chars: int  # shorter messages stay in the store but are not indexed
    embed_dtype: str  # the embedding model's dtype: auto | float32 | bfloat16 | float16
    embed_model: str = DEFAULT_EMBEDDER  # the embedding model: the packaged default, a folder or a cached hub id


@dataclass(frozen=True)
class ImportOptions:
    """How exports are imported: which messages are kept, from which channel, which words mark lore, how dates read."""

    filters: Filters = field(default_factory=Filters)  # the members who opted out are added from the store
    channel_id: int | None = None  # None: any channel
    keywords: tuple[str, ...] = ()  # lore keywords
    dayfirst: bool = False  # locale dates in CSV/TXT/HTML exports are day-first (24/11/2020)


def open_index(place: IndexPlace, store: MessageStore, embed_model=None) -> LoreIndex:
    """The lore index over embedded Chroma in `place.folder`, or the Chroma server at `place.host:place.port`.

    Made with `place.embed_model`, loaded when first needed, whose identity the index checks its collection
    against (`LoreIndex.embedder`, read when first needed too); an `embed_model` given here is not checked.
    """
    location = f"the Chroma server {place.host}:{place.port}" if place.host else place.folder
    with disk_errors(location):
        client = chroma_client(place.folder, place.host, place.port)
    embedder = None if embed_model else (lambda: embedder_identity(place.embed_model))  # when first needed
    embed_model = embed_model or (lambda: build_embedding(embedder_source(place.embed_model), dtype=place.embed_dtype))
    folder = None if place.host else place.folder
    return LoreIndex(store, client, embed_model, place.collection, place.min_chars, str(location), folder, embedder)


def import_path(
    options: ImportOptions,
    store: MessageStore,
    path: Path,
    any_channel: bool = False,
    progress: bool | None = None,
    licensed: bool = False,
) -> ImportReport:
    """Import an export file or folder with these options, leaving out the members who opted out (the store's)."""
    return import_exports(
        store,
        path,
        replace(options.filters, opted_out=options.filters.opted_out | store.opted_out()),
        channel_id=None if any_channel else options.channel_id,
        keywords=options.keywords,
        dayfirst=options.dayfirst,
        progress=progress,
        licensed=licensed,
    )


def ensure_index(store: MessageStore, index: LoreIndex, sample: Path | None) -> bool:
    """Build the index on first run (from the sample export if the store is empty); True if built.

    An index made by an earlier version, which kept members' words in Chroma, is rebuilt without them; one made
    by another embedding model than EMBED_MODEL (`LoreIndex.embedder_changed`) is rebuilt with it.
    """
    if index.embedder_changed():
        logger.warning("the lore index was made with another embedding model than EMBED_MODEL: rebuilding it")
        index.rebuild()
        return True
    if index.active_name and not index.holds_words() and (index.size() > 0 or store.count() == 0):
        return False
    legacy = bool(index.active_name) and index.holds_words()
    if legacy:
        logger.warning("the lore index keeps members' words (an earlier version made it): rebuilding it without them")
    if store.count() == 0:
        if sample is None or not sample.is_file():
            logger.info("no messages and no sample export: the lore index starts empty and fills as members talk")
        else:
            logger.info("first run: importing the sample server from %s", sample)
            import_exports(store, sample, Filters(opted_out=frozenset(store.opted_out())), progress=False)
    index.rebuild()
    if legacy:
        index.compact()
    return True
