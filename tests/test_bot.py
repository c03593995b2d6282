"""The bot through the real discord.py client, against the local fake Discord (REST + gateway)."""

import asyncio
import time
from pathlib import Path

import pytest

from app.backfill import point_discord_at
from app.bot import COOLDOWN_REACTION, explain_startup_error, point_gateway_at
from app.split import split_message
from config.settings import load_settings
from fakes.discord_server import TOKEN, FakeDiscord
from fakes.llm import ScriptedLLM
from tests.harness import ADMIN, ALICE, BOB, until

REPLY = ScriptedLLM().responses[0]


async def test_a_mention_gets_a_reply_to_that_message_pinging_only_its_author(start_bot):
    h = await start_bot()
    asked = await h.say("what's the lore about the cursed cartridge?", mention_bot=True)
    (post,) = await h.answered(asked)
    assert post.content == REPLY
    assert post.body["allowed_mentions"] == {"parse": [], "users": [ALICE], "replied_user": True}
    assert h.fake.typing  # the typing indicator was shown
    stored = [m.id for m in h.bot.runtime.store.iter_messages()]
    assert asked in stored  # live ingestion


async def test_replying_to_the_bot_is_a_trigger_and_plain_messages_are_only_remembered(start_bot):
    h = await start_bot()
    first = await h.say("hello there", mention_bot=True)
    (bot_post,) = await h.answered(first)
    plain = await h.say("just chatting with bob, no need to answer")
    follow_up = await h.say("and what happened after that?", author=BOB, reply_to=bot_post.id)
    await h.answered(follow_up)  # asked after `plain`: the bot has handled `plain` by now
    assert h.fake.replies_to(plain) == [] and len(h.fake.posts) == 2
    assert plain in {m.id for m in h.bot.runtime.store.iter_messages()}
    memory = h.bot.runtime.memory.snapshot(h.fake.channel_id).messages
    assert any("just chatting" in m.content for m in memory)


async def test_other_channels_other_bots_and_itself_are_ignored(start_bot):
    llm = ScriptedLLM(responses=["<@900000000000000003> hey Susu, answer yourself!"])
    h = await start_bot(llm)
    elsewhere = await h.say("hi from off-topic", mention_bot=True, channel_id=h.fake.other_channel_id)
    robot = await h.say("beep boop", author=999, bot=True, mention_bot=True)
    asked = await h.say("say something", mention_bot=True)
    await h.answered(asked)
    await h.sentinel()  # sent after its own reply came back on the gateway
    assert len(h.fake.posts) == 2  # its own message mentioning itself did not start a loop
    assert not h.fake.replies_to(elsewhere) and not h.fake.replies_to(robot)
    assert llm.calls == 2


async def test_long_replies_are_split_at_2000_characters(start_bot):
    long_reply = " ".join(f"meow{i}" for i in range(500))  # about 3,400 characters
    h = await start_bot(ScriptedLLM(responses=[long_reply]), REPLY_MAX_CHARS=4000)
    asked = await h.say("tell me everything", mention_bot=True)
    await h.delivered()
    posts = h.fake.posts
    assert len(posts) == 2 and posts[0].reply_to == asked and posts[1].reply_to is None
    shown = [h.fake.shown(p) for p in posts]  # the first one was streamed: its last edit is what members see
    assert all(len(text) <= 2000 for text in shown)
    assert " ".join(shown).split() == long_reply.split()  # no word broken or lost


