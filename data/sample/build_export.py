"""Render history.txt into export.json, a DiscordChatExporter JSON export of the sample channel.

Run from the repository root: `python data/sample/build_export.py`. The output is deterministic.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).parent
DISCORD_EPOCH_MS = 1420070400000
GUILD = {"id": "1100000000000000001", "name": "Pixel Tavern", "iconUrl": ""}
CHANNEL = {
    "id": "1100000000000000002",
    "type": "GuildTextChat",
    "categoryId": "1100000000000000003",
    "category": "Text Channels",
    "name": "tavern",
    "topic": "The main room of the Pixel Tavern. Mention @Susu to talk to the tavern cat.",
}
ROLES = {
    "ravenna": [{"id": "1100000000000000010", "name": "Admin", "color": "#E91E63", "position": 3}],
    "kiwi": [{"id": "1100000000000000011", "name": "Mod", "color": "#2ECC71", "position": 2}],
    "tomasz": [{"id": "1100000000000000011", "name": "Mod", "color": "#2ECC71", "position": 2}],
}
NICKNAMES = {"ravenna": "Ravenna 🍺", "kiwi": "kiwi", "tomasz": "Tomasz the Fixer"}
LINE = re.compile(r"^(?P<author>[\w ()]+?)(?: -> (?P<target>\w+))?(?P<pin> \[pin\])?: (?P<text>.*)$")
REACTION = re.compile(r"\[\+([^\]]+)\]")
FILE = re.compile(r"\[file: ([^\]]+)\]")


def snowflake(moment: datetime, seq: int) -> str:
    return str(((int(moment.timestamp() * 1000) - DISCORD_EPOCH_MS) << 22) + seq)


def author(name: str) -> dict:
    is_bot = name.endswith("(bot)")
    clean = name.removesuffix(" (bot)")
    return {
        "id": str(1200000000000000000 + sum(ord(c) * 31**i for i, c in enumerate(clean)) % 10**15),
        "name": clean.lower(),
        "discriminator": "0000",
        "nickname": NICKNAMES.get(clean, clean),
        "color": None,
        "isBot": is_bot,
        "roles": ROLES.get(clean, []),
        "avatarUrl": "",
    }


def reactions(spec: str) -> list[dict]:
    parts = spec.split()
    return [
        {"emoji": {"id": "", "name": emoji, "code": "", "isAnimated": False, "imageUrl": ""}, "count": int(count)}
        for emoji, count in zip(parts[::2], parts[1::2], strict=True)
    ]


def _chronological(path: Path) -> list[str]:
    """The history's lines with its "@ DATE" blocks in date order (blocks may be written in any order)."""
    blocks: list[list[str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("@ ") or not blocks:
            blocks.append([])
        blocks[-1].append(line)
    blocks.sort(key=lambda block: block[0] if block[0].startswith("@ ") else "")
    return [line for block in blocks for line in block]


def build() -> dict:
    messages: list[dict] = []
    latest_by: dict[str, str] = {}
    clock = datetime(2023, 1, 1, tzinfo=timezone.utc)
    seq = 0
    for raw in _chronological(HERE / "history.txt"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@ "):
            clock = datetime.strptime(line[2:], "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)
            continue
        seq += 1
        clock += timedelta(minutes=1 + seq % 4, seconds=seq * 7 % 60)
        if line.startswith("* join "):
            who = line.removeprefix("* join ")
            messages.append({"id": snowflake(clock, seq), "type": "GuildMemberJoin", "timestamp": clock.isoformat(),
                             "timestampEdited": None, "isPinned": False, "content": "Joined the server.",
                             "author": author(who), "attachments": [], "embeds": [], "stickers": [],
                             "reactions": [], "mentions": []})
            continue
        match = LINE.match(line)
        if not match:
            raise SystemExit(f"history.txt: cannot parse line: {raw!r}")
        text = match["text"]
        found_reactions = [r for spec in REACTION.findall(text) for r in reactions(spec)]
        files = FILE.findall(text)
        text = FILE.sub("", REACTION.sub("", text)).strip()
        who = match["author"].removesuffix(" (bot)")
        message = {
            "id": snowflake(clock, seq),
            "type": "Reply" if match["target"] else "Default",
            "timestamp": clock.isoformat(),
            "timestampEdited": None,
            "isPinned": bool(match["pin"]),
            "content": text,
            "author": author(match["author"]),
            "attachments": [{"id": snowflake(clock, seq + 1), "url": f"attachments/{f}", "fileName": f,
                             "fileSizeBytes": 120000} for f in files],
            "embeds": [],
            "stickers": [],
            "reactions": found_reactions,
            "mentions": [],
        }
        if match["target"]:
            target_id = latest_by[match["target"]]
            message["reference"] = {"messageId": target_id, "channelId": CHANNEL["id"], "guildId": GUILD["id"]}
            message["mentions"] = [author(match["target"])]
        latest_by[who] = message["id"]
        messages.append(message)
    return {
        "guild": GUILD,
        "channel": CHANNEL,
        "dateRange": {"after": None, "before": None},
        "exportedAt": "2026-11-02T09:00:00+00:00",
        "messages": messages,
        "messageCount": len(messages),
    }


if __name__ == "__main__":
    export = build()
    (HERE / "export.json").write_text(json.dumps(export, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {export['messageCount']} messages to {HERE / 'export.json'}")
