"""A local fake of Discord's REST API on 127.0.0.1, for driving the real discord.py client.

It runs an aiohttp server on its own thread and event loop. It serves what discord.py needs for
logging in and reading history (`GET /users/@me`, `GET /oauth2/applications/@me`, `GET /channels/{id}`, paginated
`GET /channels/{id}/messages` with `after`/`before`/`limit`, newest first like Discord), checks the
bot token, and records every request so tests can see what the client asked for. Point discord.py
at it with DISCORD_API_BASE=fake.api_base.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from aiohttp import web

DISCORD_EPOCH_MS = 1_420_070_400_000
TOKEN = "fake-token.for.tests"


def snowflake(moment: datetime, sequence: int = 0) -> int:
    return ((int(moment.timestamp() * 1000) - DISCORD_EPOCH_MS) << 22) | (sequence & 0xFFF)


def _json(data, status: int = 200) -> web.Response:
    """discord.py parses a body as JSON only when Content-Type is exactly application/json."""
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"})


def user_payload(user_id: int, name: str, bot: bool = False, global_name: str | None = None) -> dict:
    return {"id": str(user_id), "username": name, "discriminator": "0", "global_name": global_name, "avatar": None, "bot": bot}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    at: float


@dataclass
class FakeDiscord:
    guild_id: int = 900000000000000001
    channel_id: int = 900000000000000002
    bot_id: int = 900000000000000003
    bot_name: str = "Susu"
    page_delay: float = 0.0
    forbidden: bool = False
    history: list[dict] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)

    # --- content -------------------------------------------------------------------------------

    def message_payload(self, message_id: int, author: dict, content: str, *, nick: str | None = None, moment: datetime | None = None,
                        message_type: int = 0, reactions: dict[str, int] | None = None, reply_to: int | None = None,
                        pinned: bool = False, channel_id: int | None = None) -> dict:  # fmt: skip
        moment = moment or datetime.fromtimestamp(((message_id >> 22) + DISCORD_EPOCH_MS) / 1000, timezone.utc)
        payload = {
            "id": str(message_id), "channel_id": str(channel_id or self.channel_id), "guild_id": str(self.guild_id),
            "author": author, "content": content, "timestamp": moment.isoformat(), "edited_timestamp": None,
            "tts": False, "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [],
            "embeds": [], "pinned": pinned, "type": message_type, "flags": 0, "components": [],
            "reactions": [{"count": n, "me": False, "emoji": {"id": None, "name": name}} for name, n in (reactions or {}).items()],
            "member": {"roles": [], "nick": nick, "joined_at": "2020-01-01T00:00:00+00:00", "deaf": False, "mute": False, "flags": 0},
        }  # fmt: skip
        if reply_to:
            payload["message_reference"] = {"message_id": str(reply_to), "channel_id": str(self.channel_id), "guild_id": str(self.guild_id)}
            payload["type"] = 19
        return payload

    def add_history(self, count: int, start: datetime | None = None, bots_every: int = 0, joins_every: int = 0) -> list[dict]:
        """`count` channel messages a minute apart, oldest first; every Nth from a bot or a join."""
        start = start or datetime(2023, 1, 1, tzinfo=timezone.utc)
        members = [user_payload(1000 + i, f"member{i}") for i in range(7)]
        robot = user_payload(999, "DJ Bot", bot=True)
        added = []
        for i in range(count):
            moment = start + timedelta(minutes=i)
            if bots_every and i % bots_every == bots_every - 1:
                payload = self.message_payload(snowflake(moment, i), robot, f"Now playing track {i}")
            elif joins_every and i % joins_every == joins_every - 1:
                payload = self.message_payload(snowflake(moment, i), members[i % 7], "", message_type=7)
            else:
                payload = self.message_payload(
                    snowflake(moment, i), members[i % 7], f"message {i}: the tavern talks about topic {i % 13} tonight",
                    nick=f"Nick{i % 7}" if i % 2 else None, reactions={"👍": i % 4} if i % 4 else None,
                    reply_to=int(added[-1]["id"]) if i % 10 == 5 and added else None,
                )  # fmt: skip
            added.append(payload)
        self.history.extend(added)
        return added

    # --- server --------------------------------------------------------------------------------

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    def pages_served(self) -> int:
        return sum(1 for r in self.requests if r.path.endswith("/messages") and r.method == "GET")

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bot {TOKEN}"

    async def _record(self, request: web.Request) -> None:
        self.requests.append(Recorded(request.method, request.path, dict(request.query), time.monotonic()))

    async def _me(self, request: web.Request) -> web.Response:
        await self._record(request)
        if not self._authorized(request):
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        return _json(user_payload(self.bot_id, self.bot_name, bot=True))

    async def _application(self, request: web.Request) -> web.Response:
        await self._record(request)
        if not self._authorized(request):
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        return _json({
            "id": str(self.bot_id), "name": self.bot_name, "description": "", "icon": None, "bot_public": False,
            "bot_require_code_grant": False, "owner": user_payload(self.bot_id + 1, "owner"), "verify_key": "0" * 64,
            "flags": 0,
        })  # fmt: skip

    async def _channel(self, request: web.Request) -> web.Response:
        await self._record(request)
        channel_id = int(request.match_info["channel_id"])
        if channel_id != self.channel_id:
            return _json({"message": "Unknown Channel", "code": 10003}, status=404)
        return _json({
            "id": str(self.channel_id), "type": 0, "guild_id": str(self.guild_id), "name": "tavern", "position": 0,
            "permission_overwrites": [], "nsfw": False, "parent_id": None, "topic": None, "last_message_id": None,
            "rate_limit_per_user": 0,
        })  # fmt: skip

    async def _messages(self, request: web.Request) -> web.Response:
        await self._record(request)
        if self.forbidden:
            return _json({"message": "Missing Access", "code": 50001}, status=403)
        if self.page_delay:
            await asyncio.sleep(self.page_delay)
        limit = min(int(request.query.get("limit", 50)), 100)
        after, before = request.query.get("after"), request.query.get("before")
        rows = [m for m in self.history if int(m["channel_id"]) == int(request.match_info["channel_id"])]
        rows.sort(key=lambda m: int(m["id"]))
        if after is not None:
            rows = [m for m in rows if int(m["id"]) > int(after)][:limit]
        else:
            if before is not None:
                rows = [m for m in rows if int(m["id"]) < int(before)]
            rows = rows[-limit:]
        return _json(list(reversed(rows)))  # Discord answers newest first

    def start(self) -> FakeDiscord:
        app = web.Application()
        app.router.add_get("/api/v10/users/@me", self._me)
        app.router.add_get("/api/v10/oauth2/applications/@me", self._application)
        app.router.add_get("/api/v10/channels/{channel_id}", self._channel)
        app.router.add_get("/api/v10/channels/{channel_id}/messages", self._messages)
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def serve() -> None:
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()

        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(serve(), self._loop)
        if not ready.wait(10):
            raise RuntimeError("the fake Discord did not start")
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