def test_a_reply_loses_only_the_lines_quoting_words_that_are_gone():
    from app.delivery import without_quotes

    reply = 'Mrrp, the address is known.\nAs alice put it: "I live at 42 Quillmoor Lane, come by"\nAnything else?'
    gone = ["I live at 42 Quillmoor Lane, come by any time"]
    assert without_quotes(reply, gone) == "Mrrp, the address is known.\nAnything else?"
    assert without_quotes(reply.upper(), gone).count("\n") == 1  # case and punctuation do not hide a quote
    assert without_quotes(reply, ["ok"]) == reply  # too short to tell a quote from ordinary words
    assert without_quotes(reply, ["an address is never known here"]) == reply  # no three words in a row
    assert without_quotes("it is a fine day", ["yes it is a bit late"]) == "it is a fine day"  # nothing telling
    edited = ["I live at 42 Quillmoor Lane, come by tomorrow instead"]  # what is still said is no quote of what went
    assert without_quotes(reply, gone, now=edited) == reply
    assert without_quotes('As alice put it: "I live at 42 Quillmoor Lane, come by"', gone) == ""
    assert without_quotes("bob's number: 555-0199", ["my number is 555-0199"]) == ""  # a long number on its own
    thanks = "mrrp! thank you so much for visiting"
    assert without_quotes(thanks, ["thank you so much for the help"]) == thanks  # common words are no quote


def test_split_keeps_code_blocks_closed_and_words_whole():
    text = "intro " * 300 + "\n```python\n" + "\n".join(f"x_{i} = {i}" for i in range(400)) + "\n```\nthe end"
    chunks = split_message(text)
    assert all(len(c) <= 2000 for c in chunks) and len(chunks) >= 3
    for chunk in chunks:
        assert chunk.count("```") % 2 == 0  # every chunk opens and closes its code block
    assert chunks[1].lstrip().startswith(("intro", "```python")) and chunks[2].startswith("```python")
    words = " ".join(chunks).replace("```python", " ").replace("```", " ").split()
    assert words == text.replace("```python", " ").replace("```", " ").split()


async def test_model_output_cannot_ping_everyone_or_roles(start_bot):
    h = await start_bot(ScriptedLLM(responses=["@everyone @here <@&900000000000000006> the tavern is on fire!"]))
    asked = await h.say("anything new?", mention_bot=True)
    (post,) = await h.answered(asked)
    assert "@everyone" not in post.content and "<@&" not in post.content


async def test_cooldown_gets_a_reaction_instead_of_silence(start_bot):
    h = await start_bot(USER_COOLDOWN_SECONDS=60)
    first = await h.say("first question", mention_bot=True)
    second = await h.say("second question right away", mention_bot=True)
    await h.answered(first)
    await until(lambda: h.fake.reactions, what="a reaction")
    assert h.fake.reactions == [(second, COOLDOWN_REACTION)] and not h.fake.replies_to(second)


async def test_a_streamed_reply_is_posted_at_its_first_sentence_then_edited_to_the_final_text(start_bot):
    text = "Mrrp! the cursed cartridge hums at night. kiwi says it saves itself at 3:33. nobody knows why, traveler."
    h = await start_bot(ScriptedLLM(responses=[text], piece_delay=0.06), STREAM_EDIT_SECONDS=0.25)
    asked = await h.say("tell me about the cartridge", mention_bot=True)
    await h.delivered()
    (post,) = h.fake.replies_to(asked)
    edits = h.fake.edits_of(post.id)
    assert post.content == "Mrrp!"  # posted as soon as the first sentence was there
    assert edits and h.fake.shown(post) == text and len(h.fake.posts) == 1
    moments = [post.at] + [e.at for e in edits[:-1]]
    assert all(b - a >= 0.24 for a, b in zip(moments, moments[1:]))  # growing edits are paced
    assert all(e.body["allowed_mentions"] == {"parse": [], "users": [ALICE], "replied_user": True} for e in edits)
    assert h.bot.stats.first_words and h.bot.stats.first_words[0] < h.bot.stats.latencies[0]


async def test_no_post_or_edit_ever_shows_a_ping_or_another_members_line(start_bot):
    text = (
        "mrrp! calling @everyone now. and <@&900000000000000006> too! the tavern is loud tonight.\n"
        "user1002: I quit\nmore"
    )
    h = await start_bot(ScriptedLLM(responses=[text], piece_delay=0.05), STREAM_EDIT_SECONDS=0.2)
    await h.say("the tavern is quiet today", author=BOB)
    asked = await h.say("make some noise", mention_bot=True)
    await h.delivered()
    (post,) = h.fake.replies_to(asked)
    seen = [post.content, *(e.content for e in h.fake.edits_of(post.id))]
    assert len(seen) >= 2
    for content in seen:  # not even for one edit
        assert "@everyone" not in content and "<@&" not in content and "user1002:" not in content
    assert h.fake.shown(post) == "mrrp! calling @\u200beveryone now. and too! the tavern is loud tonight."


