"""DiscordChatExporter plain text: a `====` header, then `[date] author` blocks.

A block is the header line (` (pinned)` at its end for pinned messages), the content, then
optional `{Attachments}`, `{Embed}`, `{Stickers}` and `{Reactions}` sections; the file ends with
`Exported N message(s)` between two `====` rules. Plain text carries no ids: member and message ids
are derived from names, time and content.

Message text can look like this structure, so only the structure decides: a header counts only
after a blank line, and the footer only as the very last lines of the file (a file without it is
truncated). A member can still type a blank line and a header-shaped line into a message; the
format cannot tell that from a real message, so when the file holds more headers than its footer
counts, the whole file is refused, naming the lines, rather than import a message in someone
else's name (export such a channel as JSON or HTML). DiscordChatExporter's notices ("Pinned a
message.", "Joined the server.") are read as the system messages they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from indexes.exports.common import (
    ExportReader,
    Item,
    MessageProblem,
    decoded_lines,
    file_name_of,
    synthetic_message_id,
    synthetic_user_id,
)
from indexes.records import StoredMessage

RULE = re.compile(r"^={20,}\s*$")
# DiscordChatExporter's plain-text stand-ins for system messages, and the message types they are.
SYSTEM_NOTICES = (
    (re.compile(r"^Pinned a message\.$"), "ChannelPinnedMessage"),
    (re.compile(r"^Joined the server\.$"), "GuildMemberJoin"),
    (re.compile(r"^Started a thread\.$"), "ThreadCreated"),
    (re.compile(r"^Added .{1,100} to the group\.$|^Added a recipient\.$"), "RecipientAdd"),
    (re.compile(r"^Left the group\.$|^Removed .{1,100} from the group\.$|^Removed a recipient\.$"), "RecipientRemove"),
    (re.compile(r"^Started a call that lasted [\d,]+ minutes\.$"), "Call"),
    (re.compile(r"^Changed the channel name(: .*|\.)$"), "ChannelNameChange"),
    (re.compile(r"^Changed the channel icon\.$"), "ChannelIconChange"),
)
HEADER = re.compile(r"^\[(?P<date>[^\]]{6,40})\] (?P<author>.+?)(?P<pinned> \(pinned\))?\s*$")
SECTION = re.compile(r"^\{(Attachments|Embed|Stickers|Reactions)\}\s*$")
FOOTER = re.compile(r"^Exported ([\d,.\s\u00a0\u202f]+) message\(s\)\s*$")
REACTION = re.compile(r"(\S+)(?: \((\d+)\))?")


def system_type(content: str) -> str | None:
    """The system message type DiscordChatExporter's notice text stands for, or None."""
    text = content.strip()
    return next((kind for pattern, kind in SYSTEM_NOTICES if pattern.match(text)), None) if "\n" not in text else None


class _Lookahead:
    """Lines with a look at the next few, to tell the real footer from footer-shaped content."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.lines, self.ahead = lines, []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        return self.ahead.pop(0) if self.ahead else next(self.lines)

    def peek(self, count: int) -> list[str]:
        while len(self.ahead) < count:
            line = next(self.lines, None)
            if line is None:
                break
            self.ahead.append(line)
        return self.ahead[:count]

    def at_end_after(self, count: int) -> bool:
        """True when nothing but blank lines follows the next `count` lines."""
        while True:
            ahead = self.peek(len(self.ahead) + 1)
            if len(ahead) <= count:
                return True
            if ahead[-1].strip():
                return False


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
        lines = _Lookahead(decoded_lines(self))
        self._read_header(lines)
        block: _Block | None = None
        section = ""
        footer_seen = False
        blank_before = True  # the header block ends with a rule: a first header may follow at once
        headers: list[int] = []
        number = self._header_lines
        for number, raw in enumerate(lines, start=self._header_lines + 1):
            line = raw.rstrip("\r\n")
            header = HEADER.match(line) if blank_before else None
            blank_before = not line.strip()
            if header and self._is_date(header.group("date")):
                if block:
                    yield from self._finish(block)
                block, section = (
                    _Block(number, header.group("date"), header.group("author"), bool(header.group("pinned"))),
                    "",
                )
                headers.append(number)
                continue
            if RULE.match(line) and self._footer_follows(lines):
                footer = FOOTER.match(next(lines).strip())
                footer_seen = True
                digits = re.sub(r"\D", "", footer.group(1))
                self.info.declared_count = int(digits) if digits else None
                break
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
            raise self.error(f"line {number}", "no 'Exported N message(s)' footer at the end: the export is truncated")
        declared = self.info.declared_count
        if declared is not None and len(headers) > declared:
            raise self.error(
                f"lines {', '.join(map(str, headers[-(len(headers) - declared) :][:5]))}",
                f"{len(headers)} message headers but the footer counts {declared}: "
                f"{len(headers) - declared} line(s) typed "
                "inside messages look like message headers, and a plain-text export cannot tell which. "
                "Nothing was imported from this file; export the channel as JSON or HTML instead",
            )
        if block:
            yield from self._finish(block)

    @staticmethod
    def _footer_follows(lines: _Lookahead) -> bool:
        """A rule starts the real footer only if `Exported N message(s)` and a rule follow, then the end of the file."""
        footer, rule = (lines.peek(2) + ["", ""])[:2]
        return bool(FOOTER.match(footer.strip()) and RULE.match(rule.strip())) and lines.at_end_after(2)

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
        except (ValueError, OverflowError, TypeError, KeyError) as exc:
            yield where, MessageProblem(f"malformed ({exc})")

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
            type=system_type(content) or "Default",
            timestamp=timestamp,
            content=content,
            is_pinned=block.pinned,
            reactions=reactions,
            attachments=attachments,
        )


def looks_like(head: bytes) -> bool:
    return bool(RULE.match(head.lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0].decode("ascii", "replace")))
