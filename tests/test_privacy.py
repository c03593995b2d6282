"""Members' data follows what members do: deletions, edits, private threads, consent, their own view, retention.

Through the real discord.py client and the local fake Discord (MESSAGE_DELETE, MESSAGE_DELETE_BULK,
MESSAGE_UPDATE of uncached messages, private threads, THREAD_DELETE), with a real lore index.
"""

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.cogs.replies import UNQUOTED
from fakes.discord_server import FakeDiscord
from fakes.llm import ScriptedLLM
from indexes.records import StoredMessage
from indexes.store import MessageStore
from tests.harness import ADMIN, ALICE, BOB, until

SECRET = "my home address is 42 Quillmoor Lane and my phone is 555-0199"


def files_holding(folder: Path, text: str) -> list[str]:
    """Every file under `folder` whose bytes hold `text` (SQLite files, their logs, Chroma's, training files)."""
    needle = text.encode()
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes())


def stored(runtime) -> dict[int, str]:
    return {m.id: m.content for m in runtime.store.iter_messages()}


def indexed(runtime) -> set[int]:
    index = runtime.lore_index
    return {int(i.split("#")[0]) for i in index.client.get_collection(index.active_name).get(include=[])["ids"]}


def vector(runtime, message_id: int) -> list[float]:
    index = runtime.lore_index
    found = index.client.get_collection(index.active_name).get(ids=[str(message_id)], include=["embeddings"])
    return list(found["embeddings"][0])


async def settled(h, sentinel: int | None = None) -> None:
    """Until the bot has handled every event before a sentinel message, and the index has applied it all."""
    runtime = h.bot.runtime
    sentinel = sentinel or await h.say("sentinel: an ordinary message after the events under test", author=ADMIN)
    await until(lambda: sentinel in stored(runtime), what="the sentinel stored")
    await asyncio.to_thread(runtime.ingestion.flush, 60)
    if runtime.lore_index is not None:
        await until(lambda: runtime.lore_index.pending() == 0, what="the index caught up")


class Parrot(ScriptedLLM):
    """Repeats the secret's words whenever its prompt holds them, as a model quoting its context does."""

    def _stream(self, prompt, stop=None, run_manager=None, **kwargs):
        self.responses = ["mrrp, alice lives at 42 Quillmoor Lane."] if "Quillmoor" in prompt else ["mrrp, noted."]
        yield from super()._stream(prompt, stop, run_manager, **kwargs)


async def asked_prompt(h, question: str) -> str:
    """The prompt the model was given to answer `question`, asked by Bob."""
    asked = await h.say(question, author=BOB, mention_bot=True)
    await h.answered(asked)
    return h.llm.prompts[-1]


def prepare_training(runtime, **overrides) -> Path:
    from training.data_prep import prepare

    settings = runtime.settings.model_copy(update=overrides)
    prepare(settings, min_samples=1)
    return settings.training_data


async def test_a_deleted_message_leaves_every_place_the_bot_keeps_words(start_bot, tmp_path):
    h = await start_bot(llm=Parrot(), index=True, GROUNDING="off")
    runtime, data = h.bot.runtime, tmp_path / "data"
    for i in range(3):
        await h.say(f"ordinary chatter number {i} about the tavern's pinball machine", author=BOB)
    secret = await h.say(SECRET)
    answer = await h.say("thanks alice, I will send the parcel to that address tomorrow", author=BOB, reply_to=secret)
    await settled(h)
    training = await asyncio.to_thread(prepare_training, runtime, TRAINING_CONSENT="all")
    before = vector(runtime, answer)  # embedded with the thread it answers: the secret's words
    question = await h.say("what is alice's home address?", author=BOB, mention_bot=True)
    (quoting,) = await h.answered(question)
    assert "Quillmoor" in h.llm.prompts[-1] and "Quillmoor" in h.fake.shown(quoting)  # control: found, and said
    assert secret in indexed(runtime) and "Quillmoor" in training.read_text(encoding="utf-8")
    assert files_holding(data, "Quillmoor")
    remembered = runtime.memory.snapshot(h.fake.channel_id)
    assert any("Quillmoor" in m.content for m in remembered.messages if m.from_character)  # it quoted her

    await asyncio.to_thread(h.fake.delete_message, secret)
    await settled(h)
    assert secret not in stored(runtime) and secret not in indexed(runtime)
    assert vector(runtime, answer) != before  # embedded again, without the deleted words
    remembered = runtime.memory.snapshot(h.fake.channel_id)
    assert not any("Quillmoor" in m.content for m in remembered.messages)  # the character's quote went too
    assert "Quillmoor" not in remembered.summary
    await until(lambda: "Quillmoor" not in h.fake.shown(quoting), what="the public post quoting it edited")
    assert h.fake.shown(quoting) == UNQUOTED  # its only line was the quote
    assert "Quillmoor" not in await asked_prompt(h, "what is alice's home address?")
    assert "Quillmoor" not in training.read_text(encoding="utf-8")
    assert files_holding(data, "Quillmoor") == []  # no SQLite file, log or training file holds it

    purged = [await h.say(f"purge me, message {i} with a phone number 555-01{i}{i}") for i in range(2)]
    await settled(h)
    await asyncio.to_thread(h.fake.delete_messages, purged)
    await settled(h)
    assert not set(purged) & set(stored(runtime)) and not set(purged) & indexed(runtime)
    assert files_holding(data, "purge me") == []


