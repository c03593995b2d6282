"""DiscordChatExporter CSV: `AuthorID,Author,Date,Content,Attachments,Reactions`.

Exports before 2.16 separate fields with `;` and end rows with one; dates are locale-formatted
before 2.42.3 and ISO 8601 after. CSV carries no message ids: ids are derived from time, author
and content (see `synthetic_message_id`), so re-importing the same file changes nothing.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator

from indexes.exports.common import (
    ExportReader,
    Item,
    MessageProblem,
    as_id,
    decoded_lines,
    file_name_of,
    synthetic_message_id,
    synthetic_user_id,
)
from indexes.records import StoredMessage

REACTION = re.compile(r"\s*(.+?)\s+\((\d+)\)\s*$")
REQUIRED = ("author", "date", "content")


def parse_reactions(text: str) -> dict[str, int]:
    reactions: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = REACTION.match(part)
        name, count = (match.group(1), int(match.group(2))) if match else (part, 1)
        reactions[name] = reactions.get(name, 0) + count
    return reactions


class CsvExport(ExportReader):
    format = "csv"

    def __iter__(self) -> Iterator[Item]:
        lines = decoded_lines(self)
        header_line = next(lines, "")
        delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
        header = [h.strip().lower() for h in next(csv.reader([header_line], delimiter=delimiter), [])]
        columns = {name: i for i, name in enumerate(header) if name}
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise self.error("line 1", "not a DiscordChatExporter CSV export (no column " + ", ".join(missing) + ")")
        rows = csv.reader(lines, delimiter=delimiter, strict=True)
        first_line = 2
        try:
            for row in rows:
                where, first_line = f"line {first_line}", rows.line_num + 2
                if not any(cell.strip() for cell in row):
                    continue
                try:
                    yield where, self._message(row, columns)
                except MessageProblem as exc:
                    yield where, exc
                except (ValueError, OverflowError, TypeError, KeyError) as exc:
                    yield where, MessageProblem(f"malformed ({exc})")
        except csv.Error as exc:
            raise self.error(f"line {first_line}", f"broken CSV ({exc}); truncated export?") from None

    def _message(self, row: list[str], columns: dict[str, int]) -> StoredMessage:
        def cell(name: str) -> str:
            index = columns.get(name)
            return row[index] if index is not None and index < len(row) else ""

        if len(row) < len(REQUIRED):
            raise MessageProblem(f"only {len(row)} fields")
        author = cell("author").strip()
        if not author:
            raise MessageProblem("no author")
        timestamp = self.parse_date(cell("date"))
        content = cell("content")
        author_id_text = cell("authorid").strip()
        author_id = as_id(author_id_text, "author id") if author_id_text else synthetic_user_id(author)
        return StoredMessage(
            id=synthetic_message_id(timestamp, author_id, content),
            channel_id=self.info.channel_id or 0,
            author_id=author_id,
            author_name=author,
            timestamp=timestamp,
            content=content,
            reactions=parse_reactions(cell("reactions")),
            attachments=[file_name_of(u) for u in cell("attachments").split(",") if u.strip()],
        )


def looks_like(head: bytes) -> bool:
    first = head.lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0].lower()
    return b"author" in first and b"date" in first and b"content" in first
