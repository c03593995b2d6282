"""DiscordChatExporter JSON, streamed with ijson: memory stays flat whatever the file's size.

Every schema version from 2.18 on is read: only `id`, `timestamp`, `content` and `author` are
required of a message; message types may be names or numbers (unknown ones are kept as numbers).
Nesting deeper than DiscordChatExporter ever writes is refused as soon as it is read (a crafted
file nested thousands of levels deep would otherwise take gigabytes), and ids that do not fit a
64-bit integer make the message a problem, not a crash.
"""

from __future__ import annotations

from collections.abc import Iterator

import ijson

from indexes.exports.common import ExportReader, Item, MessageProblem, file_name_of
from indexes.records import MAX_ID, StoredMessage

MAX_DEPTH = 24  # DiscordChatExporter writes at most about 8 levels (messages > message > embed > fields > field)
# The parser hands over a buffer's events at once, each with its full path: small buffers keep a
# crafted file from building gigabytes of paths before the depth check sees them.
PARSE_BUFFER = 4096


class _CountingFile:
    """A binary file that counts the bytes read, for progress and error positions."""

    def __init__(self, handle, reader: ExportReader) -> None:
        self._handle, self._reader = handle, reader

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._reader.bytes_read += len(data)
        return data


def _int(value, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise MessageProblem(f"{what} is not a number: {str(value)[:40]!r}") from None
    if not 0 <= number <= MAX_ID:
        raise MessageProblem(f"{what} is out of range: {str(value)[:40]}")
    return number


def _guarded(events, reader: ExportReader):
    """ijson events, refused once they nest deeper than MAX_DEPTH (before anything deeper is built)."""
    depth = 0
    for prefix, event, value in events:
        if event in ("start_map", "start_array"):
            depth += 1
            if depth > MAX_DEPTH:
                where = prefix.split(".")[0] if prefix else "the top level"
                raise reader.error(
                    f"near byte {reader.bytes_read:,}",
                    f"nested more than {MAX_DEPTH} levels deep (in {where!r}): not a DiscordChatExporter export",
                )
        elif event in ("end_map", "end_array"):
            depth -= 1
        yield prefix, event, value


def parse_message(raw: dict, channel_id: int, guild_id: int | None, parse_date) -> StoredMessage:
    """One exporter message object to a StoredMessage; MessageProblem if it is unusable."""
    if not isinstance(raw, dict):
        raise MessageProblem(f"a message must be an object, got {type(raw).__name__}")
    missing = [key for key in ("id", "timestamp", "content", "author") if key not in raw]
    if missing:
        raise MessageProblem("missing " + ", ".join(missing))
    author = raw["author"]
    if not isinstance(author, dict) or "id" not in author:
        raise MessageProblem("author has no id")
    reference = raw.get("reference") or {}
    edited = raw.get("timestampEdited")
    reactions: dict[str, int] = {}
    for reaction in raw.get("reactions") or []:
        emoji = reaction.get("emoji") or {}
        name = str(emoji.get("name") or emoji.get("code") or "?")
        reactions[name] = reactions.get(name, 0) + int(reaction.get("count") or 0)
    return StoredMessage(
        id=_int(raw["id"], "id"),
        channel_id=channel_id,
        guild_id=guild_id,
        author_id=_int(author["id"], "author id"),
        author_name=str(author.get("name") or author["id"]),
        author_display=str(author.get("nickname") or ""),
        author_is_bot=bool(author.get("isBot", False)),
        type=str(raw.get("type", "Default")),
        timestamp=parse_date(str(raw["timestamp"])),
        edited_at=parse_date(str(edited)) if edited else None,
        content=str(raw["content"] or ""),
        reply_to=_int(reference["messageId"], "reply reference") if reference.get("messageId") else None,
        is_pinned=bool(raw.get("isPinned", False)),
        reactions=reactions,
        mentions=[
            _int(m["id"], "mention id") for m in raw.get("mentions") or [] if isinstance(m, dict) and m.get("id")
        ],
        attachments=[
            file_name_of(str(a.get("fileName") or a.get("url") or ""))
            for a in raw.get("attachments") or []
            if isinstance(a, dict)
        ],
    )


class JsonExport(ExportReader):
    format = "json"
    discord_ids = True

    def _read_header(self) -> None:
        """Guild and channel come before the messages: read only that far."""
        with open(self.path, "rb") as handle:
            events = _guarded(ijson.parse(_CountingFile(handle, self), buf_size=PARSE_BUFFER), self)
            header: dict[str, dict] = {}
            builder, building = None, ""
            try:
                prefix, event, _ = next(events)
                if event != "start_map":
                    raise self.error("byte 0", "not a DiscordChatExporter JSON export (the top level is not an object)")
                for prefix, event, value in events:
                    if building:
                        builder.event(event, value)
                        if prefix == building and event == "end_map":
                            header[building], building = builder.value, ""
                    elif prefix in ("guild", "channel") and event == "start_map":
                        builder, building = ijson.ObjectBuilder(), prefix
                        builder.event(event, value)
                    elif prefix == "messages" and event == "start_array":
                        break
                else:
                    raise self.error("", "not a DiscordChatExporter JSON export (no 'messages' list)")
            except ijson.JSONError as exc:
                raise self._syntax_error(exc) from None
        self.bytes_read = 0
        guild, channel = header.get("guild") or {}, header.get("channel") or {}
        try:
            if guild.get("id"):
                self.info.guild_id = _int(guild["id"], "guild id")
            if channel.get("id"):
                self.info.channel_id = _int(channel["id"], "channel id")
        except MessageProblem as exc:
            raise self.error("header", str(exc)) from None
        self.info.guild_name = str(guild.get("name") or "")
        self.info.channel_name = str(channel.get("name") or "")

    def _syntax_error(self, exc: Exception, after: str = ""):
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, ijson.IncompleteJSONError) and "premature EOF" in str(exc):
            detail = "the file ends early (truncated export?)"
        elif "UTF8" in str(exc) or "utf-8" in str(exc).lower():
            detail = "invalid UTF-8"
        return self.error(f"near byte {self.bytes_read:,}{after}", detail)

    def __iter__(self) -> Iterator[Item]:
        self._read_header()
        channel_id, guild_id = self.info.channel_id or 0, self.info.guild_id
        position = 0
        with open(self.path, "rb") as handle:
            events = ijson.parse(_CountingFile(handle, self), buf_size=PARSE_BUFFER, use_float=True)
            messages = ijson.items(_guarded(events, self), "messages.item")
            try:
                for position, raw in enumerate(messages, start=1):
                    where = f"message #{position}"
                    try:
                        yield where, parse_message(raw, channel_id, guild_id, self.parse_date)
                    except (MessageProblem, KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
                        yield where, exc if isinstance(exc, MessageProblem) else MessageProblem(f"malformed ({exc})")
            except (ijson.JSONError, UnicodeDecodeError) as exc:
                raise self._syntax_error(exc, f", after message #{position}") from None


def looks_like(head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"[")