async def test_a_reply_made_from_an_answer_said_in_two_messages_goes_when_its_second_is_deleted(start_bot):
    h = await start_bot(llm=Parrot(), index=True, GROUNDING="off", SHORT_TERM_WINDOW=4)  # the answer: lore only
    runtime = h.bot.runtime
    asked = await h.say("where does alice live now that she moved?", author=BOB)
    await h.say("she told me last week, hold on", author=ADMIN, reply_to=asked)  # the reply Discord links
    rest = await h.say("42 Quillmoor Lane, ring twice", author=ADMIN)  # where the answer goes on
    for i in range(8):
        await h.say(f"alice moved her pinball machine to the back room, round {i} tonight", author=BOB)
    await settled(h)
    question = await h.say("where does alice live now?", author=BOB, mention_bot=True)
    (quoting,) = await h.answered(question)
    assert "Quillmoor" in h.llm.prompts[-1] and "Quillmoor" in h.fake.shown(quoting)  # found with the reply to it
    remembered = runtime.memory.snapshot(h.fake.channel_id)
    assert any("Quillmoor" in m.content for m in remembered.messages if m.from_character)

    await asyncio.to_thread(h.fake.delete_message, rest)
    await settled(h)
    remembered = runtime.memory.snapshot(h.fake.channel_id)
    assert not any("Quillmoor" in m.content for m in remembered.messages)  # the reply made from it went too
    await until(lambda: "Quillmoor" not in h.fake.shown(quoting), what="the public post quoting it edited")
    assert "Quillmoor" not in await asked_prompt(h, "where does alice live now?")


class Echo(ScriptedLLM):
    """Says the meeting point back, on a line of its own, whenever its prompt holds it (a model quoting its context)."""

    def _stream(self, prompt, stop=None, run_manager=None, **kwargs):
        said = "the meeting point is the abandoned windmill at seven tonight"
        self.responses = [f"mrrp, noted.\n{said}" if said in prompt else "mrrp, noted."]
        yield from super()._stream(prompt, stop, run_manager, **kwargs)


async def test_edits_replace_the_old_words_everywhere_cached_or_not(start_bot, tmp_path):
    h = await start_bot(llm=Echo(), index=True, GROUNDING="off")
    runtime, data = h.bot.runtime, tmp_path / "data"
    plan = await h.say("the meeting point is the abandoned windmill at seven tonight")
    reply = await h.say("great, I will bring the lanterns to the windmill then", author=BOB, reply_to=plan)
    await settled(h)
    before = vector(runtime, reply)
    asked = await h.say("where do we meet tonight?", author=BOB, mention_bot=True)
    (quoting,) = await h.answered(asked)
    assert "abandoned windmill" in h.fake.shown(quoting)  # control: the character said it
    await asyncio.to_thread(h.fake.edit_message, plan, ".")  # too short to index: the old vector must go
    await settled(h)
    await until(lambda: h.fake.shown(quoting) == "mrrp, noted.", what="the line quoting the old words gone")
    assert stored(runtime)[plan] == "." and plan not in indexed(runtime)
    assert vector(runtime, reply) != before  # its thread changed
    assert not any("abandoned windmill" in m.content for m in runtime.memory.snapshot(h.fake.channel_id).messages)
    assert "abandoned windmill" not in await asked_prompt(h, "where is the meeting point tonight?")
    assert files_holding(data, "abandoned windmill") == []

    await asyncio.to_thread(h.fake.edit_message, reply, "https://example.com/lanterns")  # a bare link: not kept
    await settled(h)
    assert reply not in stored(runtime) and reply not in indexed(runtime)

    # A message the client never had in its cache (collected by a backfill or the catch-up).
    unseen = h.fake.post_unseen("the treasure is buried under the third oak by the river", author_id=BOB, name="bob")
    runtime.ingest(
        StoredMessage(
            id=unseen,
            channel_id=h.fake.channel_id,
            author_id=BOB,
            author_name="bob",
            timestamp=datetime.now(timezone.utc),
            content="the treasure is buried under the third oak by the river",
            discord_id=True,
        ),
        seen=True,
    )
    await settled(h)
    await asyncio.to_thread(h.fake.edit_message, unseen, "the treasure was moved and nobody knows where it is")
    await settled(h)
    assert stored(runtime)[unseen] == "the treasure was moved and nobody knows where it is"
    assert files_holding(data, "third oak") == []


