"""Importing DiscordChatExporter exports into the message store, file by file, all or nothing.

Each file is streamed into a staging table and merged in one transaction only when it was read to
the end, so a truncated or malformed file changes nothing (the error names the file and the
position), and a folder goes on with its next file. A message with a value the store cannot hold
or a date that cannot be true (an id past 64 bits, a row dated 2100) is a counted problem, named
with its position and field; the rest of the file imports. Messages are filtered (see
`indexes.filters`), over-long ones are cut to IMPORT_MAX_CHARS, and lore is re-scored over the
whole store at the end. Only a full or read-only disk stops a whole import (StorageError).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from indexes.disk import StorageError
from indexes.exports import ExportError, MessageProblem, export_files, open_export
from indexes.exports.common import checked as valid
from indexes.filters import Filters
from indexes.lore import classify_store
from indexes.store import MessageStore

logger = logging.getLogger(__name__)

BATCH = 1000
WARNINGS_PER_KIND = 5


@dataclass
class FileReport:
    """What one export file gave."""

    path: Path
    format: str = ""
    read: int = 0
    new: int = 0
    updated: int = 0
    duplicates: int = 0
    skipped: Counter = field(default_factory=Counter)
    warnings: Counter = field(default_factory=Counter)
    error: str | None = None


@dataclass
class ImportReport:
    """What an import run read, kept, skipped and found, over all its files."""

    files: list[FileReport] = field(default_factory=list)
    lore: int = 0
    seconds: float = 0.0
    started_at: float = field(default_factory=time.time)

    def total(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.files)

    @property
    def skipped(self) -> Counter:
        return sum((f.skipped for f in self.files), Counter())

    @property
    def warnings(self) -> Counter:
        return sum((f.warnings for f in self.files), Counter())

    @property
    def failed(self) -> list[FileReport]:
        return [f for f in self.files if f.error]

    def summary(self) -> str:
        skipped = self.skipped
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(skipped.items())) or "none"
        warned = ", ".join(f"{k} {v:,}" for k, v in sorted(self.warnings.items()))
        read = self.total("read")
        rate = read / self.seconds if self.seconds else 0.0
        lines = [
            f"files       {len(self.files) - len(self.failed)} imported, {len(self.failed)} failed",
            f"messages    {read:,} read, {self.total('new'):,} new, {self.total('updated'):,} updated, "
            f"{self.total('duplicates'):,} duplicates",
            f"skipped     {sum(skipped.values()):,} ({reasons})",
        ]
        if warned:
            lines.append(f"warnings    {warned}")
        lines.append(f"lore        {self.lore:,} messages classified as lore")
        lines.append(f"time        {self.seconds:.1f} s, {rate:,.0f} messages/s")
        lines.extend(f"FAILED      {f.error}" for f in self.failed)
        return "\n".join(lines)


class _Warner:
    """Logs the first few warnings of each kind per file, then only counts them."""

    def __init__(self, report: FileReport) -> None:
        self.report = report

    def __call__(self, kind: str, message: str, counter: Counter) -> None:
        counter[kind] += 1
        if counter[kind] <= WARNINGS_PER_KIND:
            logger.warning("%s", message)
        elif counter[kind] == WARNINGS_PER_KIND + 1:
            logger.warning("%s: more '%s' problems; only counting them from now on", self.report.path, kind)


def import_file(
    store: MessageStore,
    path: Path,
    filters: Filters,
    channel_id: int | None = None,
    dayfirst: bool = False,
    progress: bool | None = None,
    licensed: bool = False,
) -> FileReport:
    """Import one export file; on any error the store is left exactly as it was.

    `licensed`: the admin declares they may use these messages to train the character's voice.
    """
    report = FileReport(path)
    warn = _Warner(report)
    try:
        reader = open_export(path, dayfirst=dayfirst)
        report.format = reader.format
        size = path.stat().st_size
        with (
            store.stage() as stage,
            tqdm(
                total=size,
                unit="B",
                unit_scale=True,
                desc=path.name,
                disable=not progress if progress is not None else None,
                leave=False,
            ) as bar,
        ):
            batch = []
            checked = False
            for position, item in reader:
                report.read += 1
                if not checked:
                    _check_channel(reader, channel_id)
                    checked = True
                if not isinstance(item, MessageProblem):
                    try:
                        item = valid(item)
                    except MessageProblem as problem:
                        item = problem
                if isinstance(item, MessageProblem):
                    warn("malformed", f"{path}: {position}: skipped: {item}", report.skipped)
                    continue
                if channel_id and not item.channel_id:
                    item.channel_id = channel_id
                item.discord_id, item.licensed = reader.discord_ids, licensed
                reason = filters.reason(item)
                if reason:
                    report.skipped[reason] += 1
                    continue
                if len(item.content) > filters.max_chars:
                    warn(
                        "truncated",
                        f"{path}: {position}: message of {len(item.content):,} characters cut to {filters.max_chars:,}",
                        report.warnings,
                    )
                    item.content = item.content[: filters.max_chars]
                batch.append(item)
                if len(batch) >= BATCH:
                    stage.add(batch)
                    batch = []
                    bar.update(reader.bytes_read - bar.n)
            stage.add(batch)
            bar.update(size - bar.n)
            if reader.info.declared_count is not None and reader.info.declared_count != report.read:
                warn(
                    "count",
                    f"{path}: the export says {reader.info.declared_count:,} messages, {report.read:,} were read",
                    report.warnings,
                )
            merged = stage.merge(seen=reader.discord_ids)
    except ExportError as exc:
        report.error = str(exc)
        logger.error("%s (nothing from this file was imported)", exc)
        return report
    except StorageError:
        raise
    except Exception as exc:  # a reader's bug or an unforeseen value: this file fails, the folder goes on
        report.error = f"{path}: cannot be read ({type(exc).__name__}: {exc})"
        logger.exception("%s (nothing from this file was imported)", report.error)
        return report
    report.new, report.updated = merged.new, merged.updated
    report.duplicates = merged.unchanged + (stage.added - merged.staged)
    report.skipped["opted_out"] += merged.opted_out
    if not report.skipped["opted_out"]:
        del report.skipped["opted_out"]
    logger.info(
        "%s: %s export, %d read, %d new, %d updated, %d duplicates",
        path,
        report.format,
        report.read,
        report.new,
        report.updated,
        report.duplicates,
    )
    return report


def _check_channel(reader, channel_id: int | None) -> None:
    info = reader.info
    if channel_id and info.channel_id and info.channel_id != channel_id:
        name = f" (#{info.channel_name})" if info.channel_name else ""
        raise ExportError(
            info.path,
            "header",
            f"export of channel {info.channel_id}{name}, but DISCORD_CHANNEL_ID is {channel_id}; "
            "import it with --any-channel if it belongs to this character",
        )


def import_exports(
    store: MessageStore,
    path: Path,
    filters: Filters,
    channel_id: int | None = None,
    keywords: tuple[str, ...] = (),
    dayfirst: bool = False,
    progress: bool | None = None,
    licensed: bool = False,
) -> ImportReport:
    """Import an export file or a folder of them, then re-score lore over the store."""
    report = ImportReport()
    started = time.perf_counter()
    for file in export_files(path):
        report.files.append(import_file(store, file, filters, channel_id, dayfirst, progress, licensed))
    report.lore = classify_store(store, keywords)
    report.seconds = time.perf_counter() - started
    return report