async def test_streaming_can_be_turned_off(start_bot):
    text = "Mrrp! one sentence. then another one, traveler."
    h = await start_bot(ScriptedLLM(responses=[text], piece_delay=0.05), STREAM_REPLIES=False)
    asked = await h.say("hello", mention_bot=True)
    await h.delivered()
    (post,) = h.fake.replies_to(asked)
    assert post.content == text and not h.fake.edits


async def test_the_cooldown_counts_from_the_delivered_reply_and_a_pending_member_gets_a_reaction(start_bot):
    h = await start_bot(ScriptedLLM(delay=1.0), USER_COOLDOWN_SECONDS=2)
    first = await h.say("first question", mention_bot=True)
    impatient = await h.say("hello??", mention_bot=True)  # while the first reply is still being made
    await h.delivered()
    right_after = await h.say("thanks! and one more thing", mention_bot=True)  # within the cooldown after delivery
    await until(lambda: len(h.fake.reactions) == 2, what="two reactions")
    await asyncio.sleep(2.1)  # the cooldown passes, counted from the delivered reply
    later = await h.say("and now?", mention_bot=True)
    await h.answered(later)
    assert h.fake.reactions == [(impatient, COOLDOWN_REACTION), (right_after, COOLDOWN_REACTION)]
    assert (
        len(h.fake.replies_to(first)) == 1 and not h.fake.replies_to(impatient) and not h.fake.replies_to(right_after)
    )


async def test_a_full_queue_gets_the_busy_line(start_bot):
    h = await start_bot(ScriptedLLM(delay=0.6), REPLY_QUEUE_LIMIT=2)
    asked = [await h.say(f"question {i}", author=2000 + i, mention_bot=True) for i in range(6)]
    for message_id in asked:
        await h.answered(message_id, timeout=30)
    busy = [p for p in h.fake.posts if p.content in h.bot.runtime.persona.busy_lines or "busy" in p.content.lower()]
    assert busy and h.bot.stats.busy == len(busy)
    answered = [p for p in h.fake.posts if p.content == REPLY]
    assert len(answered) + len(busy) == 6
    order = [p.reply_to for p in answered]
    assert order == sorted(order)  # replies in the order they were asked


async def test_a_burst_of_50_mentions_in_10_seconds(start_bot):
    h = await start_bot(ScriptedLLM(delay=0.05), USER_COOLDOWN_SECONDS=2, REPLY_QUEUE_LIMIT=5)
    asked = []
    for i in range(50):
        asked.append(await h.say(f"burst {i}", author=3000 + i % 10, mention_bot=True))
        await asyncio.sleep(0.2)

    def settled():
        reacted = {m for m, _ in h.fake.reactions}
        return all(h.fake.replies_to(m) or m in reacted for m in asked)

    await until(settled, timeout=60, what="every burst message answered or declined")
    reacted = {m for m, _ in h.fake.reactions}
    assert all(len(h.fake.replies_to(m)) + (m in reacted) == 1 for m in asked)  # exactly one answer each
    assert not h.bot.is_closed()
    after = await h.say("still there?", author=4242, mention_bot=True)
    await h.answered(after)


async def test_generation_never_blocks_the_heartbeat(start_bot):
    h = await start_bot(ScriptedLLM(delay=2.5), fake=FakeDiscord(heartbeat_interval_ms=250))
    asked = await h.say("think hard about this", mention_bot=True)
    started = time.monotonic()
    await h.answered(asked)
    during = [t for t in h.fake.heartbeats if started < t < started + 2.4]
    assert len(during) >= 4  # about one every 0.25 s while the model was busy