async def test_private_threads_are_ignored_by_default(start_bot):
    h = await start_bot(index=True, GROUNDING="off")
    runtime = h.bot.runtime
    thread = await asyncio.to_thread(h.fake.create_thread, "party planning", True)
    secret = await h.say("the surprise party for bob is on friday at the lighthouse", channel_id=thread)
    inside = await h.say("are you here with us?", channel_id=thread, mention_bot=True)
    await h.answered(inside)  # the character still talks in the thread it was invited to
    await settled(h)
    assert secret not in stored(runtime)
    assert "lighthouse" not in await asked_prompt(h, "when and where is the surprise party?")


async def test_a_private_thread_kept_in_its_own_scope_is_seen_only_there(start_bot):
    h = await start_bot(index=True, GROUNDING="off", PRIVATE_THREADS="thread", TRAINING_CONSENT="all")
    runtime = h.bot.runtime
    thread = await asyncio.to_thread(h.fake.create_thread, "party planning", True)
    secret = await h.say("the surprise party for bob is on friday at the lighthouse", channel_id=thread)
    await settled(h)
    assert secret in stored(runtime) and next(m for m in runtime.store.iter_messages() if m.id == secret).private
    assert "lighthouse" not in await asked_prompt(h, "when and where is the surprise party?")  # the public channel
    asked = await h.say("when and where is the surprise party?", author=BOB, channel_id=thread, mention_bot=True)
    await h.answered(asked)
    assert "lighthouse" in h.llm.prompts[-1]  # the thread itself sees it
    for i in range(3):
        await h.say(f"public chatter number {i} about the tavern's pinball machine", author=BOB)
    await settled(h)
    training = await asyncio.to_thread(prepare_training, runtime, DISCORD_CHANNEL_ID=None)
    assert "lighthouse" not in training.read_text(encoding="utf-8")  # never trained on


async def test_a_deleted_thread_takes_its_messages_with_it(start_bot):
    h = await start_bot(index=True)
    runtime = h.bot.runtime
    thread = await asyncio.to_thread(h.fake.create_thread, "speedrun tips", False)
    said = await h.say("the skip in level three saves twelve seconds if you jump early", channel_id=thread)
    await settled(h)
    assert said in stored(runtime) and said in indexed(runtime)
    await asyncio.to_thread(h.fake.delete_thread, thread)
    await settled(h)
    assert said not in stored(runtime) and said not in indexed(runtime)


async def test_a_deleted_channel_takes_its_threads_and_every_word_with_it(start_bot):
    h = await start_bot(index=True)
    runtime = h.bot.runtime
    said = [await h.say("the lighthouse key hangs behind the bar, ask the keeper", author=BOB)]
    thread = await asyncio.to_thread(h.fake.create_thread, "speedrun tips", False)
    said.append(await h.say("the skip in level three saves twelve seconds if you jump early", channel_id=thread))
    await settled(h)
    assert set(said) <= set(stored(runtime)) and set(said) <= indexed(runtime)
    await asyncio.to_thread(h.fake.archive_thread, thread)  # discord.py no longer knows it: the store must
    await until(lambda: h.bot.get_channel(thread) is None, what="the thread archived")
    await asyncio.to_thread(h.fake.delete_channel)
    await until(lambda: not set(said) & set(stored(runtime)), what="the channel's messages deleted")
    await until(lambda: runtime.lore_index.pending() == 0, what="the index caught up")
    assert not set(said) & indexed(runtime)  # the archived thread's message too: Discord told of the channel only
    assert not any("lighthouse" in m.content for m in runtime.memory.snapshot(h.fake.channel_id).messages)


async def test_forgetme_comes_after_the_members_messages_received_before_it(start_bot):
    h = await start_bot()
    runtime = h.bot.runtime
    ingest = runtime.ingest

    def slow_disk(message, seen=False):  # the member's message is not written yet when "!forgetme" arrives
        time.sleep(0.5)
        return ingest(message, seen=seen)

    runtime.ingest = slow_disk
    said = await h.say("my new address is 12 harbour lane, drop by", author=1010)
    forget = await h.say("!forgetme", author=1010)
    (post,) = await h.answered(forget)
    assert "1 of your messages were removed" in post.content  # counted after the message was written
    assert said not in stored(runtime) and 1010 in runtime.store.opted_out()


