"""The settings `indexes/` works with, as its own plain values: each made here, in one place.

`indexes/` never reads the application's settings (nor does `llm/`: it takes `Settings.model_options()`).
Where the index lives (`IndexPlace`), how exports are imported (`ImportOptions`, `Filters`) and
DATA_DIR's lock are made here from them. Whatever opens the index or imports with the settings is in
`app/` or above it (`evals/`, `bench/`, `tests/`), so it reaches these.
"""

from __future__ import annotations

from collections.abc import Iterable

from config.settings import Settings
from indexes.build import ImportOptions, IndexPlace
from indexes.filters import Filters
from indexes.lock import DataLock, hold_data_dir


def index_place(settings: Settings) -> IndexPlace:
    """Where the lore index lives (embedded under DATA_DIR, or CHROMA_HOST:CHROMA_PORT) and how it is made."""
    return IndexPlace(
        folder=settings.chroma_path,
        host=settings.CHROMA_HOST,
        port=settings.CHROMA_PORT,
        collection=settings.CHROMA_COLLECTION,
        min_chars=settings.INDEX_MIN_CHARS,
        embed_dtype=settings.EMBED_DTYPE,
        embed_model=settings.EMBED_MODEL,
    )


def import_filters(settings: Settings, opted_out: Iterable[int] = ()) -> Filters:
    """The filters of IMPORT_SKIP_*, COMMAND_PREFIXES and IMPORT_MAX_CHARS, leaving out the members in `opted_out`."""
    return Filters(
        skip_bots=settings.IMPORT_SKIP_BOTS,
        skip_commands=settings.IMPORT_SKIP_COMMANDS,
        command_prefixes=tuple(settings.COMMAND_PREFIXES),
        skip_system=settings.IMPORT_SKIP_SYSTEM,
        skip_link_only=settings.IMPORT_SKIP_LINK_ONLY,
        max_chars=settings.IMPORT_MAX_CHARS,
        opted_out=frozenset(opted_out),
    )


def import_options(settings: Settings) -> ImportOptions:
    """How exports are imported: the filters, DISCORD_CHANNEL_ID, LORE_KEYWORDS and IMPORT_DAYFIRST."""
    return ImportOptions(
        filters=import_filters(settings),
        channel_id=settings.DISCORD_CHANNEL_ID,
        keywords=settings.LORE_KEYWORDS,
        dayfirst=settings.IMPORT_DAYFIRST,
    )


def lock_data_dir(settings: Settings, role: str) -> DataLock | None:
    """DATA_DIR's lock, held by `role` while the index is embedded (None with CHROMA_HOST); see `indexes.lock`."""
    return hold_data_dir(settings.DATA_DIR, shared_index=bool(settings.CHROMA_HOST), role=role)
