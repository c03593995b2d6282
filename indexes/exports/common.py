"""What every export reader shares: the export's description, errors, ids and dates.

A reader yields `(position, message_or_problem)` pairs: a `StoredMessage`, or a `MessageProblem`
for one broken message (counted and skipped). A problem that makes the whole file unusable
(truncated, wrong format, undecodable bytes) raises `ExportError`, and the file is not imported.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from dateutil import parser as date_parser

from errors import UserError
from indexes.records import DISCORD_EPOCH_MS, MAX_ID, StoredMessage

EARLIEST = datetime.fromtimestamp(DISCORD_EPOCH_MS / 1000, timezone.utc)  # no Discord message is older
FUTURE_MARGIN = timedelta(days=1)  # clocks and time zones: later than now by more than this is a wrong date
MAX_COUNT = 2**31 - 1  # a reaction count
CHANNEL_ID_IN_NAME = re.compile(r"\[(\d{15,21})\]")


class ExportError(UserError, ValueError):
    """A whole export file cannot be imported; the message names the file and the position."""

    def __init__(self, path: Path, position: str, problem: str) -> None:
        self.path, self.position, self.problem = path, position, problem
        where = f"{path}: {position}: " if position else f"{path}: "
        super().__init__(where + problem)


class MessageProblem(ValueError):
    """One message of an export is broken; it is skipped and counted, the rest imports."""


@dataclass
class ExportInfo:
    """What an export says about itself (empty where its format does not carry it)."""

    path: Path
    format: str
    guild_id: int | None = None
    guild_name: str = ""
    channel_id: int | None = None
    channel_name: str = ""
    declared_count: int | None = None

    @classmethod
    def for_file(cls, path: Path, fmt: str) -> ExportInfo:
        """The defaults, with the channel id from the exporter's file name ("... [123].json")."""
        match = CHANNEL_ID_IN_NAME.search(path.name)
        return cls(path, fmt, channel_id=int(match.group(1)) if match else None)


Item = tuple[str, "StoredMessage | MessageProblem"]


class ExportReader:
    """Base of the four format readers: iterate to get (position, message or problem)."""

    format = ""
    discord_ids = False  # message ids are Discord's own (JSON, HTML), not derived from dates (CSV, TXT)

    def __init__(self, path: Path, dayfirst: bool = False) -> None:
        self.path = path
        self.dayfirst = dayfirst
        self.info = ExportInfo.for_file(path, self.format)
        self.bytes_read = 0

    def __iter__(self) -> Iterator[Item]:
        raise NotImplementedError

    def error(self, position: str, problem: str) -> ExportError:
        return ExportError(self.path, position, problem)

    def parse_date(self, text: str) -> datetime:
        """ISO 8601 or the exporter's locale formats; dates without an offset are taken as UTC."""
        text = text.strip()
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            try:
                value = date_parser.parse(text, dayfirst=self.dayfirst)
            except (ValueError, OverflowError) as exc:
                raise MessageProblem(f"unreadable date {text!r}") from exc
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def is_number(text: str) -> bool:
    """ASCII digits only ("²" and other Unicode digits are not numbers here)."""
    return text.isascii() and text.isdigit()


def as_id(text: str, what: str) -> int:
    """A Discord id written as text; MessageProblem, naming the field, if it is not one."""
    text = text.strip()
    if not is_number(text):
        raise MessageProblem(f"{what} is not a number: {text[:40]!r}")
    value = int(text)
    if value > MAX_ID:
        raise MessageProblem(f"{what} is out of range: {text[:40]}")
    return value


def _moment(value: datetime, what: str) -> datetime:
    try:
        moment = value.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        raise MessageProblem(f"{what} is out of range: {value.isoformat()}") from None
    if moment < EARLIEST:
        raise MessageProblem(f"{what} {moment:%Y-%m-%d} is before Discord existed: a wrong date")
    if moment > datetime.now(timezone.utc) + FUTURE_MARGIN:
        raise MessageProblem(f"{what} {moment:%Y-%m-%d %H:%M} is in the future: a wrong date or time zone")
    return value


def checked(message: StoredMessage) -> StoredMessage:
    """The message, if the store can hold every value and a date can be trusted; MessageProblem otherwise.

    Ids must fit SQLite's integers; dates must fall between Discord's start and now (a row dated
    2100 would make a derived id, and the newest message, lie in the future).
    """
    _moment(message.timestamp, "date")
    if message.edited_at is not None:
        _moment(message.edited_at, "edit date")
    ids = [
        ("message id", message.id),
        ("author id", message.author_id),
        ("channel id", message.channel_id),
        ("guild id", message.guild_id),
        ("reply-to id", message.reply_to),
        *(("mention id", m) for m in message.mentions),
    ]
    for what, value in ids:
        if value is not None and not 0 <= value <= MAX_ID:
            raise MessageProblem(f"{what} is out of range: {str(value)[:40]}")
    for name, count in message.reactions.items():
        if not 0 <= count <= MAX_COUNT:
            raise MessageProblem(f"reaction count of {name[:20]!r} is out of range: {str(count)[:40]}")
    return message


def _hash(*parts: object, bits: int) -> int:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << bits) - 1)


def synthetic_message_id(timestamp: datetime, *parts: object) -> int:
    """A snowflake-shaped id for formats without message ids (CSV, TXT).

    Time in the high bits keeps ids in time order like Discord's; a hash of the author and content
    in the low 22 bits makes the same message get the same id on every import (idempotence).
    """
    ms = max(0, int(timestamp.timestamp() * 1000) - DISCORD_EPOCH_MS)
    return (ms << 22) | _hash(*parts, bits=22)


def synthetic_user_id(name: str) -> int:
    """A stable id for a member known only by name (TXT exports), below real snowflakes' range."""
    return _hash("user", name, bits=52)


def file_name_of(url: str) -> str:
    """The file name of an attachment URL or local asset path."""
    url = url.strip()
    path = urlparse(url).path if "://" in url else url
    return unquote(PurePosixPath(path).name) or url


def decoded_lines(reader: ExportReader) -> Iterator[str]:
    """The file's lines as text (line endings kept), decoded strictly as UTF-8.

    Decoding line by line lets an invalid byte be reported with its exact line and byte offset.
    """
    offset = 0
    with open(reader.path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw, offset = raw[3:], 3
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise reader.error(f"line {number}, byte {offset + exc.start:,}", "invalid UTF-8") from None
            offset += len(raw)
            reader.bytes_read = offset
            yield line