async def test_forgetme_with_another_members_nickname_removes_nothing_of_theirs(start_bot, tmp_path):
    from indexes.exports.common import synthetic_user_id
    from indexes.filters import Filters
    from indexes.importer import import_exports

    h = await start_bot()
    runtime = h.bot.runtime
    export = tmp_path / f"tavern [{h.fake.channel_id}].txt"
    rule = "=" * 62
    export.write_text(
        f"{rule}\nGuild: Pixel Tavern\nChannel: Text Channels / tavern\n{rule}\n\n"
        "[11/24/2024 3:15 PM] bob\nbob's own words from an export that carries only names\n\n"
        f"{rule}\nExported 1 message(s)\n{rule}\n",
        encoding="utf-8",
    )
    import_exports(runtime.store, export, Filters(), progress=False)
    mallory = 1009
    await h.say("hello everyone, I am new here", author=mallory, nick="bob")
    forget = await h.say("!forgetme", author=mallory, nick="bob")
    (post,) = await h.answered(forget)
    assert "1 of your messages were removed" in post.content
    assert any(m.author_name == "bob" for m in runtime.store.iter_messages())  # bob's words stay
    assert synthetic_user_id("bob") not in runtime.store.opted_out() and mallory in runtime.store.opted_out()
    assert "bob" in runtime.known_names  # the character still never speaks as bob


def test_forgetting_a_member_takes_the_characters_replies_made_from_their_words(settings, fake_bundle):
    from app.runtime import build_runtime
    from chains.types import ChatMessage

    runtime = build_runtime(settings, model=fake_bundle(["mrrp"]), with_index=False)
    now = datetime.now(timezone.utc)
    said = StoredMessage(
        id=7,
        channel_id=1,
        author_id=BOB,
        author_name="bob",
        timestamp=now,
        content="my locker code is 4-8-15, do not tell anyone",
        discord_id=True,
    )
    runtime.store.upsert([said])  # found as lore: never in this channel's memory itself
    runtime.observe(1, ChatMessage("alice", "hi all", author_id=ALICE, message_id=8))
    runtime.remember_reply(1, "bob's locker code is 4-8-15", sources={7, 8})
    runtime.remember_reply(1, "welcome back, alice", sources={8})
    runtime.observe(2, ChatMessage("bob", "psst, the vault opens at 3am", author_id=BOB, message_id=9))  # not stored
    runtime.remember_reply(2, "the vault opens at 3am, says bob", sources={9})
    runtime.forget(BOB, cited={7})
    assert [m.content for m in runtime.memory.snapshot(1).messages] == ["hi all", "welcome back, alice"]
    assert runtime.memory.snapshot(2).messages == ()  # remembered only (a private thread): their words went too
    assert runtime.gone_words({7, 8, 9})[0] == {7: said.content, 9: "psst, the vault opens at 3am"}  # for the posts

    # An edit that changes no word (a pin, a late link preview) keeps what was made from the message.
    runtime.observe(1, ChatMessage("alice", "the raid starts at nine tonight", author_id=ALICE, message_id=10))
    runtime.remember_reply(1, "see you at the raid at nine", sources={10})
    runtime.remembered_edit(
        10, "the raid starts at nine tonight", "the raid starts at nine tonight", "the raid starts at nine tonight"
    )
    assert "see you at the raid at nine" in [m.content for m in runtime.memory.snapshot(1).messages]
    runtime.remembered_edit(10, "the raid is off", "the raid is off", "the raid starts at nine tonight")
    assert "see you at the raid at nine" not in [m.content for m in runtime.memory.snapshot(1).messages]
    runtime.close()


def test_a_message_that_comes_while_its_author_opts_out_never_stays_in_memory(settings, fake_bundle):
    import threading

    from app.runtime import build_runtime
    from chains.types import ChatMessage

    runtime = build_runtime(settings, model=fake_bundle(["mrrp"]), with_index=False)
    checked, resume = threading.Event(), threading.Event()

    class Paused(set):  # the opted-out check pauses, right after it found bob still in
        def __contains__(self, member) -> bool:
            found = super().__contains__(member)
            checked.set()
            resume.wait(10)
            return found

    runtime.opted_out = Paused(runtime.opted_out)
    said = ChatMessage("bob", "my locker code is 4-8-15", author_id=BOB, message_id=9)
    observing = threading.Thread(target=runtime.observe, args=(1, said))
    observing.start()
    assert checked.wait(10)
    forgetting = threading.Thread(target=runtime.forget, args=(BOB,))
    forgetting.start()
    forgetting.join(2)  # without the lock, forget clears memory now, before the message is added
    resume.set()
    observing.join(10)
    forgetting.join(10)
    assert not observing.is_alive() and not forgetting.is_alive()
    assert BOB in runtime.opted_out
    assert [m.content for m in runtime.memory.snapshot(1).messages] == []
    runtime.observe(1, ChatMessage("bob", "and now?", author_id=BOB, message_id=10))  # opted out: never added
    assert runtime.memory.snapshot(1).messages == ()
    runtime.close()


