"""A local fake of Discord (REST and gateway) on 127.0.0.1, for driving the real discord.py client.

It runs an aiohttp server on its own thread and event loop.

REST: what discord.py needs to log in (`GET /users/@me`, `GET /oauth2/applications/@me`), read
history (`GET /channels/{id}` and paginated `GET /channels/{id}/messages`, newest first like
Discord), post and edit (`POST /channels/{id}/messages`, `PATCH .../messages/{id}`, typing,
reactions) and sync application commands. Posts and edits are recorded with their arrival time
and echoed back on the gateway as MESSAGE_CREATE / MESSAGE_UPDATE from the bot, as Discord does.

Gateway (websocket at /gateway): HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeats answered
with HEARTBEAT_ACK, RESUME with replay of missed events, RECONNECT on demand, and close code 4014
when the message-content intent is not allowed. Tests inject MESSAGE_CREATE events with
`send_message`, MESSAGE_UPDATE with `edit_message` (of any message, one the client never cached
included), MESSAGE_DELETE and MESSAGE_DELETE_BULK with `delete_message(s)`, and threads, public
or private (type 12), with `create_thread` / `delete_thread` (THREAD_CREATE, THREAD_DELETE). Point
discord.py at it with DISCORD_API_BASE=fake.api_base and DISCORD_GATEWAY_URL=fake.gateway_url.

Slash commands: `invoke_command` has a member use a command the bot synced (INTERACTION_CREATE, type 2), with
the synced command's id and option types. The bot answers as Discord has it: the interaction callback
(`POST /interactions/{id}/{token}/callback`: type 4 a message, type 5 deferred), followups on the
application's webhook (`POST /webhooks/{application_id}/{token}`) and the original response
(`GET`/`PATCH .../messages/@original`). What the member was shown is in `interaction_responses` (`answers`),
with the flags it was shown with: the first followup after a deferral replaces the "thinking" message and is
ephemeral exactly when the deferral was. Public answers appear in the channel (MESSAGE_CREATE / MESSAGE_UPDATE);
ephemeral ones never do, nor go to `posts`.
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
MESSAGE_CONTENT_INTENT = 1 << 15
MANAGE_GUILD = 1 << 5
# @everyone's, as a new server has them: view channel, send messages, read message history, add reactions,
# send messages in threads
EVERYONE_PERMISSIONS = 0x400 | 0x800 | 0x10000 | 0x40 | (1 << 38)
ALL_PERMISSIONS = (1 << 51) - 1  # what a server owner has
EPHEMERAL, LOADING = 1 << 6, 1 << 7  # message flags
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024


def snowflake(moment: datetime, sequence: int = 0) -> int:
    return ((int(moment.timestamp() * 1000) - DISCORD_EPOCH_MS) << 22) | (sequence & 0xFFF)


def now_snowflake() -> int:
    """A fresh, increasing snowflake for the current time."""
    global _sequence
    _sequence += 1
    return snowflake(datetime.now(timezone.utc), _sequence)


_sequence = 0


def _json(data, status: int = 200) -> web.Response:
    """discord.py parses a body as JSON only when Content-Type is exactly application/json."""
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"})


def user_payload(user_id: int, name: str, bot: bool = False, global_name: str | None = None) -> dict:
    return {
        "id": str(user_id),
        "username": name,
        "discriminator": "0",
        "global_name": global_name,
        "avatar": None,
        "bot": bot,
    }


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    at: float


@dataclass
class Post:
    """A message the bot posted, as Discord received it."""

    channel_id: int
    body: dict
    at: float
    id: int

    @property
    def content(self) -> str:
        return self.body.get("content") or ""

    @property
    def reply_to(self) -> int | None:
        reference = self.body.get("message_reference") or {}
        return int(reference["message_id"]) if reference.get("message_id") else None


@dataclass
class Edit:
    """An edit of one of the bot's messages, as Discord received it."""

    channel_id: int
    message_id: int
    body: dict
    at: float

    @property
    def content(self) -> str:
        return self.body.get("content") or ""


@dataclass
class InteractionResponse:
    """What the bot answered to an interaction, as the member was shown it.

    `kind`: "deferred" (callback type 5: the "thinking" message), "message" (callback type 4), "followup" or
    "edit" (of the original response). `flags` are those of the message shown: a first followup after a
    deferral takes the deferral's ephemeral flag, whatever its own says. `body` is what the bot sent.
    """

    interaction_id: int
    kind: str
    content: str
    flags: int
    body: dict
    at: float

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)