async def test_a_generation_error_sends_the_fallback_line(start_bot):
    h = await start_bot(ScriptedLLM(error="CUDA out of memory"))
    asked = await h.say("are you there?", mention_bot=True)
    (post,) = await h.answered(asked)
    assert post.content in [h.bot.runtime.persona.render(line) for line in h.bot.runtime.persona.fallback_lines]

    async def broken(*args, **kwargs):
        raise ValueError("broken chain")
        yield  # an async generator, like Runtime.astream

    h.bot.runtime.astream = broken
    again = await h.say("and now?", mention_bot=True)
    (post,) = await h.answered(again)
    assert post.content == h.bot.runtime.persona.fallback()


async def test_reconnect_resumes_without_duplicate_replies(start_bot):
    h = await start_bot()
    asked = await h.say("before the reconnect", mention_bot=True)
    await h.answered(asked)
    await asyncio.to_thread(h.fake.request_reconnect)
    await until(lambda: h.fake.resumes == 1, what="a RESUME")
    await asyncio.to_thread(h.fake.redeliver, asked)
    after = await h.say("after the reconnect", mention_bot=True)
    await h.answered(after)  # delivered after the replay: the replay has been handled
    assert len(h.fake.replies_to(asked)) == 1 and h.fake.identifies == 1


async def test_a_message_edited_into_a_mention_is_not_answered(start_bot):
    h = await start_bot()
    plain = await h.say("nothing to see here")
    await asyncio.to_thread(h.fake.edit_message, plain, "actually answer me", True)
    sentinel = await h.sentinel()
    assert [p.reply_to for p in h.fake.posts] == [sentinel]
    await until(
        lambda: any(m.id == plain and "actually answer me" in m.content for m in h.bot.runtime.store.iter_messages()),
        what="the edit in the store",
    )


async def test_admin_commands_and_refusals(start_bot):
    h = await start_bot()
    refused = await h.say("!stats", author=BOB)
    (post,) = await h.answered(refused)
    assert "Only server admins" in post.content
    stats = await h.say("!stats", author=ADMIN, roles=(h.fake.admin_role_id,))
    (post,) = await h.answered(stats)
    assert (
        "uptime" in post.content and "P95" in post.content and "tokens/s" in post.content and "scripted" in post.content
    )
    await h.answered(await h.say("remember this", mention_bot=True))
    assert h.bot.runtime.memory.snapshot(h.fake.channel_id).messages
    cleared = await h.say("!clearstm", author=ADMIN, roles=(h.fake.admin_role_id,))
    await h.answered(cleared)
    assert not h.bot.runtime.memory.snapshot(h.fake.channel_id).messages
    reload = await h.say("!reload", author=ADMIN, roles=(h.fake.admin_role_id,))
    (post,) = await h.answered(reload)
    assert post.content.startswith("Reloaded")
    asked = await h.say("who are you now?", mention_bot=True)
    (post,) = await h.answered(asked)
    assert post.content == "reloaded"  # the new model answers, without a restart
    assert {c["name"] for c in h.fake.commands} >= {"stats", "reload", "clearstm", "forgetme"}  # also slash commands


async def test_forgetme_removes_a_member_and_stops_collecting(start_bot):
    h = await start_bot()
    await h.say("my first message in the tavern", author=BOB)
    await h.say("my second message in the tavern", author=BOB)
    await until(lambda: sum(m.author_id == BOB for m in h.bot.runtime.store.iter_messages()) == 2)
    forget = await h.say("!forgetme", author=BOB)
    (post,) = await h.answered(forget)
    assert "2 of your messages were removed" in post.content
    await h.say("a message after opting out", author=BOB)
    sentinel = await h.sentinel()
    await until(lambda: any(m.id == sentinel for m in h.bot.runtime.store.iter_messages()), what="the sentinel stored")
    assert not any(m.author_id == BOB for m in h.bot.runtime.store.iter_messages())
    assert BOB in h.bot.runtime.store.opted_out()
    assert not any(
        m.author_id == BOB for m in h.bot.runtime.memory.snapshot(h.fake.channel_id).messages
    )  # nor remembered