def test_a_message_that_comes_while_the_store_forgets_its_author_goes_with_the_replies_made_from_it(
    settings, fake_bundle, monkeypatch
):
    import app.runtime as runtime_module
    from app.runtime import build_runtime
    from chains.types import ChatMessage

    runtime = build_runtime(settings, model=fake_bundle(["mrrp"]), with_index=False)
    forget_member = runtime_module.forget_member

    def forgetting_meanwhile(*args, **kwargs):  # bob speaks, and is answered, while the store forgets him
        runtime.observe(1, ChatMessage("bob", "my locker code is 4-8-15", author_id=BOB, message_id=9))
        runtime.remember_reply(1, "bob's locker code is 4-8-15", sources={9})
        return forget_member(*args, **kwargs)

    monkeypatch.setattr(runtime_module, "forget_member", forgetting_meanwhile)
    runtime.forget(BOB)
    assert not any("4-8-15" in m.content for m in runtime.memory.snapshot(1).messages)
    assert runtime.gone_words({9})[0] == {9: "my locker code is 4-8-15"}  # for the character's posts made from it
    runtime.close()


@pytest.mark.parametrize("answer", ["reply", "astream"])
def test_a_member_forgotten_by_another_process_leaves_memory_before_the_next_reply(settings, fake_bundle, answer):
    # `python -m app forget` beside a bot on a Chroma server: no lock on DATA_DIR, the bot's memory is its own.
    from app.runtime import build_runtime
    from chains.types import ChatMessage
    from indexes.forget import forget_member

    runtime = build_runtime(settings, model=fake_bundle(["mrrp"]), with_index=False)
    lore = StoredMessage(
        id=7,
        channel_id=5,
        author_id=BOB,
        author_name="bob",
        timestamp=datetime.now(timezone.utc),
        content="the spare key is under the third flowerpot",
        discord_id=True,
    )
    runtime.store.upsert([lore])  # found as lore: never in the channel's memory itself
    runtime.remember_reply(1, "the spare key is under the third flowerpot, says bob", sources={7})
    runtime.observe(1, ChatMessage("bob", "my locker code is 4-8-15", author_id=BOB, message_id=9))
    runtime.remember_reply(1, "bob's locker code is 4-8-15", sources={9})
    runtime.observe(1, ChatMessage("alice", "hi all", author_id=ALICE, message_id=10))
    elsewhere = MessageStore(settings.store_path)
    forget_member(elsewhere, None, settings.DATA_DIR, BOB)
    elsewhere.close()
    asked = ChatMessage("alice", "what did bob say?", author_id=ALICE, message_id=11)
    if answer == "reply":
        runtime.reply(1, asked)
    else:

        async def stream() -> None:
            async for _ in runtime.astream(1, asked):
                pass

        asyncio.run(stream())
    kept = [m.content for m in runtime.memory.snapshot(1).messages]
    assert not any("4-8-15" in text or "flowerpot" in text for text in kept) and "hi all" in kept
    assert BOB in runtime.opted_out and runtime.gone_words({9})[0] == {9: "my locker code is 4-8-15"}
    runtime.observe(1, ChatMessage("bob", "still here", author_id=BOB, message_id=12))
    assert "still here" not in [m.content for m in runtime.memory.snapshot(1).messages]
    runtime.close()


async def test_a_message_deleted_while_its_reply_is_being_made_is_not_quoted_after(start_bot):
    h = await start_bot(llm=Parrot(delay=1.5), GROUNDING="off")  # 1.5 s of "prefill": the prompt is already made
    runtime = h.bot.runtime
    secret = await h.say(SECRET)
    question = await h.say("what is alice's home address?", author=BOB, mention_bot=True)
    await until(lambda: h.llm.running, what="the reply being made")
    await asyncio.to_thread(h.fake.delete_message, secret)
    (quoting,) = await h.answered(question)
    assert "Quillmoor" in h.llm.prompts[-1]  # it was made from the secret, deleted before it was posted
    await until(lambda: h.fake.shown(quoting) == UNQUOTED, what="the post taken back")
    assert not any("Quillmoor" in m.content for m in runtime.memory.snapshot(h.fake.channel_id).messages)