@dataclass
class FakeDiscord:
    guild_id: int = 900000000000000001
    channel_id: int = 900000000000000002
    bot_id: int = 900000000000000003
    bot_name: str = "Susu"
    other_channel_id: int = 900000000000000004
    owner_id: int = 900000000000000005
    admin_role_id: int = 900000000000000006
    dm_channel_id: int = 900000000000000007
    page_delay: float = 0.0
    forbidden: bool = False
    allow_message_content: bool = True
    # the tavern channel's permission overwrites, as Discord sends them ({"id", "type": 0 role / 1 member,
    # "allow", "deny"}): a permission taken from the bot there
    channel_overwrites: list[dict] = field(default_factory=list)
    heartbeat_interval_ms: int = 41250
    history: list[dict] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    posts: list[Post] = field(default_factory=list)
    edits: list[Edit] = field(default_factory=list)
    reactions: list[tuple[int, str]] = field(default_factory=list)
    typing: list[float] = field(default_factory=list)
    heartbeats: list[float] = field(default_factory=list)
    identifies: int = 0
    resumes: int = 0
    sent_at: dict[int, float] = field(default_factory=dict)
    commands: list[dict] = field(default_factory=list)
    threads: dict[int, dict] = field(default_factory=dict)
    interactions: dict[int, dict] = field(default_factory=dict)
    interaction_responses: list[InteractionResponse] = field(default_factory=list)

    # --- content -------------------------------------------------------------------------------

    def message_payload(
        self,
        message_id: int,
        author: dict,
        content: str,
        *,
        nick: str | None = None,
        moment: datetime | None = None,
        message_type: int = 0,
        reactions: dict[str, int] | None = None,
        reply_to: int | None = None,
        pinned: bool = False,
        channel_id: int | None = None,
    ) -> dict:
        moment = moment or datetime.fromtimestamp(((message_id >> 22) + DISCORD_EPOCH_MS) / 1000, timezone.utc)
        payload = {
            "id": str(message_id),
            "channel_id": str(channel_id or self.channel_id),
            "guild_id": str(self.guild_id),
            "author": author,
            "content": content,
            "timestamp": moment.isoformat(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": pinned,
            "type": message_type,
            "flags": 0,
            "components": [],
            "reactions": [
                {"count": n, "me": False, "emoji": {"id": None, "name": name}} for name, n in (reactions or {}).items()
            ],
            "member": {
                "roles": [],
                "nick": nick,
                "joined_at": "2020-01-01T00:00:00+00:00",
                "deaf": False,
                "mute": False,
                "flags": 0,
            },
        }
        if reply_to:
            payload["message_reference"] = {
                "message_id": str(reply_to),
                "channel_id": str(self.channel_id),
                "guild_id": str(self.guild_id),
            }
            payload["type"] = 19
        return payload

    def add_history(
        self, count: int, start: datetime | None = None, bots_every: int = 0, joins_every: int = 0
    ) -> list[dict]:
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
                    snowflake(moment, i),
                    members[i % 7],
                    f"message {i}: the tavern talks about topic {i % 13} tonight",
                    nick=f"Nick{i % 7}" if i % 2 else None,
                    reactions={"👍": i % 4} if i % 4 else None,
                    reply_to=int(added[-1]["id"]) if i % 10 == 5 and added else None,
                )
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
        return _json(
            {
                "id": str(self.bot_id),
                "name": self.bot_name,
                "description": "",
                "icon": None,
                "bot_public": False,
                "bot_require_code_grant": False,
                "owner": user_payload(self.bot_id + 1, "owner"),
                "verify_key": "0" * 64,
                "flags": 0,
            }
        )

    async def _channel(self, request: web.Request) -> web.Response:
        await self._record(request)
        channel_id = int(request.match_info["channel_id"])
        if channel_id != self.channel_id:
            return _json({"message": "Unknown Channel", "code": 10003}, status=404)
        return _json(
            {
                "id": str(self.channel_id),
                "type": 0,
                "guild_id": str(self.guild_id),
                "name": "tavern",
                "position": 0,
                "permission_overwrites": self.channel_overwrites,
                "nsfw": False,
                "parent_id": None,
                "topic": None,
                "last_message_id": None,
                "rate_limit_per_user": 0,
            }
        )

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

    async def _post_message(self, request: web.Request) -> web.Response:
        await self._record(request)
        body = await request.json()
        channel_id = int(request.match_info["channel_id"])
        message_id = now_snowflake()
        self.posts.append(Post(channel_id, body, time.monotonic(), message_id))
        payload = self.message_payload(
            message_id,
            user_payload(self.bot_id, self.bot_name, bot=True),
            body.get("content") or "",
            moment=datetime.now(timezone.utc),
            channel_id=channel_id,
        )
        reference = body.get("message_reference") or {}
        if reference.get("message_id"):
            payload["message_reference"] = {
                "message_id": str(reference["message_id"]),
                "channel_id": str(channel_id),
                "guild_id": str(self.guild_id),
            }
            payload["type"] = 19
        self.history.append(payload)
        await self._dispatch("MESSAGE_CREATE", payload)
        return _json(payload)

    async def _edit_message(self, request: web.Request) -> web.Response:
        await self._record(request)
        body = await request.json()
        message_id = int(request.match_info["message_id"])
        payload = next((m for m in self.history if m["id"] == str(message_id)), None)
        if payload is None:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        self.edits.append(Edit(int(request.match_info["channel_id"]), message_id, body, time.monotonic()))
        if "content" in body:
            payload["content"] = body["content"] or ""
        payload["edited_timestamp"] = datetime.now(timezone.utc).isoformat()
        await self._dispatch("MESSAGE_UPDATE", payload)
        return _json(payload)

    async def _typing(self, request: web.Request) -> web.Response:
        await self._record(request)
        self.typing.append(time.monotonic())
        return web.Response(status=204)

    async def _react(self, request: web.Request) -> web.Response:
        await self._record(request)
        self.reactions.append((int(request.match_info["message_id"]), request.match_info["emoji"]))
        return web.Response(status=204)

    async def _get_message(self, request: web.Request) -> web.Response:
        await self._record(request)
        wanted = request.match_info["message_id"]
        found = next((m for m in self.history if m["id"] == wanted), None)
        return _json(found) if found else _json({"message": "Unknown Message", "code": 10008}, status=404)

    async def _open_dm(self, request: web.Request) -> web.Response:
        """A direct-message channel with a member (`user.send` opens one first)."""
        await self._record(request)
        body = await request.json()
        recipient = user_payload(int(body["recipient_id"]), f"user{body['recipient_id']}")
        return _json({"id": str(self.dm_channel_id), "type": 1, "recipients": [recipient], "last_message_id": None})

    def direct_messages(self) -> list[Post]:
        """What the bot sent by direct message."""
        return [p for p in self.posts if p.channel_id == self.dm_channel_id]

    async def _sync_commands(self, request: web.Request) -> web.Response:
        await self._record(request)
        body = await request.json()
        guild_id = request.match_info.get("guild_id")  # a guild's commands name it, as Discord's do
        self.commands = [
            {
                **c,
                "id": str(now_snowflake()),
                "application_id": str(self.bot_id),
                "version": "1",
                "type": c.get("type", 1),
                **({"guild_id": guild_id} if guild_id else {}),
            }
            for c in body
        ]
        return _json(self.commands)

    # --- interactions (slash commands) ---------------------------------------------------------

    def _member_permissions(self, author_id: int, roles: tuple[int, ...]) -> int:
        if author_id == self.owner_id:
            return ALL_PERMISSIONS
        return EVERYONE_PERMISSIONS | (MANAGE_GUILD if self.admin_role_id in roles else 0)

    def _partial_channel(self, channel_id: int, permissions: int) -> dict:
        """The `channel` of an interaction: the channel, with the member's permissions in it."""
        if channel_id in self.threads:
            return {**self.threads[channel_id], "permissions": str(permissions)}
        name, position = ("tavern", 0) if channel_id == self.channel_id else ("off-topic", 1)
        return {
            "id": str(channel_id),
            "type": 0,
            "guild_id": str(self.guild_id),
            "name": name,
            "position": position,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "rate_limit_per_user": 0,
            "last_message_id": None,
            "flags": 0,
            "permissions": str(permissions),
        }

    def invoke_command(
        self,
        command: str,
        options: dict | None = None,
        author_id: int = 1001,
        name: str = "alice",
        *,
        roles: tuple[int, ...] = (),
        channel_id: int | None = None,
        nick: str | None = None,
    ) -> int:
        """A member uses the slash command `/command` in a channel: INTERACTION_CREATE. Returns the interaction id.

        The command must have been synced by the bot; its id, and the type of each option (given by name), are
        those the bot synced, and a value outside an option's choices is refused, as Discord's client does.
        """
        synced = next((c for c in self.commands if c["name"] == command and c["type"] == 1), None)
        if synced is None:
            raise LookupError(f"/{command} was not synced; synced: {sorted(c['name'] for c in self.commands)}")
        declared = {o["name"]: o for o in synced.get("options", [])}
        given = []
        for key, value in (options or {}).items():
            option = declared.get(key)
            if option is None:
                raise ValueError(f"/{command} has no option {key!r}; it has {sorted(declared)}")
            if option.get("choices") and value not in [c["value"] for c in option["choices"]]:
                raise ValueError(f"{value!r} is not one of the choices of /{command} {key}: {option['choices']}")
            given.append({"name": key, "type": option["type"], "value": value})
        missing = sorted(o["name"] for o in declared.values() if o.get("required") and o["name"] not in (options or {}))
        if missing:
            raise ValueError(f"/{command} needs {missing}")
        interaction_id, token = now_snowflake(), f"interaction-token-{now_snowflake()}"
        channel_id = channel_id or self.channel_id
        permissions = self._member_permissions(author_id, roles)
        user = user_payload(author_id, name)
        data = {"id": synced["id"], "name": command, "type": 1, "options": given}
        if "guild_id" in synced:
            data["guild_id"] = synced["guild_id"]
        payload = {
            "id": str(interaction_id),
            "application_id": str(self.bot_id),
            "type": 2,
            "token": token,
            "version": 1,
            "guild_id": str(self.guild_id),
            "guild": {"id": str(self.guild_id), "locale": "en-US", "features": []},
            "channel_id": str(channel_id),
            "channel": self._partial_channel(channel_id, permissions),
            "member": {
                "user": user,
                "roles": [str(r) for r in roles],
                "nick": nick,
                "avatar": None,
                "banner": None,
                "joined_at": "2020-01-01T00:00:00+00:00",
                "premium_since": None,
                "deaf": False,
                "mute": False,
                "flags": 0,
                "pending": False,
                "permissions": str(permissions),
                "communication_disabled_until": None,
                "unusual_dm_activity_until": None,
            },
            "data": data,
            "app_permissions": str(EVERYONE_PERMISSIONS),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(self.guild_id)},
            "context": 0,
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        }
        self.interactions[interaction_id] = {
            "token": token,
            "channel_id": channel_id,
            "user": user,
            "command": command,
            "callback": None,
            "deferred_flags": 0,
            "original": None,
            "followups": 0,
        }
        self.call(self._dispatch("INTERACTION_CREATE", payload))
        return interaction_id

    def responses_to(self, interaction_id: int) -> list[InteractionResponse]:
        """Everything the bot answered to an interaction, the deferral included."""
        return [r for r in self.interaction_responses if r.interaction_id == interaction_id]

    def answers(self, interaction_id: int) -> list[InteractionResponse]:
        """What the member was shown in answer to an interaction: its messages and edits (not the "thinking")."""
        return [r for r in self.responses_to(interaction_id) if r.kind != "deferred"]

    @staticmethod
    async def _body(request: web.Request) -> dict:
        """A JSON body, or the `payload_json` of a multipart one (a message with files)."""
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            return json.loads(form.get("payload_json") or "{}")
        return await request.json() if request.can_read_body else {}

    def _interaction(self, interaction_id: int | None, token: str) -> tuple[int, dict] | None:
        """The interaction with this token (and id, when given): None for an unknown one."""
        for known, interaction in self.interactions.items():
            if interaction["token"] == token and interaction_id in (None, known):
                return known, interaction
        return None

    def _interaction_message(self, interaction_id: int, interaction: dict, content: str, flags: int) -> dict:
        """A message answering an interaction: from the bot, through the application's webhook."""
        payload = self.message_payload(
            now_snowflake(),
            user_payload(self.bot_id, self.bot_name, bot=True),
            content,
            moment=datetime.now(timezone.utc),
            channel_id=interaction["channel_id"],
        )
        del payload["member"]
        payload.update(
            type=20,
            flags=flags,
            webhook_id=str(self.bot_id),
            application_id=str(self.bot_id),
            interaction_metadata={
                "id": str(interaction_id),
                "type": 2,
                "user": interaction["user"],
                "authorizing_integration_owners": {"0": str(self.guild_id)},
                "name": interaction["command"],
            },
        )
        return payload

    async def _show(self, message: dict, created: bool) -> None:
        """A public answer appears in the channel, as any message does; an ephemeral one only to the member."""
        if message["flags"] & EPHEMERAL:
            return
        if created:
            self.history.append(message)
        await self._dispatch("MESSAGE_CREATE" if created else "MESSAGE_UPDATE", message)

    def _respond(self, interaction_id: int, kind: str, message: dict, body: dict) -> None:
        self.interaction_responses.append(
            InteractionResponse(interaction_id, kind, message["content"], message["flags"], body, time.monotonic())
        )

    async def _interaction_callback(self, request: web.Request) -> web.Response:
        await self._record(request)
        body = await self._body(request)
        found = self._interaction(int(request.match_info["interaction_id"]), request.match_info["token"])
        if found is None:
            return _json({"message": "Unknown interaction", "code": 10062}, status=404)
        interaction_id, interaction = found
        if interaction["callback"] is not None:
            return _json({"message": "Interaction has already been acknowledged.", "code": 40060}, status=400)
        kind = {4: "message", 5: "deferred"}.get(body.get("type"))
        if kind is None:  # 1 PONG, 6/7 for components, 8 autocomplete, 9 modal: not for this fake's commands
            return _json({"message": "Invalid Form Body", "code": 50035}, status=400)
        data = body.get("data") or {}
        flags = int(data.get("flags") or 0)
        if kind == "deferred":
            interaction["deferred_flags"] = flags & EPHEMERAL
            message = self._interaction_message(interaction_id, interaction, "", (flags & EPHEMERAL) | LOADING)
        else:
            message = self._interaction_message(interaction_id, interaction, data.get("content") or "", flags)
        interaction["callback"], interaction["original"] = body["type"], message
        self._respond(interaction_id, kind, message, body)
        await self._show(message, created=True)
        if request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        return _json(
            {
                "interaction": {
                    "id": str(interaction_id),
                    "type": 2,
                    "activity_instance_id": None,
                    "response_message_id": message["id"],
                    "response_message_loading": kind == "deferred",
                    "response_message_ephemeral": bool(message["flags"] & EPHEMERAL),
                },
                "resource": {"type": body["type"], "message": message},
            }
        )

    async def _followup(self, request: web.Request) -> web.Response:
        """A followup: the first after a deferral replaces the "thinking" message, and keeps its ephemerality."""
        await self._record(request)
        body = await self._body(request)
        found = self._interaction(None, request.match_info["token"])
        if found is None or int(request.match_info["application_id"]) != self.bot_id or found[1]["callback"] is None:
            return _json({"message": "Unknown Webhook", "code": 10015}, status=404)
        interaction_id, interaction = found
        flags = int(body.get("flags") or 0)
        original = interaction["original"]
        if original["flags"] & LOADING:
            original.update(
                content=body.get("content") or "",
                edited_timestamp=None,
                flags=interaction["deferred_flags"] | (flags & ~(EPHEMERAL | LOADING)),
            )
            message, created = original, False
        else:
            message, created = (
                self._interaction_message(interaction_id, interaction, body.get("content") or "", flags),
                True,
            )
        interaction["followups"] += 1
        self._respond(interaction_id, "followup", message, body)
        await self._show(message, created=created)
        if request.query.get("wait") not in ("1", "true", "True"):
            return web.Response(status=204)
        return _json(message)

    async def _original(self, request: web.Request) -> web.Response:
        """The original response: fetched (GET) or edited (PATCH)."""
        await self._record(request)
        found = self._interaction(None, request.match_info["token"])
        if found is None or int(request.match_info["application_id"]) != self.bot_id:
            return _json({"message": "Unknown Webhook", "code": 10015}, status=404)
        interaction_id, interaction = found
        original = interaction["original"]
        if original is None:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        if request.method == "PATCH":
            body = await self._body(request)
            if "content" in body:
                original["content"] = body["content"] or ""
            original["flags"] &= ~LOADING
            original["edited_timestamp"] = datetime.now(timezone.utc).isoformat()
            self._respond(interaction_id, "edit", original, body)
            await self._show(original, created=False)
        return _json(original)

    async def _gateway_info(self, request: web.Request) -> web.Response:
        await self._record(request)
        return _json(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1},
            }
        )

    # --- gateway -------------------------------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def guild_payload(self) -> dict:
        def role(role_id: int, name: str, permissions: int, position: int) -> dict:
            return {
                "id": str(role_id),
                "name": name,
                "permissions": str(permissions),
                "position": position,
                "color": 0,
                "hoist": False,
                "managed": False,
                "mentionable": False,
                "flags": 0,
            }

        def channel(channel_id: int, name: str, position: int) -> dict:
            return {
                "id": str(channel_id),
                "type": 0,
                "name": name,
                "position": position,
                "permission_overwrites": self.channel_overwrites if channel_id == self.channel_id else [],
                "nsfw": False,
                "parent_id": None,
                "topic": None,
                "rate_limit_per_user": 0,
                "guild_id": str(self.guild_id),
            }

        return {
            "id": str(self.guild_id),
            "name": "Pixel Tavern",
            "owner_id": str(self.owner_id),
            "icon": None,
            "roles": [
                role(self.guild_id, "@everyone", EVERYONE_PERMISSIONS, 0),
                role(self.admin_role_id, "Admins", MANAGE_GUILD, 1),
            ],
            "channels": [channel(self.channel_id, "tavern", 0), channel(self.other_channel_id, "off-topic", 1)],
            "members": [
                {
                    "user": user_payload(self.bot_id, self.bot_name, bot=True),
                    "roles": [],
                    "joined_at": "2020-01-01T00:00:00+00:00",
                    "deaf": False,
                    "mute": False,
                    "flags": 0,
                }
            ],
            "threads": list(self.threads.values()),
            "emojis": [],
            "stickers": [],
            "features": [],
            "member_count": 10,
            "large": False,
            "unavailable": False,
            "joined_at": "2020-01-01T00:00:00+00:00",
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "premium_tier": 0,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "system_channel_flags": 0,
            "preferred_locale": "en-US",
            "afk_timeout": 300,
            "afk_channel_id": None,
            "system_channel_id": None,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "splash": None,
            "discovery_splash": None,
            "premium_subscription_count": 0,
        }

    async def _send(self, ws, payload: dict) -> None:
        try:
            await ws.send_str(json.dumps(payload))
        except (ConnectionResetError, RuntimeError):
            pass

    async def _dispatch(self, event: str, data: dict) -> None:
        self._seq += 1
        frame = {"op": 0, "t": event, "s": self._seq, "d": data}
        self._events.append(frame)
        for ws in list(self._sockets):
            await self._send(ws, frame)

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await self._send(ws, {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None, "t": None})
        async for frame in ws:
            if frame.type != web.WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            op, data = message.get("op"), message.get("d")
            if op == 1:
                self.heartbeats.append(time.monotonic())
                await self._send(ws, {"op": 11, "d": None, "s": None, "t": None})
            elif op == 2:
                self.identifies += 1
                if data.get("token") != TOKEN:
                    await ws.close(code=4004, message=b"Authentication failed.")
                    break
                if int(data.get("intents", 0)) & MESSAGE_CONTENT_INTENT and not self.allow_message_content:
                    await ws.close(code=4014, message=b"Disallowed intent(s).")
                    break
                self._sockets.add(ws)
                ready = {
                    "v": 10,
                    "user": {
                        **user_payload(self.bot_id, self.bot_name, bot=True),
                        "verified": True,
                        "mfa_enabled": False,
                        "flags": 0,
                    },
                    "guilds": [{"id": str(self.guild_id), "unavailable": True}],
                    "session_id": "fake-session",
                    "resume_gateway_url": self.gateway_url,
                    "application": {"id": str(self.bot_id), "flags": 0},
                    "private_channels": [],
                    "relationships": [],
                }
                await self._dispatch("READY", ready)
                await self._dispatch("GUILD_CREATE", self.guild_payload())
            elif op == 6:
                self.resumes += 1
                self._sockets.add(ws)
                for event in [e for e in self._events if e["s"] > int(data.get("seq") or 0)]:
                    await self._send(ws, event)
                await self._dispatch("RESUMED", {})
        self._sockets.discard(ws)
        return ws

    def call(self, coroutine):
        """Run a coroutine on the fake's loop from another thread and wait for it."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def send_message(
        self,
        content: str,
        author_id: int = 1001,
        name: str = "alice",
        *,
        bot: bool = False,
        channel_id: int | None = None,
        reply_to: int | None = None,
        mention_bot: bool = False,
        roles: tuple[int, ...] = (),
        message_id: int | None = None,
        dm: bool = False,
        nick: str | None = None,
    ) -> int:
        """A member posts in a channel (or `dm`: a direct message): MESSAGE_CREATE. Returns the message id."""
        message_id = message_id or now_snowflake()
        author = user_payload(author_id, name, bot=bot)
        if mention_bot:
            content = f"<@{self.bot_id}> {content}"
        payload = self.message_payload(
            message_id, author, content, nick=nick, moment=datetime.now(timezone.utc), channel_id=channel_id
        )
        payload["member"]["roles"] = [str(r) for r in roles]
        if dm:
            del payload["guild_id"], payload["member"]
            payload["channel_id"] = str(channel_id or self.dm_channel_id)
        if f"<@{self.bot_id}>" in content:
            payload["mentions"] = [user_payload(self.bot_id, self.bot_name, bot=True)]
        if reply_to:
            referenced = next((m for m in self.history if m["id"] == str(reply_to)), None)
            payload["message_reference"] = {
                "message_id": str(reply_to),
                "channel_id": str(channel_id or self.channel_id),
                "guild_id": str(self.guild_id),
            }
            payload["referenced_message"] = referenced
            payload["type"] = 19
        self.history.append(payload)
        self.sent_at[message_id] = time.monotonic()
        self.call(self._dispatch("MESSAGE_CREATE", payload))
        return message_id

    def edit_message(self, message_id: int, content: str, mention_bot: bool = False) -> None:
        """A member edits a message: MESSAGE_UPDATE on the gateway."""
        payload = next(m for m in self.history if m["id"] == str(message_id))
        payload["content"] = f"<@{self.bot_id}> {content}" if mention_bot else content
        payload["edited_timestamp"] = datetime.now(timezone.utc).isoformat()
        if mention_bot:
            payload["mentions"] = [user_payload(self.bot_id, self.bot_name, bot=True)]
        self.call(self._dispatch("MESSAGE_UPDATE", payload))

    def post_unseen(
        self, content: str, author_id: int = 1001, name: str = "alice", channel_id: int | None = None
    ) -> int:
        """A message in the channel's history that no gateway event announced (posted while the bot was away)."""
        message_id = now_snowflake()
        payload = self.message_payload(
            message_id, user_payload(author_id, name), content, moment=datetime.now(timezone.utc), channel_id=channel_id
        )
        self.history.append(payload)
        return message_id

    def delete_message(self, message_id: int, announce: bool = True) -> None:
        """A member (or a moderator) deletes a message: MESSAGE_DELETE, unless `announce` is False (while away)."""
        payload = next(m for m in self.history if m["id"] == str(message_id))
        self.history.remove(payload)
        if announce:
            data = {"id": str(message_id), "channel_id": payload["channel_id"], "guild_id": str(self.guild_id)}
            self.call(self._dispatch("MESSAGE_DELETE", data))

    def delete_messages(self, message_ids: list[int], channel_id: int | None = None) -> None:
        """A moderator purges messages: one MESSAGE_DELETE_BULK."""
        wanted = {str(i) for i in message_ids}
        self.history[:] = [m for m in self.history if m["id"] not in wanted]
        data = {"ids": sorted(wanted), "channel_id": str(channel_id or self.channel_id), "guild_id": str(self.guild_id)}
        self.call(self._dispatch("MESSAGE_DELETE_BULK", data))

    def thread_payload(self, thread_id: int, name: str, private: bool) -> dict:
        return {
            "id": str(thread_id),
            "guild_id": str(self.guild_id),
            "parent_id": str(self.channel_id),
            "owner_id": "1001",
            "type": 12 if private else 11,
            "name": name,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "message_count": 0,
            "member_count": 1,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "locked": False,
                "invitable": False,
                "archive_timestamp": datetime.now(timezone.utc).isoformat(),
            },
        }

    def create_thread(self, name: str, private: bool = False) -> int:
        """A member opens a thread under the channel (type 12 when private): THREAD_CREATE. Returns its id."""
        thread_id = now_snowflake()
        self.threads[thread_id] = self.thread_payload(thread_id, name, private)
        self.call(self._dispatch("THREAD_CREATE", {**self.threads[thread_id], "newly_created": True}))
        return thread_id

    def delete_thread(self, thread_id: int) -> None:
        """A thread is deleted with its messages: THREAD_DELETE."""
        thread = self.threads.pop(thread_id)
        self.history[:] = [m for m in self.history if m["channel_id"] != str(thread_id)]
        data = {key: thread[key] for key in ("id", "guild_id", "parent_id", "type")}
        self.call(self._dispatch("THREAD_DELETE", data))

    def archive_thread(self, thread_id: int) -> None:
        """A thread is archived (THREAD_UPDATE): clients forget it, so a channel deletion no longer names it."""
        self.threads[thread_id]["thread_metadata"]["archived"] = True
        self.call(self._dispatch("THREAD_UPDATE", self.threads[thread_id]))

    def delete_channel(self) -> None:
        """The channel is deleted, its threads with it: one CHANNEL_DELETE (Discord sends none for the threads)."""
        threads = {str(t) for t, payload in self.threads.items() if payload["parent_id"] == str(self.channel_id)}
        self.threads = {t: payload for t, payload in self.threads.items() if str(t) not in threads}
        self.history[:] = [m for m in self.history if m["channel_id"] not in {str(self.channel_id), *threads}]
        data = {
            "id": str(self.channel_id),
            "type": 0,
            "name": "tavern",
            "position": 0,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "guild_id": str(self.guild_id),
        }
        self.call(self._dispatch("CHANNEL_DELETE", data))

    def redeliver(self, message_id: int) -> None:
        """Deliver the same MESSAGE_CREATE again (as a replay after a reconnect could)."""
        payload = next(m for m in self.history if m["id"] == str(message_id))
        self.call(self._dispatch("MESSAGE_CREATE", payload))

    def request_reconnect(self) -> None:
        """Op 7 RECONNECT: the client must reconnect and RESUME."""

        async def reconnect() -> None:
            for ws in list(self._sockets):
                self._sockets.discard(ws)
                await self._send(ws, {"op": 7, "d": None, "s": None, "t": None})

        self.call(reconnect())

    def replies_to(self, message_id: int) -> list[Post]:
        return [p for p in self.posts if p.reply_to == message_id]

    def edits_of(self, post_id: int) -> list[Edit]:
        return [e for e in self.edits if e.message_id == post_id]

    def shown(self, post: Post) -> str:
        """What a post says now: its last edit, or what was posted."""
        edits = self.edits_of(post.id)
        return edits[-1].content if edits else post.content

    def start(self) -> FakeDiscord:
        self._seq = 0
        self._events: list[dict] = []
        self._sockets: set = set()
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/api/v10/gateway", self._gateway_info)
        app.router.add_get("/api/v10/gateway/bot", self._gateway_info)
        app.router.add_post("/api/v10/channels/{channel_id}/messages", self._post_message)
        app.router.add_get("/api/v10/channels/{channel_id}/messages/{message_id}", self._get_message)
        app.router.add_patch("/api/v10/channels/{channel_id}/messages/{message_id}", self._edit_message)
        app.router.add_post("/api/v10/channels/{channel_id}/typing", self._typing)
        app.router.add_put("/api/v10/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", self._react)
        app.router.add_put("/api/v10/applications/{app_id}/guilds/{guild_id}/commands", self._sync_commands)
        app.router.add_put("/api/v10/applications/{app_id}/commands", self._sync_commands)
        app.router.add_post("/api/v10/interactions/{interaction_id}/{token}/callback", self._interaction_callback)
        app.router.add_post("/api/v10/webhooks/{application_id}/{token}", self._followup)
        app.router.add_get("/api/v10/webhooks/{application_id}/{token}/messages/@original", self._original)
        app.router.add_patch("/api/v10/webhooks/{application_id}/{token}/messages/@original", self._original)
        app.router.add_get("/api/v10/users/@me", self._me)
        app.router.add_post("/api/v10/users/@me/channels", self._open_dm)
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
