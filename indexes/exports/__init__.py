"""Readers for the four DiscordChatExporter formats: JSON, CSV, plain text and HTML.

`open_export(path)` looks at the file's first bytes (not only its extension) and returns the
matching reader; iterating a reader streams `(position, message or problem)` pairs.
"""

from __future__ import annotations

from pathlib import Path

from indexes.exports import csv_export, html_export, json_export, text_export
from indexes.exports.common import ExportError, ExportInfo, ExportReader, MessageProblem

SUFFIXES = (".json", ".csv", ".txt", ".html", ".htm")
_READERS = (
    (json_export.looks_like, json_export.JsonExport),
    (html_export.looks_like, html_export.HtmlExport),
    (text_export.looks_like, text_export.TextExport),
    (csv_export.looks_like, csv_export.CsvExport),
)


def open_export(path: Path, dayfirst: bool = False) -> ExportReader:
    """The reader for an export file, chosen by content; ExportError if it is none of the four."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise ExportError(path, "", f"cannot read: {exc.strerror or exc}") from None
    if not head.strip():
        raise ExportError(path, "", "the file is empty")
    for looks_like, reader in _READERS:
        if looks_like(head):
            return reader(path, dayfirst=dayfirst)
    shown = head[:40].decode("utf-8", "replace").splitlines()[0] if head[:40].strip() else repr(head[:16])
    raise ExportError(
        path,
        "byte 0",
        f"not a DiscordChatExporter export (expected JSON, CSV, plain text or HTML; starts with {shown!r})",
    )


def export_files(path: Path) -> list[Path]:
    """An export file, or every export file in a folder (recursively, oldest name first)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ExportError(path, "", "no such file or folder")
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.suffix.lower() in SUFFIXES
        and not any(part.startswith(".") for part in p.parts)
        and not any(part.endswith("_Files") for part in p.parent.parts)
    )
    if not files:
        raise ExportError(path, "", f"no export files ({', '.join(SUFFIXES)}) in this folder")
    return files


__all__ = ["ExportError", "ExportInfo", "ExportReader", "MessageProblem", "export_files", "open_export"]