async def test_forgetme_takes_the_quotes_of_the_member_out_of_the_characters_posts(start_bot):
    h = await start_bot(llm=Parrot(), GROUNDING="off")
    await h.say(SECRET)
    question = await h.say("what is alice's home address?", author=BOB, mention_bot=True)
    (quoting,) = await h.answered(question)
    assert "Quillmoor" in h.fake.shown(quoting)
    await h.answered(await h.say("!forgetme"))
    await until(lambda: h.fake.shown(quoting) == UNQUOTED, what="the post quoting alice edited")


async def test_forgetme_takes_the_quotes_out_of_a_post_made_while_it_waited_for_earlier_writes(start_bot):
    h = await start_bot(llm=Parrot(delay=1.5), GROUNDING="off")
    runtime = h.bot.runtime
    await h.say(SECRET)
    await until(lambda: any("Quillmoor" in m.content for m in runtime.store.iter_messages()), what="the secret stored")
    ingest = runtime.ingest

    def slow_disk(message, seen=False):  # a write before "!forgetme": it waits its turn for 3 s
        time.sleep(3)
        return ingest(message, seen=seen)

    question = await h.say("what is alice's home address?", author=BOB, mention_bot=True)
    await until(lambda: h.llm.running, what="the reply being made")
    runtime.ingest = slow_disk
    await h.say("lovely weather today", author=BOB)
    forget = await h.say("!forgetme")  # alice's; her words are quoted in a post made while it waits
    (quoting,) = await h.answered(question)
    assert "Quillmoor" in h.llm.prompts[-1]
    await h.answered(forget, timeout=30)
    await until(lambda: h.fake.shown(quoting) == UNQUOTED, what="the post quoting alice edited")


def test_forgetting_by_name_is_an_admins_and_shows_what_goes_first(tmp_path, capsys):
    from app.history import forget
    from config.settings import load_settings
    from indexes.exports.common import synthetic_user_id

    settings = load_settings(DATA_DIR=tmp_path / "data")
    store = MessageStore(settings.store_path)
    bob = synthetic_user_id("bob")
    store.upsert(
        [
            StoredMessage(
                id=1,
                channel_id=1,
                author_id=bob,
                author_name="bob",
                content="bob's words from a text export",
                timestamp=datetime(2024, 1, 1, tzinfo=timezone.utc),
            )
        ]
    )
    store.close()
    assert forget(settings, 77, ["bob"]) == 0
    shown = capsys.readouterr().out
    assert "name 'bob' (exports without ids): 1 messages" in shown and "nothing was removed yet" in shown
    store = MessageStore(settings.store_path)
    assert store.count() == 1
    store.close()
    assert forget(settings, 77, ["bob"], yes=True) == 0
    store = MessageStore(settings.store_path)
    assert store.count() == 0 and bob in store.opted_out()
    store.close()


async def test_a_member_repeating_a_data_command_is_told_to_wait_and_nothing_more_is_queued(start_bot):
    from app.cogs.admin import DATA_COMMAND_RATE

    h = await start_bot()
    runtime = h.bot.runtime
    calls = []
    set_consent = runtime.set_consent
    runtime.set_consent = lambda *args: calls.append(args) or set_consent(*args)
    for _ in range(DATA_COMMAND_RATE):
        (post,) = await h.answered(await h.say("!consent", author=ALICE))
        assert "may learn from your messages" in post.content
    (post,) = await h.answered(await h.say("!consent", author=ALICE))
    assert "try again in" in post.content and len(calls) == DATA_COMMAND_RATE
    (post,) = await h.answered(await h.say("!consent", author=BOB))  # counted per member
    assert "may learn from your messages" in post.content

    # A withdrawal is never refused; asked again while the first still waits its turn, it joins it.
    ingest = runtime.ingest

    def slow_disk(message, seen=False):
        time.sleep(2)
        return ingest(message, seen=seen)

    runtime.ingest = slow_disk
    await h.say("one more thing about the pinball league", author=ALICE)
    withdrawals = [await h.say("!consent off", author=ALICE) for _ in range(2)]
    for withdrawal in withdrawals:
        (post,) = await h.answered(withdrawal, timeout=30)
        assert "Withdrawn" in post.content
    assert calls[-1] == (ALICE, False) and calls.count((ALICE, False)) == 1
    assert runtime.store.consent()[ALICE][0] is False