async def test_startup_errors_say_what_to_fix(tmp_path):
    import discord

    fake = FakeDiscord(allow_message_content=False).start()
    point_discord_at(fake.api_base)
    point_gateway_at(fake.gateway_url)
    try:
        for token, expected in (("wrong-token", "Reset Token"), (TOKEN, "MESSAGE CONTENT INTENT")):
            client = discord.Client(intents=discord.Intents(guilds=True, guild_messages=True, message_content=True))
            with pytest.raises(Exception) as error:
                async with client:
                    await asyncio.wait_for(client.start(token), 20)
            assert expected in (explain_startup_error(error.value) or ""), error.value
    finally:
        fake.stop()
        point_discord_at("https://discord.com/api/v10")
        point_gateway_at("wss://gateway.discord.gg/")


def test_missing_bot_settings_are_named():
    from app.bot import check_bot_settings
    from config.settings import SettingsError

    with pytest.raises(SettingsError) as error:
        check_bot_settings(load_settings(DISCORD_BOT_TOKEN=None, DISCORD_GUILD_ID=None, DISCORD_CHANNEL_ID=None))
    for name in ("DISCORD_BOT_TOKEN", "DISCORD_GUILD_ID", "DISCORD_CHANNEL_ID", "Reset Token", "Copy Channel ID"):
        assert name in str(error.value)


async def test_direct_messages_are_ignored_unless_enabled(start_bot):
    h = await start_bot()
    ignored = await h.say("psst, a secret for you", dm=True)
    sentinel = await h.sentinel()
    await until(lambda: any(m.id == sentinel for m in h.bot.runtime.store.iter_messages()), what="the sentinel stored")
    assert not h.fake.replies_to(ignored) and not any(m.id == ignored for m in h.bot.runtime.store.iter_messages())


async def test_direct_messages_when_enabled_are_answered_but_never_stored(start_bot):
    h = await start_bot(ALLOW_DMS=True)
    asked = await h.say("psst, what is the tavern's secret?", dm=True)
    (post,) = await h.answered(asked)
    assert post.channel_id == h.fake.dm_channel_id
    assert not any(m.id == asked for m in h.bot.runtime.store.iter_messages())


async def test_an_exception_in_a_command_gives_a_short_message_and_a_logged_traceback(start_bot, caplog):
    h = await start_bot()

    def broken(channel_id):
        raise OSError("disk on fire")

    h.bot.runtime.memory.clear = broken
    asked = await h.say("!clearstm", author=ADMIN, roles=(h.fake.admin_role_id,))
    (post,) = await h.answered(asked)
    assert post.content == "That did not work; the details are in the bot's log."
    record = next(r for r in caplog.records if "command clearstm failed" in r.getMessage())
    assert record.exc_info and "disk on fire" in str(record.exc_info[1])
    again = await h.say("still alive?", mention_bot=True)
    await h.answered(again)


