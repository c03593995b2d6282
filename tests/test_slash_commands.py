"""The members' commands as slash commands: `/mydata` and `/consent` answer the member alone, never the channel.

Through the real discord.py client and the local fake Discord: the bot syncs its commands to the guild, a
member uses one (INTERACTION_CREATE), and the bot defers and follows up on the interaction's webhook.
"""

import asyncio

from fakes.discord_server import InteractionResponse
from tests.harness import ADMIN, ALICE, BOB, until


async def settled(h) -> None:
    """Until the bot has stored every message before a sentinel, and the index has applied them all."""
    runtime = h.bot.runtime
    sentinel = await h.say("sentinel: an ordinary message after the events under test", author=ADMIN)
    await until(lambda: sentinel in {m.id for m in runtime.store.iter_messages()}, what="the sentinel stored")
    await asyncio.to_thread(runtime.ingestion.flush, 60)
    if runtime.lore_index is not None:
        await until(lambda: runtime.lore_index.pending() == 0, what="the index caught up")


async def slash(h, command: str, member: int, **options) -> list[InteractionResponse]:
    """`member` uses `/command`; until the bot has answered, what they were shown."""
    asked = await asyncio.to_thread(h.fake.invoke_command, command, options, member, f"user{member}")
    await until(lambda: h.fake.answers(asked), what=f"an answer to /{command}")
    return h.fake.answers(asked)


async def test_mydata_answers_the_member_alone(start_bot):
    h = await start_bot(index=True)
    for i in range(3):
        await h.say(f"alice talks about the arcade cabinet, message {i}", author=ALICE)
    await h.say("bob talks about the arcade cabinet too", author=BOB)
    await settled(h)
    (answer,) = await slash(h, "mydata", ALICE)
    assert answer.ephemeral
    assert "Stored: 3 of your messages (3 searchable as lore)" in answer.content
    assert "Consent to training: not given" in answer.content
    assert "`/consent off`" in answer.content and "!" not in answer.content  # the commands as they used them
    assert not h.fake.posts  # nothing in the public channel, and no direct message either


async def test_consent_by_slash_command_is_recorded_and_withdrawn_privately(start_bot):
    h = await start_bot()
    store = h.bot.runtime.store
    [synced] = [c for c in h.fake.commands if c["name"] == "consent"]
    assert "withdraw" in synced["options"][0]["description"]  # what Discord shows next to the option
    (answer,) = await slash(h, "consent", ALICE, choice="on")
    assert answer.ephemeral and "may learn from your messages" in answer.content
    assert "`/consent off` withdraws" in answer.content
    assert store.consent() == {ALICE: (True, "command")}

    (answer,) = await slash(h, "consent", ALICE, choice="off")
    assert answer.ephemeral and "Withdrawn" in answer.content
    assert store.consent() == {ALICE: (False, "command")}
    assert not h.fake.posts


async def test_a_data_command_repeated_too_often_is_refused_privately(start_bot):
    from app.cogs.admin import DATA_COMMAND_RATE

    h = await start_bot()
    for _ in range(DATA_COMMAND_RATE):
        (answer,) = await slash(h, "mydata", ALICE)
        assert "Consent to training" in answer.content
    (answer,) = await slash(h, "mydata", ALICE)
    assert answer.ephemeral and "try again in" in answer.content
    assert not h.fake.posts
