"""DiscordChatExporter HTML (the exporter's default format), parsed incrementally with lxml.

One `div.chatlog__message-container` per message carries `data-message-id`; the first message of a
group has the author (`span.chatlog__author` with the username in `title` and `data-user-id`) and
the rest of the group inherits it. Each container is dropped from the tree once read, so memory
stays flat on large exports. A file without the closing "Exported N message(s)" entry is treated
as truncated.

Message text is read back as the Discord markdown it was rendered from (**bold**, `code`, code
blocks, quotes, spoilers, lists), as the other formats carry it, and system notifications ("pinned a
message to this channel.") become the system messages they are, with the plain-text export's wording.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator

from lxml import etree

from indexes.exports.common import (
    ExportReader,
    Item,
    MessageProblem,
    as_id,
    file_name_of,
    is_number,
    synthetic_user_id,
)
from indexes.exports.text_export import system_type
from indexes.records import MAX_ID, StoredMessage

CHUNK = 1 << 16
MAX_MARKUP_DEPTH = 64  # deeper markup (never written by the exporter) is read as plain text
INLINE = {"strong": "**", "b": "**", "em": "*", "i": "*", "u": "__", "s": "~~", "del": "~~"}
# The HTML export's wording of system notifications, and the plain-text export's for the same.
NOTICES = (
    (re.compile(r"^pinned a message\b", re.I), "Pinned a message."),
    (re.compile(r"^joined the server\b", re.I), "Joined the server."),
    (re.compile(r"^started a thread\b", re.I), "Started a thread."),
    (re.compile(r"^changed the channel icon\b", re.I), "Changed the channel icon."),
)
REPLY_TARGET = re.compile(r"scrollToMessage\(event,\s*'(\d+)'\)")
FOOTER = re.compile(r"Exported\s+([\d,.\s\u00a0\u202f]+)\s+message", re.IGNORECASE)


def _classes(element) -> set[str]:
    return set((element.get("class") or "").split())


def _text(element) -> str:
    """Visible text, with emoji images written as their alt text."""
    parts: list[str] = []

    def walk(node) -> None:
        if node.tag == "img":
            parts.append(node.get("alt") or "")
        elif node.tag == "br":
            parts.append("\n")
        elif node.text:
            parts.append(node.text)
        for child in node:
            if not isinstance(child.tag, str):  # comments
                parts.append(child.tail or "")
                continue
            walk(child)
            parts.append(child.tail or "")

    walk(element)
    return "".join(parts).strip()


def _markdown(element) -> str:
    """Message text as the Discord markdown the exporter rendered into HTML."""

    def render(node, depth: int) -> str:
        if depth > MAX_MARKUP_DEPTH:
            return "".join(node.itertext())
        tag, classes = node.tag, _classes(node)
        if tag == "img":
            alt = node.get("alt") or ""
            return f":{alt}:" if re.fullmatch(r"\w{2,32}", alt) else alt  # a custom emoji by its name, as typed
        if tag == "br":
            return "\n"
        if tag == "code":
            code = "".join(node.itertext())
            if "chatlog__markdown-pre--multiline" in classes:
                language = next((c[len("language-") :] for c in classes if c.startswith("language-")), "")
                return f"```{language}\n{code.strip(chr(10))}\n```"
            return f"`{code}`"
        inner = (node.text or "") + "".join(
            (render(child, depth + 1) if isinstance(child.tag, str) else "") + (child.tail or "") for child in node
        )
        if "chatlog__markdown-quote-border" in classes:
            return ""
        if "chatlog__markdown-quote" in classes:
            return "\n".join(f"> {line}" for line in inner.strip("\n").split("\n"))
        if "chatlog__markdown-spoiler" in classes:
            return f"||{inner}||"
        if tag in INLINE:
            return f"{INLINE[tag]}{inner}{INLINE[tag]}"
        if (
            tag == "a"
            and node.get("href", "").startswith(("http://", "https://"))
            and inner.strip() not in ("", node.get("href"))
        ):
            return f"[{inner}]({node.get('href')})"  # a masked link
        if tag in ("h1", "h2", "h3"):
            return f"{'#' * int(tag[1])} {inner.strip()}"
        if tag == "li":
            return f"- {inner.strip()}\n"
        return inner

    return render(element, 0).strip()


def _notice(text: str) -> tuple[str, str]:
    """(type, content) of a system notification, worded as in the plain-text export."""
    text = " ".join(text.split())
    for pattern, wording in NOTICES:
        if pattern.match(text):
            return system_type(wording) or "System", wording
    return "System", text[:1].upper() + text[1:]


def _is_content(node) -> bool:
    parent = node.getparent()
    return parent is not None and "chatlog__content" in _classes(parent)


class HtmlExport(ExportReader):
    format = "html"
    discord_ids = True

    def __iter__(self) -> Iterator[Item]:
        parser = etree.HTMLPullParser(events=("end",), tag="div", encoding=None, recover=True)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self._author: dict = {}
        self._footer = False
        self._preamble: list[str] = []
        line = 1
        with open(self.path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                try:
                    text = decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    bad_line = line + chunk[: exc.start].count(b"\n")
                    raise self.error(
                        f"line {bad_line}, byte {self.bytes_read + exc.start:,}", "invalid UTF-8"
                    ) from None
                line += chunk.count(b"\n")
                self.bytes_read += len(chunk)
                parser.feed(text)
                yield from self._drain(parser)
        parser.close()
        yield from self._drain(parser)
        if not self._footer:
            raise self.error(f"line {line}", "no 'Exported N message(s)' entry at the end: the export is truncated")

    def _drain(self, parser) -> Iterator[Item]:
        for _, element in parser.read_events():
            classes = _classes(element)
            if "chatlog__message-container" in classes:
                yield from self._container(element)
                element.clear()
                parent = element.getparent()
                if parent is not None and "chatlog__message-group" in _classes(parent):
                    while element.getprevious() is not None:
                        del parent[0]
            elif "chatlog__message-group" in classes:
                parent = element.getparent()
                element.clear()
                if parent is not None:
                    parent.remove(element)
            elif "preamble__entry" in classes:
                self._preamble.append(_text(element))
                if len(self._preamble) == 2:
                    self.info.guild_name = self._preamble[0]
                    self.info.channel_name = self._preamble[1].rsplit(" / ", 1)[-1]
            elif "postamble__entry" in classes:
                footer = FOOTER.search(_text(element))
                if footer:
                    self._footer = True
                    digits = re.sub(r"\D", "", footer.group(1))
                    self.info.declared_count = int(digits) if digits else None

    def _container(self, element) -> Iterator[Item]:
        message_id = element.get("data-message-id") or ""
        where = f"message {message_id or '(no id)'}"
        try:
            yield where, self._message(element, message_id)
        except MessageProblem as exc:
            yield where, exc
        except (ValueError, OverflowError, TypeError, KeyError, AttributeError) as exc:
            yield where, MessageProblem(f"malformed ({exc})")

    def _message(self, element, message_id: str) -> StoredMessage:
        if not message_id:
            raise MessageProblem("no data-message-id")
        message_id = str(as_id(message_id, "message id"))
        found: dict[str, object] = {}
        reactions: dict[str, int] = {}
        attachments: list[str] = []
        for node in element.iter():
            if not isinstance(node.tag, str):
                continue
            classes = _classes(node)
            if not classes:
                continue
            if "chatlog__author" in classes or "chatlog__system-notification-author" in classes:
                found["author"] = node
                found["system"] = "chatlog__system-notification-author" in classes
            elif "chatlog__author-tag" in classes or "chatlog__bot-tag" in classes:
                found["bot"] = True
            elif "chatlog__timestamp" in classes or "chatlog__system-notification-timestamp" in classes:
                found["date"] = node.get("title") or _text(node)
            elif "chatlog__short-timestamp" in classes:
                found.setdefault("date", node.get("title") or "")
            elif "chatlog__markdown-preserve" in classes and "content" not in found and _is_content(node):
                found["content"] = _markdown(node)
            elif "chatlog__system-notification-content" in classes:
                found["notice"] = _text(node)
            elif "chatlog__content" in classes and "content" not in found:
                found["content_fallback"] = node
            elif "chatlog__edited-timestamp" in classes:
                found["edited"] = node.get("title") or ""
            elif "chatlog__reply-link" in classes:
                target = REPLY_TARGET.search(node.get("onclick") or "")
                if target:
                    found["reply_to"] = as_id(target.group(1), "reply-to id")
            elif "chatlog__reaction" in classes:
                image = next(node.iter("img"), None)
                name = (image.get("alt") if image is not None else "") or node.get("title") or "?"
                count_node = next((n for n in node.iter() if "chatlog__reaction-count" in _classes(n)), None)
                count = _text(count_node).strip() if count_node is not None else "1"
                if not is_number(count):
                    raise MessageProblem(f"reaction count of {name[:20]!r} is not a number: {count[:20]!r}")
                reactions[name] = reactions.get(name, 0) + int(count)
            elif "chatlog__attachment" in classes:
                link = next((n for n in node.iter("a", "source", "img") if n.get("href") or n.get("src")), None)
                if link is not None:
                    attachments.append(file_name_of(link.get("href") or link.get("src") or ""))
        if "content" not in found and "content_fallback" in found:
            found["content"] = _markdown(found["content_fallback"])
        author = found.get("author")
        if author is not None:
            user_id = author.get("data-user-id") or ""
            username = author.get("title") or _text(author)
            self._author = {
                "id": int(user_id) if is_number(user_id) and int(user_id) <= MAX_ID else synthetic_user_id(username),
                "name": username,
                "display": _text(author),
                "bot": bool(found.get("bot")),
            }
        if not self._author:
            raise MessageProblem("no author (the first message of its group is missing)")
        if not found.get("date"):
            raise MessageProblem("no timestamp")
        edited = str(found.get("edited") or "")
        display = self._author["display"]
        kind = "Reply" if "reply_to" in found else "Default"
        content = str(found.get("content") or "")
        if found.get("system"):
            kind, content = _notice(str(found.get("notice") or content))
        return StoredMessage(
            id=int(message_id),
            channel_id=self.info.channel_id or 0,
            author_id=self._author["id"],
            author_name=self._author["name"],
            author_display=display if display != self._author["name"] else "",
            author_is_bot=self._author["bot"],
            type=kind,
            timestamp=self.parse_date(str(found["date"])),
            edited_at=self.parse_date(edited) if edited else None,
            content=content,
            reply_to=found.get("reply_to"),  # type: ignore[arg-type]
            is_pinned="chatlog__message-container--pinned" in _classes(element),
            reactions=reactions,
            attachments=attachments,
        )


def looks_like(head: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:200].lower()
    return start.startswith(b"<!doctype html") or start.startswith(b"<html")