@pytest.mark.slow
async def test_train_runs_in_a_separate_process_and_swaps_the_adapter_in(start_bot, tmp_path):
    from datetime import datetime, timedelta, timezone

    from indexes.records import StoredMessage
    from indexes.store import MessageStore

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        "name: tiny\nbase_model: smollm2-135m-instruct\nmax_steps: 2\nper_device_batch_size: 2\nmax_length: 256\n"
        "lora: {r: 4, alpha: 8, dropout: 0.0, target_modules: [q_proj, v_proj]}\nsave_steps: 100\neval_steps: 100\n"
    )
    h = await start_bot(
        TRAIN_RECIPE=recipe,
        TRAIN_AUTO_RELOAD=True,
        ADAPTERS_DIR=tmp_path / "adapters",
        MODEL_CACHE_DIR=Path(__file__).resolve().parent.parent / "data" / "models",
    )
    admin = {"author": ADMIN, "roles": (h.fake.admin_role_id,)}
    failed = await h.say("!train", **admin)
    await until(
        lambda: any("Training failed at data_prep" in p.content for p in h.fake.posts), timeout=120, what="the failure"
    )
    told = next(p.content for p in h.fake.posts if "Training failed" in p.content)
    assert "not enough data" in told and "!consent" in told  # why, and what members can do
    assert not (tmp_path / "adapters" / "tiny").exists()
    started = next(p for p in h.fake.posts if p.content.startswith("Training started"))
    assert started.reply_to == failed  # the failure is told in the channel the command came from

    words = "cartridge arcade joystick tavern speedrun pixel maze ghost cabinet tetris".split()
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    store = MessageStore(h.bot.settings.store_path)
    store.upsert(
        [
            StoredMessage(
                id=i,
                channel_id=h.fake.channel_id,
                author_id=10 + i % 4,
                author_name=f"m{i % 4}",
                timestamp=start + timedelta(minutes=i),
                content=f"the {words[i % 10]} and the {words[(i * 3) % 10]} story number {words[(i * 7) % 10]} "
                f"{chr(97 + i % 26)}{chr(97 + i // 26)}",
                licensed=True,  # an export the admin may train on
            )
            for i in range(60)
        ]
    )
    store.close()
    await h.say("!train", **admin)
    await until(lambda: any(p.content.startswith("Training done") for p in h.fake.posts), timeout=600, what="training")
    done = next(p.content for p in h.fake.posts if p.content.startswith("Training done"))
    assert "New voice loaded" in done and (tmp_path / "adapters" / "tiny" / "adapter_config.json").is_file()
    assert "not enough data" in (tmp_path / "logs" / "train.log").read_text()  # the first run's reason, in the log


async def test_a_broken_training_recipe_is_told_not_lost(start_bot, tmp_path):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("name: x\nbase_model: y\nlearning_rat: 0.1\n")
    h = await start_bot(TRAIN_RECIPE=recipe)
    asked = await h.say("!train", author=ADMIN, roles=(h.fake.admin_role_id,))
    await until(lambda: any("Training failed at recipe" in p.content for p in h.fake.posts), what="the failure")
    failure = next(p for p in h.fake.posts if "Training failed" in p.content)
    assert "learning_rat" not in failure.content and "train.log" in failure.content  # brief; the details are logged
    assert "learning_rat" in (tmp_path / "logs" / "train.log").read_text()
    assert h.fake.replies_to(asked)


async def test_a_failed_reload_says_what_kind_of_failure_without_the_raw_error(start_bot, monkeypatch, caplog):
    h = await start_bot()
    monkeypatch.setenv("TEMPERATURE", "warm")
    asked = await h.say("!reload", author=ADMIN, roles=(h.fake.admin_role_id,))
    (post,) = await h.answered(asked)
    assert post.content.startswith("That did not work: the settings are not valid; nothing was changed")
    assert "warm" not in post.content and "TEMPERATURE='warm'" in caplog.text
    monkeypatch.delenv("TEMPERATURE")
    again = await h.say("still the same model?", mention_bot=True)
    assert (await h.answered(again))[0].content == REPLY  # the running model stayed


async def test_commands_outside_the_channel_are_ignored(start_bot):
    h = await start_bot()
    elsewhere = await h.say("!stats", author=ADMIN, roles=(h.fake.admin_role_id,), channel_id=h.fake.other_channel_id)
    await h.sentinel()
    assert not h.fake.replies_to(elsewhere)


async def test_messages_are_stored_in_the_order_they_came_even_when_one_is_slow(start_bot):
    # A later message stored before an earlier one, then a crash: the catch-up, which starts after
    # the newest stored message, would never store the earlier one.
    h = await start_bot()
    ingest, done = h.bot.runtime.ingest, []

    def slow_first(message, **kwargs):
        if message.content.startswith("first"):
            time.sleep(0.5)
        result = ingest(message, **kwargs)
        done.append(message.content.split()[0])
        return result

    h.bot.runtime.ingest = slow_first
    for word in ("first", "second", "third", "fourth"):
        await h.say(f"{word} message of a burst")
    await until(lambda: len(done) == 4, what="the burst stored")
    assert done == ["first", "second", "third", "fourth"]


