"""`python -m app doctor`: checks a deployment and says, per line, what is fine and what to fix.

Settings; the Discord side, through the real discord.py client logging in as the bot does (the token
is accepted, the Message Content intent is on, the bot sees `DISCORD_CHANNEL_ID` and may read its
history, send, reply and react there, and send in its threads when it answers in them); the model
(the engine loads, or the inference server answers and names the model it serves); the adapter and
the prompt files it was trained with; the store and the index agree; the Chroma server answers; the
disk has room. Exit 0 only when every check passes. Nothing is changed.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import discord

from config.settings import Settings

logger = logging.getLogger(__name__)

MIN_FREE_BYTES = 1 << 30  # 1 GiB under DATA_DIR: the store, the index and rebuilds grow
DISCORD_TIMEOUT_S = 30.0
# What the bot does in its channel, and the permission each needs (the names of discord.Permissions).
NEEDED = (
    ("view_channel", "see the channel"),
    ("read_message_history", "read its history (and reply to a message)"),
    ("send_messages", "send messages"),
    ("add_reactions", "add reactions (the cooldown's hourglass)"),
)
IN_THREADS = ("send_messages_in_threads", "send messages in threads (REPLY_IN_THREADS)")


@dataclass(frozen=True)
class Finding:
    ok: bool | None  # None: skipped, with why
    what: str
    detail: str

    def line(self) -> str:
        mark = {True: "ok  ", False: "FIX ", None: "skip"}[self.ok]
        return f"{mark}  {self.what}: {self.detail}"


def discord_findings(settings: Settings) -> list[Finding]:
    """Log in as the bot (REST, then the gateway with the bot's intents) and look at the channel."""
    return asyncio.run(_discord(settings))


async def _discord(settings: Settings) -> list[Finding]:
    from app.backfill import point_discord_at
    from app.bot import point_gateway_at

    point_discord_at(settings.DISCORD_API_BASE)
    point_gateway_at(settings.DISCORD_GATEWAY_URL)
    intents = discord.Intents.default()
    intents.message_content = True
    intents.typing = intents.presences = intents.members = False
    client = discord.Client(intents=intents)
    ready = asyncio.Event()
    client.event(_on_ready(ready))
    findings = []
    try:
        try:
            await asyncio.wait_for(client.login(settings.DISCORD_BOT_TOKEN.get_secret_value()), DISCORD_TIMEOUT_S)
        except discord.LoginFailure:
            return [
                Finding(False, "token", "Discord rejects DISCORD_BOT_TOKEN: reset it in the Developer Portal (Bot)")
            ]
        except (discord.HTTPException, OSError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            why = str(exc) or type(exc).__name__
            return [Finding(False, "token", f"cannot reach Discord at {settings.DISCORD_API_BASE}: {why}")]
        findings.append(Finding(True, "token", f"accepted: logged in as {client.user}"))
        connection = asyncio.create_task(client.connect(reconnect=False))
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait({connection, waiting}, timeout=DISCORD_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        if not ready.is_set():
            waiting.cancel()
            error = connection.exception() if connection.done() else None
            if isinstance(error, discord.PrivilegedIntentsRequired) or getattr(error, "code", None) == 4014:
                findings.append(
                    Finding(
                        False,
                        "Message Content intent",
                        "off: turn on Message Content Intent in "
                        "the Developer Portal (Bot > Privileged Gateway Intents)",
                    )
                )
            else:
                findings.append(
                    Finding(False, "gateway", f"no connection to Discord's gateway: {error or 'timed out'}")
                )
            connection.cancel()
            return findings
        findings.append(Finding(True, "Message Content intent", "on"))
        findings += _channel_findings(client, settings)
        return findings
    finally:
        await client.close()


def _on_ready(ready: asyncio.Event) -> Callable:
    async def on_ready() -> None:
        ready.set()

    return on_ready


def _channel_findings(client: discord.Client, settings: Settings) -> list[Finding]:
    channel_id = settings.DISCORD_CHANNEL_ID
    channel = client.get_channel(channel_id)
    if settings.DISCORD_GUILD_ID and client.get_guild(settings.DISCORD_GUILD_ID) is None:
        return [
            Finding(
                False,
                "server",
                f"the bot is not in server {settings.DISCORD_GUILD_ID}: invite it "
                "(Developer Portal > OAuth2 > URL Generator, scope bot)",
            )
        ]
    if channel is None or not isinstance(channel, discord.abc.GuildChannel):
        return [
            Finding(
                False,
                "channel",
                f"channel {channel_id} is not visible to the bot: check "
                "DISCORD_CHANNEL_ID and that the bot may View Channel there",
            )
        ]
    permissions = channel.permissions_for(channel.guild.me)
    needed = [*NEEDED, IN_THREADS] if settings.REPLY_IN_THREADS else list(NEEDED)
    missing = [why for name, why in needed if not getattr(permissions, name)]
    where = f"#{channel.name} ({channel_id})"
    if missing:
        return [
            Finding(
                False,
                "channel",
                f"in {where} the bot may not "
                + "; nor ".join(missing)
                + ": give its role these permissions there (channel settings > Permissions)",
            )
        ]
    return [Finding(True, "channel", f"the bot sees {where} and may read, send, reply and react there")]


def model_finding(settings: Settings) -> Finding:
    """The engine loads the model (and adapter), or the inference server answers with the model it serves."""
    from llm.model import ModelLoadError

    if settings.ENGINE == "openai" or (settings.ENGINE == "auto" and settings.OPENAI_BASE_URL):
        return _server_finding(settings)
    from app.runtime import default_model_factory

    try:
        bundle = default_model_factory(settings)
    except ModelLoadError as exc:
        return Finding(False, "model", str(exc))
    except Exception as exc:  # out of memory, a broken adapter: what the bot would meet at start
        return Finding(False, "model", f"cannot be loaded: {type(exc).__name__}: {exc}")
    try:
        return Finding(True, "model", f"loads: {bundle.describe()}")
    finally:
        bundle.close()


def _server_finding(settings: Settings) -> Finding:
    import openai

    if not settings.OPENAI_BASE_URL:
        return Finding(False, "model", "ENGINE=openai needs OPENAI_BASE_URL (the server's /v1 URL)")
    key = settings.OPENAI_API_KEY.get_secret_value() if settings.OPENAI_API_KEY else "not-needed"
    client = openai.OpenAI(base_url=settings.OPENAI_BASE_URL, api_key=key, timeout=10.0, max_retries=0)
    try:
        served = [m.id for m in client.models.list()]
    except openai.AuthenticationError:
        return Finding(False, "model", f"the server at {settings.OPENAI_BASE_URL} refuses OPENAI_API_KEY")
    except openai.APIError as exc:
        return Finding(False, "model", f"the server at {settings.OPENAI_BASE_URL} does not answer: {exc}")
    wanted = settings.OPENAI_ADAPTER or settings.OPENAI_MODEL
    if wanted and wanted not in served:
        return Finding(False, "model", f"the server does not serve {wanted!r} (it serves {', '.join(served)})")
    return Finding(True, "model", f"the server at {settings.OPENAI_BASE_URL} answers, serving {', '.join(served)}")


def adapter_finding(settings: Settings) -> Finding:
    from app.runtime import adapter_prompt_changes
    from llm.model import ADAPTER_META_FILE

    if not settings.ADAPTER_PATH:
        return Finding(None, "adapter", "none configured (ADAPTER_PATH)")
    if not (settings.ADAPTER_PATH / ADAPTER_META_FILE).is_file():
        return Finding(
            None, "adapter", f"{settings.ADAPTER_PATH} records no prompt files to compare (not trained here)"
        )
    changed = adapter_prompt_changes(settings)
    if changed:
        return Finding(
            False,
            "adapter",
            f"{settings.ADAPTER_PATH} was trained with other prompt files (changed: "
            f"{', '.join(changed)}): train it again (python -m app train)",
        )
    return Finding(True, "adapter", f"{settings.ADAPTER_PATH} matches the prompt files")


def index_finding(settings: Settings) -> Finding:
    from app.storage import index_place, lock_data_dir
    from indexes.build import open_index
    from indexes.lock import DataDirBusy
    from indexes.store import MessageStore

    if not settings.store_path.is_file():
        return Finding(None, "index", f"no store yet at {settings.store_path} (the first start builds it)")
    if settings.CHROMA_HOST and (problem := _chroma_problem(settings)):
        return Finding(None, "index", f"not checked: the Chroma server does not answer ({problem})")
    try:
        lock = lock_data_dir(settings, "`python -m app doctor`")
    except DataDirBusy:
        return Finding(None, "index", "the bot holds the embedded index (stop it to check, or use CHROMA_HOST)")
    store = None
    try:
        store = MessageStore(settings.store_path)
        found = open_index(index_place(settings), store).check()
    except Exception as exc:  # an unreadable store or index is what this line is for
        return Finding(False, "index", f"cannot be read: {exc}: python -m app index rebuild")
    finally:
        if store is not None:
            store.close()
        if lock is not None:
            lock.release()
    if not found.agrees:
        return Finding(
            False,
            "index",
            f"{len(found.missing)} missing, {len(found.orphaned)} orphaned, "
            f"{len(found.stale)} stale: python -m app index check --repair",
        )
    return Finding(True, "index", f"agrees with the store ({found.indexed:,} messages, {found.pending:,} pending)")


def _chroma_problem(settings: Settings, timeout: float = 5.0) -> str | None:
    """Why the Chroma server does not answer its heartbeat within `timeout` seconds, or None."""
    import urllib.request

    url = f"http://{settings.CHROMA_HOST}:{settings.CHROMA_PORT}/api/v2/heartbeat"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return None
    except (OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__


def chroma_finding(settings: Settings) -> Finding:
    if not settings.CHROMA_HOST:
        return Finding(None, "Chroma server", "none (the index is embedded under DATA_DIR)")
    where = f"{settings.CHROMA_HOST}:{settings.CHROMA_PORT}"
    if problem := _chroma_problem(settings):
        return Finding(False, "Chroma server", f"{where} does not answer: {problem}")
    return Finding(True, "Chroma server", f"{where} answers")


def disk_finding(settings: Settings) -> Finding:
    folder = settings.DATA_DIR.resolve()
    while not folder.exists():  # not made yet: the disk it will be made on
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        return Finding(False, "disk", f"{free / 1e9:.2f} GB free under {settings.DATA_DIR}: free at least 1 GB")
    return Finding(True, "disk", f"{free / 1e9:.1f} GB free under {settings.DATA_DIR}")


def doctor(settings: Settings, say: Callable[[str], None] = print) -> int:
    """Every check, one line each as it finishes; 0 when all passed (skips pass), else 1."""
    failed = False
    checks: list[Callable] = [discord_findings] if settings.DISCORD_BOT_TOKEN else []
    if not settings.DISCORD_BOT_TOKEN:
        say(Finding(False, "token", "DISCORD_BOT_TOKEN is not set (see .env.example)").line())
        failed = True
    for check in [*checks, model_finding, adapter_finding, chroma_finding, index_finding, disk_finding]:
        try:
            found = check(settings)
        except Exception as exc:  # a check that breaks is a line too; the others still run
            name = check.__name__.removesuffix("_findings").removesuffix("_finding")
            found = Finding(False, name, f"the check failed: {type(exc).__name__}: {exc}")
        for finding in found if isinstance(found, list) else [found]:
            say(finding.line())
            failed |= finding.ok is False
    return 1 if failed else 0