async def test_training_takes_only_consented_members_and_withdrawing_acts_like_forgetting(start_bot, tmp_path):
    adapter = tmp_path / "adapters" / "voice"
    adapter.mkdir(parents=True)
    h = await start_bot(ADAPTER_PATH=adapter)
    runtime = h.bot.runtime
    consent = await h.say("!consent", author=ALICE)
    (post,) = await h.answered(consent)
    assert "may learn from your messages" in post.content
    await h.answered(await h.say("!consent on", author=ADMIN))
    said = []
    for i in range(4):
        said.append(await h.say(f"alice says something about the pinball league, round {i}", author=ALICE))
        said.append(await h.say(f"bob answers about the pinball league, round {i}", author=BOB))
        said.append(await h.say(f"the admin adds a word about the pinball league, round {i}", author=ADMIN))
    await settled(h)
    training = await asyncio.to_thread(prepare_training, runtime)
    text = training.read_text(encoding="utf-8")
    assert "alice says" in text and "bob answers" not in text  # Bob never consented
    (adapter / "trained_on.json").write_text(json.dumps({"message_ids": said[:3], "author_ids": [ALICE]}))
    assert runtime.stale_adapter() is None

    withdraw = await h.say("!consent off", author=ALICE)
    (post,) = await h.answered(withdraw)
    assert "Withdrawn" in post.content
    assert "alice says" not in training.read_text(encoding="utf-8")  # her samples left the training file
    assert "withdrew consent" in runtime.stale_adapter()
    stats = await h.say("!stats", author=ADMIN, roles=(h.fake.admin_role_id,))
    (post,) = await h.answered(stats)
    assert "**adapter** stale" in post.content


def adapter_record(runtime, said: list[int]):
    """Writes what training records in an adapter trained now on these messages (ids, authors, digests)."""
    from training.train_lora import learned_words

    def trained() -> None:
        learned = learned_words(runtime.settings, [{"message_ids": said}])
        authors = sorted({m.author_id for m in runtime.store.get(said).values()})
        record = {"message_ids": said, "author_ids": authors, "digests": {str(i): d for i, d in learned.items()}}
        (runtime.settings.ADAPTER_PATH / "trained_on.json").write_text(json.dumps(record))

    return trained


async def test_an_edit_takes_the_old_words_out_of_training_and_makes_the_adapter_stale(start_bot, tmp_path):
    adapter = tmp_path / "adapters" / "voice"
    adapter.mkdir(parents=True)
    h = await start_bot(ADAPTER_PATH=adapter)
    runtime = h.bot.runtime
    for member in (ALICE, ADMIN):
        await h.answered(await h.say("!consent", author=member))
    said = []
    for i in range(4):
        said.append(await h.say(f"alice says something about the pinball league, round {i}", author=ALICE))
        said.append(await h.say(f"the admin adds a word about the pinball league, round {i}", author=ADMIN))
    await settled(h)
    training = await asyncio.to_thread(prepare_training, runtime)
    assert "alice says something about the pinball league, round 1" in training.read_text(encoding="utf-8")
    adapter_trained = adapter_record(runtime, said)
    adapter_trained()
    assert runtime.stale_adapter() is None

    await asyncio.to_thread(h.fake.edit_message, said[2], "alice took that back, she never liked the league")
    await settled(h)
    assert "alice says something about the pinball league, round 1" not in training.read_text(encoding="utf-8")
    assert "1 edited since" in runtime.stale_adapter()  # learned in words she no longer says
    adapter_trained()
    assert runtime.stale_adapter() is None  # an adapter trained after the edit learned the new words


async def test_training_on_everyone_is_warned_about_when_the_bot_starts(start_bot, caplog):
    await start_bot(TRAINING_CONSENT="all")
    assert "TRAINING_CONSENT=all" in caplog.text and "Developer Policy" in caplog.text


async def test_a_consent_role_counts_until_the_member_says_otherwise(start_bot):
    fake = FakeDiscord()
    h = await start_bot(fake=fake, CONSENT_ROLE_ID=fake.admin_role_id)
    store = h.bot.runtime.store
    await h.say("I hold the role that consents", author=BOB, roles=(fake.admin_role_id,))
    await settled(h)
    assert store.consent()[BOB] == (True, "role")
    await h.say("the role was taken from me", author=BOB)
    await settled(h)
    assert store.consent()[BOB] == (False, "role")
    off = await h.say("!consent off", author=ALICE)
    await h.answered(off)
    await h.say("now I hold the role", author=ALICE, roles=(fake.admin_role_id,))
    await settled(h)
    assert store.consent()[ALICE] == (False, "command")  # her own word stands


