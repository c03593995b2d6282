"""`python -m app doctor` against the local fake Discord and a real llama.cpp server on 127.0.0.1."""

import pytest

from app.backfill import point_discord_at
from app.bot import point_gateway_at
from app.doctor import chroma_finding, discord_findings, model_finding
from config.settings import load_settings
from fakes.discord_server import TOKEN, FakeDiscord
from fakes.ports import free_port

SEND_MESSAGES, ADD_REACTIONS = 0x800, 0x40


@pytest.fixture
def fake():
    started = []

    def start(**options) -> FakeDiscord:
        started.append(FakeDiscord(**options).start())
        return started[-1]

    yield start
    for server in started:
        server.stop()
    point_discord_at("https://discord.com/api/v10")
    point_gateway_at("wss://gateway.discord.gg/")


def discord_settings(fake: FakeDiscord, tmp_path, **overrides):
    values = dict(
        DISCORD_BOT_TOKEN=TOKEN,
        DISCORD_GUILD_ID=fake.guild_id,
        DISCORD_CHANNEL_ID=fake.channel_id,
        DISCORD_API_BASE=fake.api_base,
        DISCORD_GATEWAY_URL=fake.gateway_url,
        DATA_DIR=tmp_path / "data",
    )
    return load_settings(**{**values, **overrides})


def lines(findings) -> list[str]:
    return [f.line() for f in findings]


def test_the_discord_side_of_a_good_deployment_passes(fake, tmp_path):
    server = fake()
    found = lines(discord_findings(discord_settings(server, tmp_path)))
    assert found[0].startswith("ok    token: accepted: logged in as Susu")
    assert found[1] == "ok    Message Content intent: on"
    assert found[2].startswith("ok    channel: the bot sees #tavern") and len(found) == 3


def test_a_missing_permission_a_disabled_intent_and_a_bad_token_each_get_their_own_line(fake, tmp_path):
    everyone = fake().guild_id  # the @everyone role's id is the server's
    denied = fake(channel_overwrites=[{"id": str(everyone), "type": 0, "allow": "0", "deny": str(SEND_MESSAGES)}])
    (*_, channel) = discord_findings(discord_settings(denied, tmp_path))
    assert channel.ok is False and "may not send messages" in channel.detail and "react" not in channel.detail

    no_reactions = fake(channel_overwrites=[{"id": str(everyone), "type": 0, "allow": "0", "deny": str(ADD_REACTIONS)}])
    (*_, channel) = discord_findings(discord_settings(no_reactions, tmp_path))
    assert channel.ok is False and "add reactions" in channel.detail and "send messages" not in channel.detail

    no_intent = fake(allow_message_content=False)
    token, intent = discord_findings(discord_settings(no_intent, tmp_path))
    assert token.ok and intent.ok is False and "turn on Message Content Intent" in intent.detail

    (token,) = discord_findings(discord_settings(fake(), tmp_path, DISCORD_BOT_TOKEN="not-the-token-at-all"))
    assert token.ok is False and "rejects DISCORD_BOT_TOKEN" in token.detail

    elsewhere = discord_findings(discord_settings(fake(), tmp_path, DISCORD_CHANNEL_ID=123))
    assert elsewhere[-1].ok is False and "channel 123 is not visible" in elsewhere[-1].detail


def test_a_dead_inference_server_and_a_dead_chroma_server_each_get_their_own_line(tmp_path):
    port = free_port()
    settings = load_settings(
        DATA_DIR=tmp_path,
        ENGINE="openai",
        OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1",
        CHROMA_HOST="127.0.0.1",
        CHROMA_PORT=port,
    )
    model = model_finding(settings)
    assert model.ok is False and "does not answer" in model.detail and str(port) in model.detail
    chroma = chroma_finding(settings)
    assert chroma.ok is False and f"127.0.0.1:{port} does not answer" in chroma.detail


@pytest.mark.slow
def test_doctor_passes_a_deployment_on_a_real_llama_cpp_server_and_fails_without_it(
    fake, tmp_path, monkeypatch, capsys
):
    import xllamacpp

    from app.__main__ import main
    from llm.model import packaged_gguf

    params = xllamacpp.CommonParams()
    params.model.path = str(packaged_gguf())
    params.n_ctx = 2048
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 2
    params.verbosity = -1
    llama = xllamacpp.Server(params)
    server = fake()
    env = dict(
        DISCORD_BOT_TOKEN=TOKEN,
        DISCORD_GUILD_ID=str(server.guild_id),
        DISCORD_CHANNEL_ID=str(server.channel_id),
        DISCORD_API_BASE=server.api_base,
        DISCORD_GATEWAY_URL=server.gateway_url,
        DATA_DIR=str(tmp_path / "data"),
        ENGINE="openai",
        OPENAI_BASE_URL=llama.listening_address + "/v1",
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        assert main(["doctor"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0] == "ok    settings: valid" and all(not line.startswith("FIX") for line in out), out
        assert any(line.startswith("ok    model: the server at http://127.0.0.1") and "serving" in line for line in out)
        assert any(line.startswith("ok    disk: ") for line in out)
    finally:
        del llama
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    assert main(["doctor"]) == 1  # the server is gone: one line says so, the others still pass
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if line.startswith("FIX")] == [
        next(line for line in out if line.startswith("FIX   model: the server at"))
    ]
    monkeypatch.setenv("TEMPERATURE", "warm")
    assert main(["doctor"]) == 1 and capsys.readouterr().out.startswith("FIX   settings: Invalid settings")


def test_the_index_line_says_whether_the_store_and_the_index_agree_and_how_to_mend_them(tmp_path):
    from datetime import datetime, timedelta, timezone

    from app.doctor import index_finding
    from app.storage import index_place, lock_data_dir
    from indexes.build import open_index
    from indexes.records import StoredMessage
    from indexes.store import MessageStore

    settings = load_settings(DATA_DIR=tmp_path / "data")
    assert index_finding(settings).ok is None  # no store yet: the first start builds it
    now = datetime(2026, 11, 24, tzinfo=timezone.utc)
    store = MessageStore(settings.store_path)
    store.upsert(
        [
            StoredMessage(
                id=i,
                channel_id=1,
                author_id=7,
                author_name="user7",
                timestamp=now - timedelta(minutes=i),
                content=f"message number {i} about the pinball league",
            )
            for i in range(1, 6)
        ]
    )
    index = open_index(index_place(settings), store)
    index.rebuild()
    assert index_finding(settings).ok is True and "agrees with the store (5 messages" in index_finding(settings).detail
    with store.transaction() as db:  # a row gone behind the index's back
        db.execute("DELETE FROM messages WHERE id = 3")
    store.index_log.advance(index.active_name, store.index_log.last_change())
    found = index_finding(settings)
    assert found.ok is False and "1 orphaned" in found.detail and "index check --repair" in found.detail
    lock = lock_data_dir(settings, "the bot")  # a running bot holds the embedded index: skipped, and said why
    try:
        assert index_finding(settings).ok is None and "the bot holds" in index_finding(settings).detail
    finally:
        lock.release()
        store.close()
