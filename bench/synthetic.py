"""Synthetic DiscordChatExporter JSON exports of any size, written as a stream (bounded memory).

The mix imitates a busy community channel: short chatter, ordinary sentences, long posts,
questions with replies, reactions, a few pinned posts, bots, commands and joins.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

DISCORD_EPOCH_MS = 1_420_070_400_000
CHANNEL_ID, GUILD_ID = 1300000000000000002, 1300000000000000001
SHORT = ["lol", "gg", "same", "true", "omg yes", "nice", "wait what", "haha", "ok", "brb", "rip", "+1", "yep", "no way"]
SUBJECTS = [
    "the arcade cabinet",
    "the speedrun",
    "the tournament",
    "the new patch",
    "the retro console",
    "the boss fight",
    "the high score",
    "the meetup",
    "the soundtrack",
    "the level editor",
    "the pizza night",
    "the charity stream",
]
VERBS = ["broke", "saved", "changed", "ruined", "made", "beat", "started", "ended", "won", "lost"]
OBJECTS = [
    "my whole weekend",
    "the leaderboard",
    "everyone's mood",
    "the old record",
    "the server",
    "our friendship",
    "the final round",
    "a cartridge",
    "the stream",
    "the vote",
]


def _snowflake(moment: datetime, sequence: int) -> int:
    return ((int(moment.timestamp() * 1000) - DISCORD_EPOCH_MS) << 22) | (sequence & 0x3FFFFF)


def _sentence(rng: random.Random) -> str:
    return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"


def _content(rng: random.Random, i: int) -> str:
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(SHORT)
    if roll < 0.85:
        return f"{_sentence(rng)}, {rng.choice(['honestly', 'no joke', 'again', 'for real'])} #{i % 997}"
    if roll < 0.95:
        return f"who remembers when {_sentence(rng)}?"
    return ". ".join(_sentence(rng).capitalize() for _ in range(rng.randint(4, 9))) + "."


def write_export(path: Path, messages: int, seed: int = 0, members: int = 60, start: datetime | None = None) -> int:
    """Write a JSON export of `messages` messages over five years from `start`; returns the file size in bytes."""
    rng = random.Random(seed)
    start = start or datetime(2021, 1, 1, tzinfo=timezone.utc)
    step = timedelta(days=5 * 365) / max(messages, 1)
    authors = [
        {
            "id": str(1400000000000000000 + n),
            "name": f"member{n}",
            "discriminator": "0000",
            "nickname": f"Member {n}",
            "color": None,
            "isBot": False,
            "roles": [],
        }
        for n in range(members)
    ]
    bot = {
        "id": "1400000000000009999",
        "name": "DJ Bot",
        "discriminator": "0000",
        "nickname": "DJ Bot",
        "isBot": True,
        "roles": [],
    }
    recent: list[str] = []
    with open(path, "w", encoding="utf-8") as out:
        header = {
            "guild": {"id": str(GUILD_ID), "name": "Benchmark Guild"},
            "channel": {"id": str(CHANNEL_ID), "type": "GuildTextChat", "name": "general", "topic": None},
            "dateRange": {"after": None, "before": None},
            "exportedAt": "2026-01-01T00:00:00+00:00",
        }
        out.write(json.dumps(header)[:-1] + ', "messages": [\n')
        for i in range(messages):
            moment = start + step * i
            message_id = str(_snowflake(moment, i))
            roll = rng.random()
            author = bot if roll < 0.02 else rng.choice(authors)
            kind = "GuildMemberJoin" if 0.02 <= roll < 0.03 else "Default"
            content = (
                "Joined the server."
                if kind != "Default"
                else ("!play " + rng.choice(OBJECTS) if roll < 0.04 else _content(rng, i))
            )
            message = {
                "id": message_id,
                "type": kind,
                "timestamp": moment.isoformat(),
                "timestampEdited": None,
                "isPinned": rng.random() < 0.003,
                "content": content,
                "author": author,
                "attachments": [],
                "embeds": [],
                "stickers": [],
                "mentions": [],
                "reactions": [
                    {"emoji": {"id": "", "name": "👍", "code": "thumbsup"}, "count": rng.randint(1, 15), "users": []}
                ]
                if rng.random() < 0.15
                else [],
            }
            if recent and rng.random() < 0.1:
                message["type"] = "Reply"
                message["reference"] = {
                    "messageId": rng.choice(recent),
                    "channelId": str(CHANNEL_ID),
                    "guildId": str(GUILD_ID),
                }
            recent = (recent + [message_id])[-50:]
            out.write(("," if i else "") + json.dumps(message, ensure_ascii=False) + "\n")
        out.write(f'], "messageCount": {messages}}}\n')
    return path.stat().st_size