async def test_a_member_sees_what_is_kept_about_them_privately(start_bot):
    h = await start_bot(index=True)
    for i in range(3):
        await h.say(f"alice talks about the arcade cabinet, message {i}", author=ALICE)
    await settled(h)
    asked = await h.say("!mydata", author=ALICE)
    await until(lambda: h.fake.direct_messages(), what="a direct message")
    (dm,) = h.fake.direct_messages()
    assert (
        "Stored: 3 of your messages (3 searchable as lore)" in dm.content
        and "Consent to training: not given" in dm.content
    )
    assert not h.fake.replies_to(asked)  # nothing of it in the public channel
    # the DM goes first, the 📬 reaction on the command after it
    await until(lambda: (asked, "📬") in [(m, e) for m, e in h.fake.reactions], what="the 📬 reaction")


async def test_retention_deletes_older_messages_everywhere(start_bot, tmp_path):
    from config.settings import load_settings

    settings = load_settings(DATA_DIR=tmp_path / "data")
    store = MessageStore(settings.store_path)
    now = datetime.now(timezone.utc)
    store.upsert(
        [
            StoredMessage(
                id=1,
                channel_id=1,
                author_id=BOB,
                author_name="bob",
                content="an old story from long ago, kept too long",
                timestamp=now - timedelta(days=60),
            ),
            StoredMessage(
                id=2,
                channel_id=1,
                author_id=BOB,
                author_name="bob",
                content="a recent story from last week, kept",
                timestamp=now - timedelta(days=7),
            ),
        ]
    )
    store.close()
    h = await start_bot(index=True, RETENTION_DAYS=30)
    runtime = h.bot.runtime
    assert set(stored(runtime)) == {2}  # at start
    assert files_holding(tmp_path / "data", "kept too long") == []

    # Every hour after: a live message grows old, indexed and in a training file by then.
    aging = await h.say("a live story told today that will outstay the retention period")
    await settled(h)
    assert aging in indexed(runtime)
    samples = [{"message_ids": [str(aging)], "target": "the story"}, {"message_ids": ["2"], "target": "recent"}]
    settings.training_data.write_text("".join(json.dumps(s) + "\n" for s in samples), encoding="utf-8")
    with runtime.store.transaction() as db:
        db.execute("UPDATE messages SET timestamp = ? WHERE id = ?", ((now - timedelta(days=31)).isoformat(), aging))
    await h.bot.get_cog("Ingestion").retention()  # the hourly run
    await settled(h)
    assert aging not in stored(runtime) and aging not in indexed(runtime) and 2 in stored(runtime)
    assert [json.loads(line)["target"] for line in settings.training_data.read_text().splitlines()] == ["recent"]
    assert files_holding(tmp_path / "data", "outstay the retention") == []


async def test_the_catch_up_applies_what_was_deleted_or_edited_while_away(start_bot):
    h = await start_bot()
    runtime = h.bot.runtime
    gone = await h.say("a message deleted while the bot was away")
    changed = await h.say("a message edited while the bot was away")
    await settled(h)
    await h.bot.close()
    await asyncio.to_thread(h.fake.delete_message, gone, False)
    edited = next(m for m in h.fake.history if m["id"] == str(changed))
    edited["content"], edited["edited_timestamp"] = (
        "its new words, written while away",
        datetime.now(timezone.utc).isoformat(),
    )
    again = await start_bot(fake=FakeDiscord(history=list(h.fake.history)))
    await until(lambda: gone not in stored(again.bot.runtime), what="the deletion applied")
    await until(lambda: stored(again.bot.runtime).get(changed) == "its new words, written while away", what="the edit")
    assert runtime.store is not again.bot.runtime.store


def test_an_index_that_kept_words_is_rebuilt_without_them(embed_model, tmp_path):
    from indexes.build import ensure_index
    from indexes.vector import LoreIndex, chroma_client

    data = tmp_path / "data"
    store = MessageStore(data / "messages.sqlite3")
    text = "the dragon sleeps under the old stone bridge"
    store.upsert(
        [
            StoredMessage(
                id=1,
                channel_id=1,
                author_id=7,
                author_name="user7",
                content=text,
                timestamp=datetime(2024, 1, 1, tzinfo=timezone.utc),
            )
        ]
    )
    client = chroma_client(data / "chroma")
    legacy = client.create_collection("lore-20250101000000-000001", metadata={"hnsw:space": "cosine"})
    legacy.add(  # as an earlier version kept it
        ids=["1"],
        embeddings=[embed_model.get_text_embedding(text)],
        documents=[text],
        metadatas=[{"message_id": "1", "author": "user7"}],
    )
    store.set_meta("active_collection", legacy.name)
    index = LoreIndex(store, client, embed_model, folder=data / "chroma")
    assert index.holds_words()
    assert ensure_index(store, index, None)
    assert not index.holds_words() and index.size() == 1
    assert files_holding(data / "chroma", "old stone bridge") == []
    store.close()
