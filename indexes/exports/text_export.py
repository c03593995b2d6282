"""DiscordChatExporter plain text: a `====` header, then `[date] author` blocks.

A block is the header line (` (pinned)` at its end for pinned messages), the content, then
optional `{Attachments}`, `{Embed}`, `{Stickers}` and `{Reactions}` sections; the file ends with
`Exported N message(s)`. A file without that footer is treated as truncated. Plain text carries
no ids: member and message ids are derived from names, time and content.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from indexes.exports.common import (
    ExportReader, Item, MessageProblem, decoded_lines, file_name_of, synthetic_message_id, synthetic_user_id,
)  # fmt: skip
from indexes.records import StoredMessage

RULE = re.compile(r"^={20,}\s*$")
HEADER = re.compile(r"^\[(?P<date>[^\]]{6,40})\] (?P<author>.+?)(?P<pinned> \(pinned\))?\s*$")
SECTION = re.compile(r"^\{(Attachments|Embed|Stickers|Reactions)\}\s*$")
FOOTER = re.compile(r"^Exported ([\d,.\s\u00a0\u202f]+) message\(s\)\s*$")
REACTION = re.compile(r"(\S+)(?: \((\d+)\))?")


@dataclass
class _Block:
    line: int
    date: str
    author: str
    pinned: bool
    content: list[str] = field(default_factory=list)
    sections: dict[str, list[str]] = field(default_factory=dict)


class TextExport(ExportReader):
    format = "txt"

    def __iter__(self) -> Iterator[Item]:
        lines = decoded_lines(self)
        self._read_header(lines)
        block: _Block | None = None
        section = ""
        footer_seen = False
        number = self._header_lines
        for number, raw in enumerate(lines, start=self._header_lines + 1):
            line = raw.rstrip("\r\n")
            header = HEADER.match(line)
            if header and self._is_date(header.group("date")):
                if block:
                    yield from self._finish(block)
                block, section = _Block(number, header.group("date"), header.group("author"), bool(header.group("pinned"))), ""
                continue
            if RULE.match(line):
                footer = FOOTER.match(next(lines, "").strip())
                if footer:
                    footer_seen = True
                    digits = re.sub(r"\D", "", footer.group(1))
                    self.info.declared_count = int(digits) if digits else None
                    break
                continue
            if block is None:
                if line.strip():
                    raise self.error(f"line {number}", "text before the first message header; not a plain-text export?")
                continue
            marker = SECTION.match(line)
            if marker:
                section = marker.group(1)
                block.sections.setdefault(section, [])
            elif section:
                block.sections[section].append(line)
            else:
                block.content.append(line)
        if not footer_seen:
            raise self.error(f"line {number}", "no 'Exported N message(s)' footer: the export is truncated")
        if block:
            yield from self._finish(block)

    def _read_header(self, lines: Iterator[str]) -> None:
        first = next(lines, "")
        if not RULE.match(first):
            raise self.error("line 1", "not a DiscordChatExporter plain-text export (no ==== header)")
        count = 1
        for raw in lines:
            count += 1
            line = raw.strip()
            if RULE.match(line):
                self._header_lines = count
                return
            key, _, value = line.partition(": ")
            if key == "Guild":
                self.info.guild_name = value
            elif key == "Channel":
                self.info.channel_name = value.rsplit(" / ", 1)[-1]
        raise self.error(f"line {count}", "the header never ends (truncated export?)")

    def _is_date(self, text: str) -> bool:
        try:
            self.parse_date(text)
        except MessageProblem:
            return False
        return True

    def _finish(self, block: _Block) -> Iterator[Item]:
        where = f"line {block.line}"
        try:
            yield where, self._message(block)
        except MessageProblem as exc:
            yield where, exc

    def _message(self, block: _Block) -> StoredMessage:
        timestamp = self.parse_date(block.date)
        content = "\n".join(block.content).strip("\n")
        author_id = synthetic_user_id(block.author)
        reactions: dict[str, int] = {}
        for line in block.sections.get("Reactions", []):
            for name, count in REACTION.findall(line):
                reactions[name] = reactions.get(name, 0) + int(count or 1)
        attachments = [file_name_of(u) for u in block.sections.get("Attachments", []) if u.strip()]
        return StoredMessage(
            id=synthetic_message_id(timestamp, author_id, content),
            channel_id=self.info.channel_id or 0,
            author_id=author_id,
            author_name=block.author,
            timestamp=timestamp,
            content=content,
            is_pinned=block.pinned,
            reactions=reactions,
            attachments=attachments,
        )


def looks_like(head: bytes) -> bool:
    return bool(RULE.match(head.lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0].decode("ascii", "replace")))