async def test_the_catch_up_starts_after_what_discord_delivered_not_after_an_imported_date(start_bot, tmp_path):
    from datetime import datetime, timedelta

    from indexes.filters import Filters
    from indexes.importer import import_exports

    h = await start_bot()
    # A live message moves the seen mark only once the start's catch-up has read the history (else it stays, and
    # the next catch-up reads it again): said before that, it would be stored but never marked seen.
    await until(lambda: h.bot.get_cog("Ingestion")._live_moves_seen, what="the start's catch-up done")
    live = await h.say("a message the bot reads live")
    store = h.bot.runtime.store
    await until(lambda: store.seen(h.fake.channel_id) == live, what="the message stored and seen")
    await h.bot.close()
    missed = [
        await asyncio.to_thread(h.fake.send_message, f"said while the bot was away, number {i}") for i in range(3)
    ]
    # A plain-text export written in UTC+5 and read as UTC: its newest rows lie hours after every real message.
    ahead = (datetime.now() + timedelta(hours=5)).strftime("%m/%d/%Y %I:%M %p")
    export = tmp_path / f"tavern [{h.fake.channel_id}].txt"
    export.write_text(
        "=" * 62 + "\nGuild: Pixel Tavern\nChannel: Text Channels / tavern\n" + "=" * 62 + "\n\n"
        f"[{ahead}] carol\nwhat a night at the tavern, written in another time zone\n\n"
        + "=" * 62
        + "\nExported 1 message(s)\n"
        + "=" * 62
        + "\n",
        encoding="utf-8",
    )
    assert import_exports(store, export, Filters(), progress=False).total("new") == 1
    assert max(m.id for m in store.iter_messages()) > max(missed)  # the newest stored id lies ahead
    again = await start_bot(fake=FakeDiscord(history=list(h.fake.history)))
    await until(lambda: set(missed) <= {m.id for m in again.bot.runtime.store.iter_messages()}, what="the catch-up")


async def test_one_member_cannot_flood_the_channel_with_busy_lines(start_bot):
    h = await start_bot(ScriptedLLM(delay=10.0), REPLY_QUEUE_LIMIT=1)
    await h.say("a first question that keeps the model busy", author=2001, mention_bot=True)
    await until(lambda: h.llm.running, what="the first reply being made")
    await h.say("a second question that fills the queue", author=2002, mention_bot=True)
    flood = [await h.say(f"answer me now, number {i}", author=2003, mention_bot=True) for i in range(8)]
    await until(lambda: sum(m in flood for m, _ in h.fake.reactions) == 7, what="the other seven reactions")
    busy = [p for p in h.fake.posts if p.reply_to in flood]
    assert len(busy) == 1 and busy[0].reply_to == flood[0]  # one busy line while they wait; the rest a reaction
    mentions = busy[0].body["allowed_mentions"]
    assert not mentions.get("replied_user") and not mentions.get("users")  # and it does not ping them
    assert {e for m, e in h.fake.reactions if m in flood} == {COOLDOWN_REACTION}


async def test_the_allowed_link_settings_reach_every_reply(start_bot):
    made = (
        "mrrp! the rules are at [the official rules](https://dlscord-nitro.example/login), the wiki is "
        "https://wiki.pixeltavern.example/rules and the door is discord.gg/tavern or discord.gg/elsewhere"
    )
    h = await start_bot(
        ScriptedLLM(responses=[made]), ALLOWED_LINK_DOMAINS="pixeltavern.example", ALLOWED_INVITES="tavern"
    )
    asked = await h.say("where are the rules?", mention_bot=True)
    (reply,) = await h.answered(asked)
    shown = [reply.content, *(edit.content for edit in h.fake.edits_of(reply.id))]
    assert "the official rules (dlscord-nitro.example)" in shown[-1] and not any("https://dlscord" in s for s in shown)
    assert "https://wiki.pixeltavern.example/rules" in shown[-1]  # an allowed domain, posted whole
    assert "discord.gg/tavern" in shown[-1] and not any("elsewhere" in s for s in shown)
