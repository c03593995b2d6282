"""The history commands: `index rebuild|update|check|stats`, `backfill` and `forget`.

Summaries go to stdout, logs and progress bars to stderr. Exit status: 0 done, 1 some export
files failed (the others were imported), 2 nothing could be done (the error says why).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from tqdm import tqdm

from app.storage import import_options, index_place
from config.settings import Settings
from indexes.build import import_path, open_index
from indexes.lore import LORE_THRESHOLD
from indexes.members import prune, staleness
from indexes.store import MessageStore

logger = logging.getLogger(__name__)


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def _index_with_progress(total: int, description: str, run) -> int:
    with tqdm(total=total, unit="msg", desc=description, leave=False) as bar:
        return run(lambda done: bar.update(done - bar.n))


def rebuild(settings: Settings, source: Path | None, any_channel: bool, licensed: bool = False) -> int:
    store = MessageStore(settings.store_path)
    try:
        status = 0
        if source is not None:
            report = import_path(import_options(settings), store, source, any_channel, licensed=licensed)
            print(report.summary())
            _prune(settings, store)
            status = 1 if report.failed else 0
        index = open_index(index_place(settings), store)
        count = _index_with_progress(store.count(), "indexing", lambda p: index.rebuild(progress=p))
        print(f"index       {count:,} messages in collection {index.active_name} (rebuilt, swapped in)")
        return status
    finally:
        store.close()


def update(settings: Settings, source: Path, any_channel: bool, licensed: bool = False) -> int:
    store = MessageStore(settings.store_path)
    try:
        index = open_index(index_place(settings), store)
        if index.active_name and index.holds_words():  # made by an earlier version: rebuilt without them
            print(f"index       {index.rebuild():,} messages indexed again, without their words in Chroma")
            index.compact()
        elif index.embedder_changed():  # another embedding model's vectors: a search with EMBED_MODEL finds noise
            print(f"index       {index.rebuild():,} messages indexed again, with EMBED_MODEL's embedding model")
        before = index.sync() if index.active_name else 0  # work a crash left pending, first
        if before:
            print(f"index       {before:,} messages left pending by an earlier run, indexed")
        report = import_path(import_options(settings), store, source, any_channel, licensed=licensed)
        print(report.summary())
        _prune(settings, store)
        if index.active_name is None:
            count = _index_with_progress(store.count(), "indexing", lambda p: index.rebuild(progress=p))
            print(f"index       {count:,} messages (no index yet: built it)")
        else:
            count = index.sync()
            print(f"index       {count:,} messages added, refreshed or removed in {index.active_name}")
        return 1 if report.failed else 0
    finally:
        store.close()


def _prune(settings: Settings, store: MessageStore) -> None:
    pruned = prune(store, settings.RETENTION_DAYS, settings.DATA_DIR)
    if pruned:
        print(
            f"retention   {len(pruned):,} messages older than {settings.RETENTION_DAYS} days deleted (RETENTION_DAYS)"
        )


def check(settings: Settings, repair: bool, leftovers: bool) -> int:
    """Compare the store and the index; with `repair`, mend what differs. Exit 1 if they disagreed."""
    store = MessageStore(settings.store_path)
    try:
        index = open_index(index_place(settings), store)
        found = index.repair(leftovers=leftovers) if repair else index.check()
        print(found.summary())
        if repair:
            after = index.check()
            print(
                f"repaired    {'the store and the index agree now' if after.agrees else 'NOT all: ' + after.summary()}"
            )
            return 0 if after.agrees else 1
        if not found.agrees:
            print("run `python -m app index check --repair` to mend it (no rebuild needed)")
        return 0 if found.agrees else 1
    finally:
        store.close()


def stats(settings: Settings) -> int:
    store = MessageStore(settings.store_path)
    try:
        total = store.count()
        print(
            f"store       {settings.store_path}: {total:,} messages "
            f"({_megabytes(settings.store_path.stat().st_size)}), "
            f"{store.lore_count(LORE_THRESHOLD):,} lore, {store.opted_out_members()} members opted out"
        )
        index = open_index(index_place(settings), store)
        where = (
            f"Chroma server {settings.CHROMA_HOST}:{settings.CHROMA_PORT}"
            if settings.CHROMA_HOST
            else f"{settings.chroma_path}, {_megabytes(_folder_bytes(settings.chroma_path))} on disk"
        )
        print(
            f"index       {index.active_name or 'not built'}: {index.size():,} messages, "
            f"{index.pending():,} pending ({where})"
        )
        consent = store.consent()
        print(
            f"training    {sum(given for given, _ in consent.values())} members consented, "
            f"{sum(not given for given, _ in consent.values())} withdrew (TRAINING_CONSENT={settings.TRAINING_CONSENT})"
        )
        stale = staleness(store, settings.ADAPTER_PATH)
        if stale:
            print(f"adapter     stale: {stale}")
        print("authors")
        for name, author_id, count in store.author_counts(15):
            print(f"  {name[:24]:<24} {author_id:>20}  {count:>8,}")
        print("months")
        months = store.month_counts()
        peak = max((n for _, n in months), default=1)
        for month, count in months:
            print(f"  {month}  {count:>8,}  {'#' * max(1, round(30 * count / peak))}")
        return 0
    finally:
        store.close()


def backfill(settings: Settings) -> int:
    from app.backfill import backfill as run_backfill

    store = MessageStore(settings.store_path)
    try:
        index = open_index(index_place(settings), store)
        with tqdm(unit="msg", desc="backfill", leave=False) as bar:
            report = asyncio.run(run_backfill(settings, store, index, progress=lambda n: bar.update(n - bar.n)))
        print(report.summary())
        return 0
    finally:
        store.close()


def forget(settings: Settings, user_id: int, names: list[str] = (), yes: bool = False) -> int:
    """Forget a member by Discord id; names (exports without ids) are shown first and need --yes."""
    from indexes.forget import forget_member, preview

    store = MessageStore(settings.store_path)
    try:
        if names and not yes:
            print(preview(store, user_id, names))
            print("nothing was removed yet: names can be shared, so check the list above, then run again with --yes")
            return 0
        index = open_index(index_place(settings), store)
        print(forget_member(store, index, settings.DATA_DIR, user_id, names).summary())
        return 0
    finally:
        store.close()
