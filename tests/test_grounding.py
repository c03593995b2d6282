"""Grounded answers: replies to questions checked against the lore found for them (real embeddings)."""

import pytest

from chains.assemble import ContextAssembler
from chains.grounding import (
    KIND_BONUS,
    Grounding,
    answer_kind,
    asks_for_figure,
    asks_for_taste,
    embedder,
    fits,
    seeks,
    sentences,
)
from chains.links import LinkPolicy
from chains.memory import ShortTermMemory
from chains.reply import build_reply_chain, run_reply, stream_reply, template_stops
from chains.retrieve import LoreRetrieval
from chains.types import ChatMessage, LoreItem
from fakes.llm import ScriptedLLM
from llm.generation import GenerationService

WELCOME = LoreItem(
    content="👋 Hello and welcome to the audit channel for the $60,500 **NextGen** audit!\n\n"
    "📆 Audit opens 10/30/2023 20:00 (20:00 UTC) and runs through 11/13/2023 20:00 (20:00 UTC) (14 days).",
    author="kartoonjoy",
    score=0.9,
)
QUESTION = "@Susu how big is the prize pool of the NextGen audit?"
JOYSTICKS = [  # three posts that tell one year from another only by their figure
    LoreItem(content=f"The Golden Joystick {year} goes to {who}, {why}.", author="ravenna")
    for year, who, why in [
        (2024, "tomasz", "who repaired 30 Game Boys for the children's hospital during the Charity Drive"),
        (2023, "kiwi", "for the legendary 412 lines in Tetris on an original Game Boy during Speedrun Night"),
        (2025, "mira", "for hosting 100 Friday Speedrun Nights in a row and setting the Moonlit Maze record"),
    ]
]


@pytest.fixture
def make_chain(tokenizer, prompt_set, persona, embed_model):
    services = []

    def make(llm, lore=(WELCOME,), grounding=True, links=None, max_chars=600):
        service = GenerationService(llm, timeout_s=30)
        services.append(service)
        return build_reply_chain(
            service,
            LoreRetrieval(lambda q, channel_id=None: list(lore)),
            ContextAssembler(tokenizer, prompt_set, persona, 384),
            ShortTermMemory(20, 5),
            persona,
            stops=template_stops(tokenizer),
            grounding=(grounding if isinstance(grounding, Grounding) else Grounding(embedder(embed_model)))
            if grounding
            else None,
            answer=prompt_set.answer,
            links=links,
            reply_max_chars=max_chars,
        )

    yield make
    for service in services:
        service.close()


def test_a_reply_inventing_a_figure_is_never_shown_and_the_lore_answers(make_chain):
    llm = ScriptedLLM(
        responses=[
            "mrrp, the prize pool is 1.8 million boxes of treats. and they are all mine, come and see them tonight!"
        ],
        piece_delay=0.02,
    )
    results = list(stream_reply(make_chain(llm), 1, ChatMessage("tadev0", QUESTION, message_id=1)))
    final = results[-1]
    assert final.ok and "$60,500" in final.text and "kartoonjoy" in final.text
    assert not any("1.8" in r.text for r in results)  # not even for one edit
    assert llm.stopped_early == 1 and llm.pieces < 20  # stopped at the sentence with the invented figure


def test_a_reply_that_uses_the_lore_keeps_its_own_words(make_chain):
    text = "mrrp, the NextGen pot is $60,500, and it opens on 10/30!"
    result = run_reply(make_chain(ScriptedLLM(responses=[text])), 1, ChatMessage("tadev0", QUESTION, message_id=1))
    assert result.ok and result.text == text


def test_a_reply_sharing_only_an_incidental_figure_with_the_lore_gets_the_answer_line(make_chain):
    nxt = LoreItem(
        content="NXT is our custom implementation that has no external fees to generating a random value. "
        "We intend to support all 3 randomizer options and each collection can have its own.",
        author="piravlos",
        score=0.9,
    )
    made_up = "The NXT randomizer is a 3D engine that makes endless worlds out of one dataset."  # "3" from "3D"
    llm = ScriptedLLM(responses=[made_up])
    question = "@Susu what is the NXT randomizer for?"
    result = run_reply(make_chain(llm, lore=(nxt,)), 1, ChatMessage("tadev0", question, message_id=1))
    assert result.ok and result.text.startswith('as piravlos put it: "') and "no external fees" in result.text


def test_a_reply_to_when_that_tells_another_date_than_the_lore_gets_the_answer_line(make_chain):
    question = "@Susu when does the NextGen audit end?"
    other_day = "mrrp, NextGen runs 14 days and ends on 11/20!"  # every figure is in the lore: 14, 11, 20 (of 20:00)
    result = run_reply(make_chain(ScriptedLLM(responses=[other_day])), 1, ChatMessage("tadev0", question, message_id=1))
    assert result.ok and result.text.startswith('as kartoonjoy put it: "') and "11/13/2023" in result.text
    same_day = "mrrp, NextGen ends on 11/13 at 20:00 UTC, 14 days in!"
    result = run_reply(make_chain(ScriptedLLM(responses=[same_day])), 1, ChatMessage("tadev0", question, message_id=1))
    assert result.ok and result.text == same_day  # its own words, the lore's date
    pool = "mrrp, the NextGen pot is $60,500, and it ran 14 days from 11/20!"  # no question of when: no date checked
    result = run_reply(make_chain(ScriptedLLM(responses=[pool])), 1, ChatMessage("tadev0", QUESTION, message_id=1))
    assert result.ok and result.text == pool


def test_a_reply_that_ignores_the_lore_gets_the_answer_line(make_chain):
    llm = ScriptedLLM(responses=["i love naps in the sun and chasing the cursor around."])
    result = run_reply(make_chain(llm), 1, ChatMessage("tadev0", QUESTION, message_id=1))
    assert result.ok and result.text.startswith('as kartoonjoy put it: "') and "$60,500" in result.text


def test_the_answer_line_quoting_a_phishing_post_relays_none_of_its_links(make_chain):
    phishing = LoreItem(
        content="Prize claims for the NextGen audit go through "
        "[the official claims portal](https://nextgen-claims.example/login) "
        "and support is at discord.gg/claims24 for every warden.",
        author="totally_staff",
        score=0.9,
    )
    question = "@Susu how do wardens claim their NextGen audit prize?"
    ignores = ["i love naps in the sun and chasing the cursor around."]
    result = run_reply(
        make_chain(ScriptedLLM(responses=ignores), lore=(phishing,)), 1, ChatMessage("tadev0", question, message_id=1)
    )
    assert result.ok and result.text.startswith('as totally_staff put it: "')  # the answer line, quoting the post
    assert "the official claims portal (nextgen-claims.example)" in result.text  # where it really leads, not a link
    assert "https://" not in result.text and "](" not in result.text and "discord.gg" not in result.text
    allowed = LinkPolicy.from_lists(["nextgen-claims.example"], ["claims24"])  # what ALLOWED_* say, through the chain
    chain = make_chain(ScriptedLLM(responses=ignores), lore=(phishing,), links=allowed)
    result = run_reply(chain, 1, ChatMessage("tadev0", question, message_id=1))
    assert "https://nextgen-claims.example/login" in result.text and "discord.gg/claims24" in result.text


def test_a_post_that_answers_with_a_link_is_quoted_with_the_name_the_link_ends_in(make_chain):
    tag = LoreItem(
        content="Here it is!\n\nhttps://github.com/oltaco/Adafruit_nRF52_Bootloader_OTAFIX/releases/tag/0.9.2-OTAFIX2.0-BP1.2",
        author="oltaco",
        score=0.9,
    )
    question = "@Susu what is the GitHub release tag of OTAFIX 2.0?"
    ignores = ["i love naps in the sun and chasing the cursor around."]
    result = run_reply(
        make_chain(ScriptedLLM(responses=ignores), lore=(tag,)), 1, ChatMessage("cra0", question, message_id=1)
    )
    assert result.ok and result.text.startswith('as oltaco put it: "')  # the link's name is what the post says
    assert "github.com/…/0.9.2-OTAFIX2.0-BP1.2" in result.text and "https://" not in result.text


RATE_QUESTION = "@Susu what unit is the rate in collectionPhases, is it in bips?"
RATE_THREAD = "what is the possible value of collectionPhases[_collectionID].rate? is it in bips?"
GUESS = LoreItem(
    content="I think its pure numbers, if you want to set it to 20% => 20", author="ZdravkoHr", thread=RATE_THREAD
)
ANSWER = LoreItem(
    content="it depends on the case, for sales model 3 the rate is considered as %, for sales model 2 it's "
    "consider as wei",
    author="piravlos",
    thread=RATE_THREAD,
)
LOGO = LoreItem(content="the new server logo looks great on dark mode, nice work", author="kiwi", score=0.6)


def test_two_close_answers_from_two_messages_are_both_quoted(make_chain, embed_model):
    # Scores here (bf16 embeddings): the guess 0.83, the sponsor's answer 0.76, the logo far below. Which of
    # the two close ones is right, the embeddings cannot tell: both are quoted, the closest first.
    ignores = ["i love naps in the sun and chasing the cursor around."]
    message = ChatMessage("juntao", RATE_QUESTION, message_id=1)
    result = run_reply(make_chain(ScriptedLLM(responses=ignores), lore=(GUESS, ANSWER, LOGO)), 1, message)
    lines = result.text.splitlines()
    assert result.ok and len(lines) == 2 and "pure numbers" in lines[0] and "wei" in lines[1]
    assert lines[1].startswith('as piravlos put it: "') and "logo" not in result.text
    one = Grounding(embedder(embed_model), second_within=None)  # without the second quote: the guess alone
    result = run_reply(make_chain(ScriptedLLM(responses=ignores), lore=(GUESS, ANSWER), grounding=one), 1, message)
    assert result.ok and "pure numbers" in result.text and "wei" not in result.text
    # Two quotes that do not fit in a reply: the closest alone, never a quote cut in the middle.
    chain = make_chain(ScriptedLLM(responses=ignores), lore=(GUESS, ANSWER), max_chars=150)
    result = run_reply(chain, 1, message)
    assert result.ok and result.text == f'as ZdravkoHr put it: "{GUESS.content}"'


def test_a_question_is_never_the_second_quote(embed_model):
    # A follow-up in the same thread that wonders ranks 0.87 - 0.2 (it asks), within 0.2 of the guess's 0.83:
    # close enough to be quoted, were it not a question.
    wondering = "not sure if the rate in collection phases is percent or bips, same question"
    asking = LoreItem(content=wondering, thread=RATE_THREAD, asks=True)
    grounding = Grounding(embedder(embed_model))
    evidence = grounding.evidence(RATE_QUESTION, "question", [GUESS, asking])
    assert evidence is not None and evidence.item is GUESS and evidence.also is None
    evidence = grounding.evidence(RATE_QUESTION, "question", [GUESS, asking, ANSWER])
    assert evidence is not None and evidence.also is not None and evidence.also.item is ANSWER


def test_a_repost_is_never_the_second_quote(embed_model):
    repost = LoreItem(content=GUESS.content, author="someone_else", thread=RATE_THREAD)
    evidence = Grounding(embedder(embed_model)).evidence(RATE_QUESTION, "question", [GUESS, repost, ANSWER])
    assert evidence is not None and evidence.also is not None and evidence.also.item is ANSWER


FORM_QUESTION = "@Cora what kind of chain is Form network, the one Curves deploys to?"
FORM_PINNED = LoreItem(  # a channel's pinned post, which the retrieval ranks first on its words and meaning
    content="Network: The protocol will only be found on form.network. It is an L2 network built on the Optimism "
    "Superchain. For more information, visit https://docs.form.network/",
    author="0xandy_2014_07_22",
)
FORM_ECHO = LoreItem(content="Thanks. So the  name is Form network..", author="adeolu")


def test_the_message_the_retrieval_ranks_first_is_quoted_with_a_closer_sentence_of_another(make_chain, embed_model):
    # The echo's sentence holds the question's "Form" (the pinned post writes form.network) and is the
    # evidence; the post's answer, "an L2 network built on the Optimism Superchain", comes with it.
    evidence = Grounding(embedder(embed_model)).evidence(FORM_QUESTION, "question", [FORM_PINNED, FORM_ECHO])
    assert evidence is not None and evidence.item is FORM_ECHO
    assert evidence.also is not None and evidence.also.item is FORM_PINNED and "Optimism" in evidence.also.passage
    # Quoted for the answer line, it is no close second: a reply using it alone is not let through on it
    assert not Grounding.uses(
        "mrrp, Form network is an L2 network built on the Optimism Superchain", evidence, FORM_QUESTION
    )
    assert Grounding.uses("thanks! so the name is Form network, mrrp", evidence, FORM_QUESTION)
    ignores = ["i love naps in the sun and chasing the cursor around."]
    chain = make_chain(ScriptedLLM(responses=ignores), lore=(FORM_PINNED, FORM_ECHO))
    result = run_reply(chain, 1, ChatMessage("adeolu", FORM_QUESTION, message_id=1))
    assert result.ok and "Optimism Superchain" in result.text and "Form network" in result.text
    # Ranked below the echo, the post is quoted only as a close second would be: not here (it holds less).
    evidence = Grounding(embedder(embed_model)).evidence(FORM_QUESTION, "question", [FORM_ECHO, FORM_PINNED])
    assert evidence is not None and evidence.item is FORM_ECHO and evidence.also is None


def test_a_close_second_answer_keeps_its_place_over_the_first_message(embed_model):
    # The retrieval ranked the admin's note first; the guess and the sponsor's answer are the two close ones
    note = LoreItem(content="the rate of a collection phase is set by the admin for each collection", author="a2rocket")
    evidence = Grounding(embedder(embed_model)).evidence(RATE_QUESTION, "question", [note, GUESS, ANSWER])
    assert evidence is not None and evidence.item is GUESS
    assert evidence.also is not None and evidence.also.item is ANSWER and evidence.also_checks


def test_the_first_message_is_not_quoted_when_it_asks(embed_model):
    asking = LoreItem(  # what it says is a guess: it asks
        content="I read that Form network is an L2 built on the Optimism Superchain. But is it its own chain?",
        author="kiwi",
    )
    evidence = Grounding(embedder(embed_model)).evidence(FORM_QUESTION, "question", [asking, FORM_ECHO])
    assert evidence is not None and evidence.item is FORM_ECHO and evidence.also is None


def test_a_reply_using_the_second_quoted_message_keeps_its_own_words(make_chain):
    text = "mrrp, it depends: for sales model 3 the rate is a %, for sales model 2 it is wei."
    chain = make_chain(ScriptedLLM(responses=[text]), lore=(GUESS, ANSWER))
    result = run_reply(chain, 1, ChatMessage("juntao", RATE_QUESTION, message_id=1))
    assert result.ok and result.text == text


def test_without_the_check_the_invented_figure_goes_out(make_chain):
    llm = ScriptedLLM(responses=["mrrp, the prize pool is 1.8 million boxes of treats!"])
    result = run_reply(make_chain(llm, grounding=False), 1, ChatMessage("tadev0", QUESTION, message_id=1))
    assert "1.8 million" in result.text  # what the check above prevents


def test_banter_and_unrelated_lore_are_left_alone(make_chain):
    banter = ScriptedLLM(responses=["mrrp, you are the best, 100 head scratches for you!"])
    result = run_reply(make_chain(banter), 1, ChatMessage("tadev0", "@Susu you are so fluffy lol", message_id=1))
    assert result.text == "mrrp, you are the best, 100 head scratches for you!"
    unrelated = ScriptedLLM(responses=["no idea, but it is big. I bet the Zorblax champions know!"])
    lore = (LoreItem(content="rip gyarados, you were a good fish.", author="kiwi", score=0.3),)
    result = run_reply(make_chain(unrelated, lore=lore), 1, ChatMessage("tadev0", QUESTION, message_id=1))
    assert result.text == "no idea, but it is big."  # no lore close: a made-up name goes, as a made-up figure does


def test_without_close_lore_a_question_is_never_answered_with_a_made_up_figure(make_chain, persona):
    lore = (LoreItem(content="rip gyarados, you were a good fish.", author="kiwi", score=0.3),)
    llm = ScriptedLLM(
        responses=["mrrp, I counted the coins twice! the pool is 121,458 coins.\nkiwi would know more, ask her."],
        piece_delay=0.01,
    )
    results = list(stream_reply(make_chain(llm, lore=lore), 1, ChatMessage("tadev0", QUESTION, message_id=1)))
    assert not any("121" in r.text for r in results)  # not even for one edit
    assert results[-1].ok and results[-1].text == "mrrp, I counted the coins twice!"  # stopped at it: no more came
    llm = ScriptedLLM(responses=["it is 1.5% of the price, everyone knows."])
    result = run_reply(make_chain(llm, lore=lore), 1, ChatMessage("tadev0", QUESTION, message_id=1))
    assert result.ok and result.text == persona.unknown()  # nothing left: the persona's line for not knowing
    llm = ScriptedLLM(responses=["mrrp, you asked at 3 in the morning!"])
    question = "@Susu how many hours did it take, 3?"
    result = run_reply(make_chain(llm, lore=lore), 1, ChatMessage("tadev0", question, message_id=1))
    assert result.text == "mrrp, you asked at 3 in the morning!"  # a figure from the question is no invention
    llm = ScriptedLLM(responses=["super mario 64, no contest!"])
    question = "@Susu what's the best mario game?"  # asks for the character's own taste, which may hold a figure
    assert (
        run_reply(make_chain(llm, lore=lore), 1, ChatMessage("tadev0", question, message_id=1)).text == llm.responses[0]
    )
    llm = ScriptedLLM(responses=["It has no bootloader of its own. XA-Z (Xiaomi 3) is a firmware released in 2024."])
    question = "@Susu my board ignores the update file and still shows the old bootloader, why?"  # asks for no figure
    result = run_reply(make_chain(llm, lore=lore), 1, ChatMessage("tadev0", question, message_id=1))
    assert result.text == "It has no bootloader of its own."  # yet a made-up version or year is no answer to it
    llm = ScriptedLLM(
        responses=["XA-Z (Xiaomi) is a firmware released in 2024. It is designed for it."], leading_spaces=True
    )
    result = run_reply(make_chain(llm, lore=lore), 1, ChatMessage("tadev0", question, message_id=1))
    assert result.text == persona.unknown()  # stopped at "2024": no unfinished "It" after the sentence dropped
    llm = ScriptedLLM(responses=["It runs on all the major networks. They plan the Nexus One and Ethereum Nexus next."])
    question = "@Susu on which networks is the protocol going to run?"
    result = run_reply(make_chain(llm, lore=lore), 1, ChatMessage("tadev0", question, message_id=1))
    assert result.text == "It runs on all the major networks."  # a made-up name is no answer either
    llm = ScriptedLLM(responses=["Zorblax made the best ones. I'd say 17 of them."])
    question = "@Susu how many mario games would you recommend?"  # its taste, and a figure asked for
    result = run_reply(make_chain(llm, lore=lore), 1, ChatMessage("tadev0", question, message_id=1))
    assert result.text == "Zorblax made the best ones."  # its pick is free, a made-up count is not


def test_evidence_is_a_statement_never_a_question_or_a_bare_link():
    text = "how big is the pool? https://code4rena.com/contests/x\nThe pool is $60,500. is it open yet"
    assert sentences(text) == ["The pool is $60,500."]
    assert sentences("ok where do i get the POOL_INIT_CODE_HASH\nhey, is it set in the readme") == []  # after a filler
    assert sentences("so the hash is set in PoolAddress.sol") == ["so the hash is set in PoolAddress.sol"]
    assert sentences("so when you deposit, you get shares.\nbut any value above 10 works") == [
        "so when you deposit, you get shares.",
        "but any value above 10 works",
    ]  # an answer that starts with a conjunction


@pytest.mark.parametrize(
    ("question", "taste"),
    [
        ("what's the best mario game?", True),
        ("which is better, the N64 or the GameCube?", True),
        ("any recommendations for a co-op game?", True),
        ("is the deluxe edition worth it?", True),
        ("should I buy bitcoin?", True),
        ("what's the best way to flash the firmware?", False),  # a how-to, not a taste
        ("which settings are recommended for OTA?", False),
        ("why does my board ignore the update?", False),
        ("when does the audit start?", False),
    ],
)
def test_a_question_for_the_characters_taste_is_told_from_one_for_a_fact(question, taste):
    assert asks_for_taste(question) is taste


def test_a_short_statement_with_a_figure_is_evidence_a_short_reply_without_one_is_not(embed_model):
    assert sentences("3e16 is 3%") == ["3e16 is 3%"]  # shorter than MIN_SENTENCE_CHARS, yet it answers
    assert sentences("ok thanks") == [] and sentences("yes 100%") == []  # nothing said beyond a figure
    assert sentences("https://github.com/oltaco/bootloader/issues/123") == []  # a link's digits are no figure
    assert sentences("https://youtu.be/dQw4w9WgXcQ") == []  # nor its ids
    question = "how are fee percentages encoded, what value means 3%?"
    vague = LoreItem(content="some % of the ether you send goes to the different fee destinations", author="andy")
    exact = LoreItem(content="3e16 is 3%", author="andy")
    evidence = Grounding(embedder(embed_model)).evidence(question, "question", [vague, exact])
    assert evidence is not None and "3e16 is 3%" in [quoted.passage for quoted in evidence.quoted]


def test_a_figure_alone_is_evidence_in_the_thread_it_answers(embed_model):
    question = "how many findings were sent in for this contest in total?"
    count = LoreItem(content="867", author="Tendency", thread="How many submissions on this one ?")
    link = LoreItem(
        content="Check this out: https://discord.com/channels/810916927919620096/1153743259965857873/1154405312195989554",
        author="0xbuzzlightyear",
        thread="What's the relationship between the previous contest and this contest",
    )
    hardest = LoreItem(content="This was the hardest contest that I participated in, learned a lot", author="kiwi")
    grounding = Grounding(embedder(embed_model))
    evidence = grounding.evidence(question, "lore", [link, hardest, count])
    assert evidence is not None and evidence.passage == "867"
    alone = LoreItem(content="867", author="Tendency")  # in no thread, a figure alone says nothing
    evidence = grounding.evidence(question, "lore", [link, hardest, alone])
    assert evidence is None or all(quoted.passage != "867" for quoted in evidence.quoted)


def test_the_numbers_of_a_link_or_a_name_are_no_amount():
    for amount in (
        "867",
        "$5k",
        "it is 3x faster",
        "42% of it",
        "High risk findings: 6 unique (42 total)",
        "1.5 eth",
        "it takes 3weeks on average",
        "judged within 24h",
    ):
        assert fits("amount", amount), amount
    for other in (
        "Check this out: https://discord.com/channels/81/1153743259965857873",  # a message's id
        "[the release](https://github.com/o/r/releases/tag/v2.1) is out",  # a masked link's
        "the T114 works",
        "learned a lot :10_10:",
        "0x3f is the selector",
        "v2 is out",
        "H-01 is a duplicate of EIP-712 issues",
        "thanks <@123456789012345678> <:pepe:987654321098765432>",  # a raw mention and emoji
        "use 1e18 there",
        "thanks to @0xBugsy for answering",  # a member's name
    ):
        assert not fits("amount", other), other


@pytest.mark.parametrize("text", ["867", "$5k", "0.5%", "3x", "10k", "+1", "thx", "v2", "867 ?", "1.", "12 days"])
def test_the_retriever_and_the_evidence_agree_on_a_figure_alone(text):
    from chains import grounding
    from indexes import answers

    assert bool(grounding._FIGURE_ALONE.match(text)) == bool(answers.FIGURE_ALONE.match(text))


@pytest.mark.parametrize(
    "question", ["how many submissions?", "when does it end?", "is the audit still open?", "what is the rate?", "who?"]
)
def test_the_retriever_and_the_evidence_agree_on_a_question_asking_for_a_figure(question):
    from indexes import answers

    assert asks_for_figure(question) == bool(answers._ASKS_FIGURE.search(question))


def test_a_short_reply_is_read_in_its_thread_only_when_it_holds_a_figure_or_a_name():
    from chains.grounding import _in_thread

    thread = "What does hTokens stand for?"
    for short in ("867", "Hermes Tokens"):
        assert _in_thread(short, LoreItem(content=short, thread=thread)) == f"{thread} / {short}"
    assert _in_thread("a rich wallet", LoreItem(content="a rich wallet", thread=thread)) == "a rich wallet"
    longer = "a rich wallet holds them all"
    assert _in_thread(longer, LoreItem(content=longer, thread=thread)) == f"{thread} / {longer}"


def test_a_long_post_is_quoted_from_the_relevant_sentence(embed_model):
    post = LoreItem(
        content="Tavern rules: be kind. " * 12 + "The tavern was founded on 4 March 2023. Pull up a stool.",
        author="ravenna",
    )
    evidence = Grounding(embedder(embed_model)).evidence("when was the tavern founded?", "lore", [post])
    assert evidence is not None and evidence.passage.startswith("The tavern was founded on 4 March 2023.")
    assert len(evidence.passage) < len(post.content)


def test_a_reply_is_read_with_the_question_it_answers(embed_model):
    # Scores here, bf16 embeddings: the near message 0.58; the answer 0.46 alone, 0.89 in its thread. The
    # margins are wide on purpose: a batch's padding moves bf16 scores by about 0.001.
    near = LoreItem(content="The summer tournament was so much fun last year, I loved the finals.", author="kiwi")
    answer = LoreItem(
        content="It kicks off on the 12th at noon, and sign-ups close the day before.",
        author="ravenna",
        thread="when does the summer tournament start this year?",
    )
    grounding = Grounding(embedder(embed_model))
    question = "when does the summer tournament start?"
    evidence = grounding.evidence(question, "lore", [near, answer])
    assert evidence is not None and evidence.item is answer
    unthreaded = [near, LoreItem(content=answer.content, author=answer.author)]
    alone = grounding.evidence(question, "lore", unthreaded)
    assert alone is not None and alone.item is near  # the words alone pick the other message


def test_evidence_says_more_than_the_question_and_holds_what_it_asks_about(embed_model):
    grounding = Grounding(embedder(embed_model))
    said = LoreItem(content="the cursed cartridge. it's canon now", author="kiwi")
    known = LoreItem(
        content="The Cursed Cartridge, what we know so far: a grey unlabeled Moonlit Maze cartridge from the Ghent "
        "flea market (April 2023). It saves itself at 3:33 am.",
        author="tomasz",
    )
    evidence = grounding.evidence("what's the lore about the cursed cartridge?", "lore", [said, known])
    assert evidence is not None and evidence.item is known  # "the cursed cartridge." only repeats the question

    for year in (2023, 2024, 2025):
        evidence = grounding.evidence(f"who got the golden joystick {year}?", "lore", JOYSTICKS)
        assert evidence is not None and str(year) in evidence.sentence
        # The retrieval's first message tells of another year's award: not quoted with it ("2024" is no 2025)
        assert all(str(year) in quoted.passage for quoted in evidence.quoted)


def test_questions_are_told_apart_by_what_they_ask_for():
    assert answer_kind("@Cora when does the Curves audit start and when does it close?") == "date"
    assert answer_kind("what day is the meetup?") == "date"
    assert answer_kind("how much is the prize pool?") == "money"
    assert answer_kind("@Susu who won the golden joystick?") == "person"
    # The question word decides over a word of another kind further on ("the end" is no date asked for)
    assert answer_kind("@Rhea how many unique high and medium findings did Revert Lend have in the end?") == "amount"
    assert answer_kind("how many findings did Curves end up with?") == "amount"
    assert answer_kind("who won the prize pool?") == "person"
    assert answer_kind("@Cora until when can I still grab things from my private threads?") == "date"
    assert answer_kind("is the audit open?") == "date" and answer_kind("does it cost anything to join?") == "money"
    assert answer_kind("why is mint() restricted?") == answer_kind("what kind of chain is Form network?") == ""
    assert fits("date", "Audit opens 01/08/2024 20:00 UTC") and fits("date", "on 4 March") and fits("date", "tomorrow")
    assert not fits("date", "The Curves audit is now closed!") and not fits("amount", "a big pool")
    assert fits("amount", "a $36,500 pool") and fits("person", "$6,215.78 USDC » @0x3b")
    assert fits("person", "it went to Tomasz for the repairs") and not fits("", "anything at all, 2024")
    assert answer_kind("how much did the charity drive raise?") == answer_kind("how big is the prize pool?") == "money"
    assert answer_kind("what is the total prize pool?") == answer_kind("how much does it cost?") == "money"
    assert answer_kind("how many fees are there?") == answer_kind("how much should I return?") == "amount"
    assert fits("money", "we raised 2,340 euros") and fits("money", "$88,500 in USDC") and fits("money", "USDC 100000")
    assert fits("money", "2.5k USDC") and not fits("money", "on 27-28 April, 24 hours")
    assert not fits("money", "30 Game Boys") and not fits("money", "web3 eth") and not fits("money", "2024-05-01 eth")
    assert fits("money", "40 \u20ac") and fits("money", "500 CHF") and fits("money", "\u20b9500")
    assert answer_kind("how many dollars did we raise?") == "money"  # a currency named: a sum, counted or not
    assert answer_kind("how long does the payout take?") == answer_kind("what percentage of the fees go?") == "amount"
    assert answer_kind('installing fails with "The engine node is incompatible", what fixed it?') == "fix"
    assert answer_kind("forge test stops with an error, how do I get past it?") == "fix"
    assert fits("fix", "`npm install --force` worked for me") and fits("fix", "I ran foundryup, that was it")
    assert not fits("fix", "i keep getting this error") and not fits("fix", "has foundryup worked for you?")


@pytest.mark.parametrize(
    "text",
    [
        "`Npm install --force` worked for me, incase anyone runs into same issue",
        "that was the reason, thanks, I ran foundryup and it worked after that",
        "reinstalling node did the trick",
        "fixed it by reflashing the bootloader",
        "has running foundryup worked for you?",
        "the fix is in the next release",
        "I keep getting this error",
    ],
)
def test_the_retriever_and_the_evidence_agree_on_what_tells_of_a_fix(text):
    from indexes.answers import (
        tells_of_a_fix,
    )  # the retriever's reading (indexes/ and chains/ do not import each other)

    assert tells_of_a_fix(text) == fits("fix", text)


def test_a_question_for_a_fix_is_answered_by_the_message_that_tells_what_worked(embed_model):
    report = LoreItem(content="`2024-03-revert-lend % forge test Error: Unknown version provided`", message_ids=(1,))
    stuck = LoreItem(
        content="I tried several times to install. So it seems that this issue is only on my side in the installation.",
        message_ids=(2,),
    )
    fixed = LoreItem(
        content="that was the reason, thanks, I ran foundryup and it worked after that",
        thread=report.content,
        message_ids=(3, 1),  # what its teller said fixed it (indexes.answers.own_fix), read with the problem
    )
    question = 'forge test stops with "Error: Unknown version provided", how do I get past it?'
    evidence = Grounding(embedder(embed_model)).evidence(question, "lore", [report, stuck, fixed])
    assert evidence is not None and evidence.item is fixed
    plain = Grounding(embedder(embed_model), kind_bonus=0.0).evidence(question, "lore", [report, stuck, fixed])
    assert plain is not None and plain.item is not fixed  # by similarity alone, the report or another's trouble


def test_a_message_that_asks_seeks_and_one_that_answers_does_not():
    assert seeks(LoreItem(content="i am also intrested, are these three audits where you got confirmed findings?"))
    assert seeks(LoreItem(content="Is it trusted. The owner is."))  # a question anywhere in it
    assert seeks(LoreItem(content="I wonder if manager is trusted.", asks=True))  # as the retriever found it
    assert not seeks(LoreItem(content="Whether u buy or sell u pay all the fees"))
    assert not seeks(LoreItem(content="It is an L2 on the Optimism Superchain."))
    # A statement a confirming tag ends answers: it is kept without the tag.
    assert not seeks(LoreItem(content="Its called LeverageTransformer.sol, which readme?"))
    assert not seeks(LoreItem(content="**Its called LeverageTransformer.sol, which readme?**"))
    assert sentences("Its called LeverageTransformer.sol, which readme?") == ["Its called LeverageTransformer.sol"]
    assert sentences("yes the fee is set in the constructor, isn't it?") == ["yes the fee is set in the constructor"]
    for asking in TAGGED_QUESTIONS:
        assert seeks(LoreItem(content=asking)) and sentences(asking) == [], asking


# Questions that end like a confirming tag, yet ask: a complaint, a request, a condition, a wider question.
TAGGED_QUESTIONS = (
    "If I call it twice in one block, is it ok?",
    "The vault holds USDC, which tokens count as collateral?",
    "The claim button is greyed out, why?",
    "I get error 0x123 when minting, can you help?",
    "My tx keeps failing, what now?",
    "Need the contract address, which chain?",
    "May I ask, is it by design?",
    "hmm, why?",
)


@pytest.mark.parametrize(
    "text",
    [
        *TAGGED_QUESTIONS,
        "Its called LeverageTransformer.sol, which readme?",
        "it's set in the constructor, isn't it?",
        "it's in the readme, right??",
        "yes it is in the readme, did you check?",
        "Had the same issue, fixed it by reinstalling, did you try?",
        "Whether u buy or sell u pay all the fees",
        "which chain will it launch on first?",
    ],
)
def test_the_retriever_and_the_evidence_agree_on_what_asks(text):
    from indexes.answers import only_asks  # the retriever's reading (indexes/ and chains/ do not import each other)

    assert only_asks(text) == seeks(LoreItem(content=text))


def test_evidence_holds_what_the_question_asks_for_before_an_announcement_or_a_question(embed_model):
    # Scores here (bf16 embeddings), similarity alone: the announcement 0.71, the welcome post 0.55; the
    # wondering message 0.71, the answer 0.54. What the question asks for decides between them.
    grounding = Grounding(embedder(embed_model))
    closed = LoreItem(content="@wardens The **Curves** audit is now closed! Huge thanks to everyone.", author="C4")
    dates = LoreItem(
        content="👋 Hello and welcome to the audit channel for the $36,500 in USDC **Curves** audit!\n\n"
        "📆 Audit opens 01/08/2024 20:00 (20:00 UTC) and runs through 01/16/2024 20:00 (20:00 UTC) (8 days).",
        author="knownfact",
    )
    question = "when does the Curves audit start and when does it close?"
    evidence = grounding.evidence(question, "lore", [closed, dates])
    assert evidence is not None and evidence.item is dates
    plain = Grounding(embedder(embed_model), kind_bonus=0.0, asking_penalty=0.0).evidence(
        question, "lore", [closed, dates]
    )
    assert plain is not None and plain.item is closed  # by similarity alone, the announcement

    wonders = LoreItem(
        content="Hey @0xAndy, I believe you missed this one. If `owner` makes sense to be trusted, I wonder if "
        "`manager` is considered trusted or not.",
        author="alexczm",
        asks=True,  # as the retriever tags it (indexes.answers.only_asks)
    )
    answers = LoreItem(
        content="The manager is trusted as much as the owner: both are the Curves team multisig.", author="0xandy"
    )
    question = "should wardens treat the manager role as a trusted one, like the owner?"
    evidence = grounding.evidence(question, "question", [wonders, answers])
    assert evidence is not None and evidence.item is answers
    plain = Grounding(embedder(embed_model), kind_bonus=0.0, asking_penalty=0.0).evidence(
        question, "question", [wonders, answers]
    )
    assert plain is not None and plain.item is wonders


def test_a_name_the_whole_channel_uses_picks_no_evidence(embed_model):
    # "Moonlit Cup" is what the question asks about, and what most of this channel speaks of: the message that only
    # names it again is no answer; the one that holds the amount asked for is.
    echo = LoreItem(
        content="My Moonlit Cup prize came from the first results, not from the updated ones", author="kiwi"
    )
    answer = LoreItem(
        content="update! if you received too much, we'd be grateful if you returned 90% of the excess to the club "
        "fund. keep the rest for the trouble",
        author="ravenna",
    )
    question = "I was paid too much from the Moonlit Cup prizes, how much should I send back and where?"
    plain = Grounding(embedder(embed_model), min_score=0.0).evidence(question, "question", [echo, answer])
    assert plain is not None and plain.item is echo  # it holds the names asked about
    common = Grounding(embedder(embed_model), min_score=0.0, common=lambda names: names & {"moonlit", "cup"})
    evidence = common.evidence(question, "question", [echo, answer])
    assert evidence is not None and evidence.item is answer
    rare = Grounding(embedder(embed_model), min_score=0.0, common=lambda names: set())
    assert rare.evidence(question, "question", [echo, answer]).item is echo

    # A figure still picks the evidence, however often the channel says it ("2025" in a channel of that year).
    everywhere = Grounding(embedder(embed_model), min_score=0.0, common=lambda words: words)
    for year in (2023, 2025):
        assert str(year) in everywhere.evidence(f"who got the Golden Joystick {year}?", "lore", JOYSTICKS).sentence


def test_a_question_of_a_sum_is_answered_by_the_message_with_a_sum_not_one_with_a_date_or_count(embed_model):
    # The sample server's two messages (bf16 embeddings, similarity alone: the announcement 0.43, the result 0.36);
    # both hold figures, only the result a sum.
    announced = LoreItem(
        content="Charity Drive 2024: on 27-28 April we play Mario Kart 64 for 24 hours straight on stream to raise "
        "money for the children's hospital in Leuven. tomasz is repairing 30 donated Game Boys that we will give to "
        "the hospital's play room.",
        author="ravenna",
    )
    raised = LoreItem(
        content="WE DID IT. 24 hours of Mario Kart and we raised 2,340 euros for the children's hospital. thank you "
        "everyone",
        author="ravenna",
    )
    question = "@Susu how much did the charity drive raise?"
    grounding = Grounding(embedder(embed_model), second_within=None)
    evidence = grounding.evidence(question, "lore", [announced, raised])
    assert evidence is not None and evidence.item is raised
    plain = Grounding(embedder(embed_model), min_score=0.0, kind_bonus=0.0, second_within=None).evidence(
        question, "lore", [announced, raised]
    )
    assert plain is not None and plain.item is announced  # by similarity alone, the announcement
    # Without a sum among them, any figure may be the amount: the kind falls back to one (similarity alone: the
    # thanks 0.75, the figure 0.73)
    thanks = LoreItem(content="The charity drive raised a lot, thank you all so much!", author="kiwi")
    counted = LoreItem(content="Charity drive done: 2340 raised for the hospital.", author="tomasz")
    evidence = grounding.evidence("how much did the charity drive raise?", "lore", [thanks, counted])
    assert evidence is not None and evidence.item is counted


SUMMARY = LoreItem(
    content="🏁 Findings summary\n--------------------\nHigh risk findings: 6 unique (42 total)\n"
    "Med risk findings: 25 unique (131 total)\nGas reports: 7 (Best: 0x11singh99)\nQA reports: 43 (Best: Bauchibred)",
    author="thebrittfactor",
)
TOPIC_WELCOME = LoreItem(
    content="👋 Hello and welcome to the audit channel for the $88,500 in USDC **Revert Lend** audit!\n\n"
    "📆 Audit opens 03/04/2024 20:00 (20:00 UTC) and runs through 03/15/2024 19:00 (20:00 UTC) (10 days).",
    author="kartoonjoy",
)


def test_a_question_of_a_count_is_answered_by_the_figure_next_to_what_it_counts(embed_model):
    # Both hold figures: the welcome post a sum, dates and days, the summary the counts of findings asked for. The
    # channel's topic is "Revert" (the lambda below), so "Lend", said as one name with it, is the topic too.
    question = "@Rhea how many unique high and medium findings did Revert Lend have in the end?"
    lore = [TOPIC_WELCOME, SUMMARY]
    grounding = Grounding(embedder(embed_model), min_score=0.0, common=lambda names: names & {"revert"})
    evidence = grounding.evidence(question, "lore", lore)
    assert evidence is not None and evidence.item is SUMMARY
    assert "6 unique" in evidence.passage and "25 unique" in evidence.passage
    # "Lend" alone, not the topic: the welcome post holds the name asked about, and comes first
    named = Grounding(embedder(embed_model), min_score=0.0, common=lambda names: set())
    assert named.evidence(question, "lore", lore).item is TOPIC_WELCOME
    # Without a figure next to what is counted anywhere, any figure may be the count, as before (similarity alone:
    # the thanks 0.69, the figure 0.61)
    thanks = LoreItem(content="The meetup had a great turnout, so many people came, thank you all!", author="kiwi")
    showed = LoreItem(content="Meetup done: 40 showed up at the bar.", author="tomasz")
    asked = "how many people came to the meetup?"
    assert Grounding(embedder(embed_model), second_within=None).evidence(asked, "lore", [thanks, showed]).item is showed
    plain = Grounding(embedder(embed_model), kind_bonus=0.0, second_within=None)
    assert plain.evidence(asked, "lore", [thanks, showed]).item is thanks


@pytest.mark.parametrize(
    ("question", "what"),
    [
        ("how many unique high and medium findings did Curves end up with?", {"unique", "high", "medium", "findings"}),
        ("@Susu how many bob-ombs does bob have?", {"bob-ombs"}),
        ("How many people came to the meetup", {"people", "came"}),  # "40 came" counts them too
        ("how much should I return and where?", set()),
        ("when does it open?", set()),
    ],
)
def test_a_count_question_says_what_it_counts(question, what):
    from chains.grounding import counted

    assert counted(question) == what


@pytest.mark.parametrize(
    ("text", "counts"),
    [
        ("High risk findings: 6 unique (42 total)", True),
        ("we found 4 highs and a medium", True),
        ("the 3 finding reports", True),
        ("findings are out on 03/04/2024 at 20:00", False),  # a date or a time is no count
        ("$88,500 for the audit; findings go to the judge", False),  # too far from what is counted
        ("the highest score was 12", False),
    ],
)
def test_a_figure_counts_what_it_stands_next_to(text, counts):
    from chains.grounding import counted
    from chains.grounding import counts as counting

    assert counting(counted("how many high findings were there?"), text) is counts


def test_names_said_as_one_are_one_run():
    from chains.grounding import name_runs

    assert name_runs("how many findings did Revert Lend have?") == [{"revert", "lend"}]
    assert name_runs("I met Bob, Alice and Carol Smith in Akron today") == [
        {"bob"},
        {"alice"},
        {"carol", "smith"},
        {"akron"},
    ]


def test_a_sentence_holding_what_the_question_asks_for_is_close_enough_by_less(embed_model):
    question = "how much did the charity drive raise?"
    raised = LoreItem(content="The Charity Drive raised 1,240 euros for the children's hospital.", author="tomasz")
    fun = LoreItem(content="The Charity Drive was a lot of fun for everyone involved this year.", author="kiwi")
    for item, held in ((raised, True), (fun, False)):
        score = Grounding(embedder(embed_model), min_score=0.0).evidence(question, "lore", [item]).score
        strict = score + KIND_BONUS / 2  # closer than its words alone are
        found = Grounding(embedder(embed_model), min_score=strict).evidence(question, "lore", [item])
        assert (found is not None) is held  # the amount asked for makes up the rest; nothing does for the other
        assert (
            Grounding(embedder(embed_model), min_score=strict, kind_bonus=0.0).evidence(question, "lore", [item])
            is None
        )


def test_a_name_of_the_question_is_held_by_the_passage_quoted(embed_model):
    # "Hermes Tokens" holds "hTokens" on its next line: the passage quoted whole, not the one sentence
    question = "what is the h in hTokens short for?"
    asking = "What does hTokens stands for? (any token, or some specific)"
    confused = LoreItem(
        content="I kind of still don't fully get hTokens. Are they virtual tokens holding the same value as their "
        "underlying token?",
        author="Ali",
    )
    answer = LoreItem(content="Hermes Tokens\nhTokens", author="0xbuzzlightyear", thread=asking)
    evidence = Grounding(embedder(embed_model)).evidence(question, "lore", [confused, answer])
    assert evidence is not None and evidence.item is answer
    asking = LoreItem(  # its question names hTokens; what it says does not
        content="What is the h in hTokens short for? I read the docs all day and still have no clue about the h.",
        author="Ali",
    )
    unthreaded = LoreItem(content=answer.content, author=answer.author)  # far by meaning without its thread
    unpenalised = Grounding(embedder(embed_model), asking_penalty=0.0, min_score=0.0)  # the names alone decide
    evidence = unpenalised.evidence(question, "lore", [asking, unthreaded])
    assert evidence is not None and evidence.item is unthreaded


def test_a_sentence_too_far_to_answer_does_not_keep_a_close_one_out_for_a_name(embed_model):
    # The question names "Ulysses"; the answer's thread spells it "Ulysees". The one sentence holding the name is far
    # (under min_score): the close answer is the evidence, rather than none.
    question = "are the chain ids Ulysses works with the normal EVM chain ids?"
    far = LoreItem(content="Exactly, anyone can deploy their bridge agents on the chains Ulysses supports", author="a")
    close = LoreItem(
        content="Note: chainId values are not related to EVM ids. LayerZero chain ids are proprietary to its Endpoints",
        author="0xBugsy",
        thread="All chain ids used in Ulysees are layerzero chain ids, not block chain ids, right?",
    )
    grounding = Grounding(embedder(embed_model))
    scores = {id(item): grounding.evidence(question, "lore", [item]) for item in (far, close)}
    assert scores[id(far)] is None and scores[id(close)] is not None  # the one naming Ulysses is too far alone
    evidence = grounding.evidence(question, "lore", [far, close])
    assert evidence is not None and evidence.item is close


def test_a_message_that_asks_holds_no_name_for_the_evidence_when_its_answer_is_in_the_lore(embed_model):
    report = LoreItem(
        content="The DFU app fails on ProMicro_OTA every first try, then works as AdaDFU. Is this expected?",
        author="mike",
        message_ids=(1,),
    )
    fix = LoreItem(
        content="You need to have force scanning turned on, otherwise the app doesn't find the bootloader again.",
        author="cheaporeps",
        thread=report.content,
        message_ids=(2, 1),  # a reply to it (as the retriever gives it: the message, then its thread)
    )
    question = "the DFU app fails on ProMicro_OTA until a restart, what setting is missing?"
    evidence = Grounding(embedder(embed_model)).evidence(question, "lore", [report, fix])
    assert evidence is not None and evidence.item is fix
    unlinked = LoreItem(content=fix.content, thread=fix.thread, message_ids=(2,))  # a reply, not linked to it
    evidence = Grounding(embedder(embed_model)).evidence(question, "lore", [report, unlinked])
    assert evidence is not None and evidence.item is report  # the sentence holding "ProMicro_OTA" comes first
    asking_back = LoreItem(content="Which phone do you flash it from, Android or iOS?", message_ids=(3, 1))
    evidence = Grounding(embedder(embed_model)).evidence(question, "lore", [report, unlinked, asking_back])
    assert evidence is not None and evidence.item is report  # a question back answers nothing


def test_an_answer_holds_the_names_of_the_asking_it_answers(embed_model):
    report = LoreItem(
        content="The DFU app fails on ProMicro_OTA every first try, then works as AdaDFU. Is this expected?",
        message_ids=(1,),
    )
    fix = LoreItem(
        content="You need to have force scanning turned on, otherwise the app doesn't find the bootloader again.",
        thread=report.content,
        message_ids=(2, 1),
    )
    praise = LoreItem(  # names the board, answers nothing
        content="I can confirm ProMicro_OTA flashes blindingly fast with the Nordic DFU app on Android 15",
        message_ids=(3,),
    )
    question = "the DFU app fails on ProMicro_OTA until a restart, what setting is missing?"
    evidence = Grounding(embedder(embed_model)).evidence(question, "lore", [report, fix, praise])
    assert evidence is not None and evidence.item is fix  # "ProMicro_OTA" is the asking's, so its answer's too
    not_found = LoreItem(content=fix.content, thread=fix.thread, message_ids=(2, 1))  # its asking is not in the lore
    evidence = Grounding(embedder(embed_model)).evidence(question, "lore", [not_found, praise])
    assert evidence is not None and evidence.item is praise


MEETUP = LoreItem(
    content="Summer Meetup 2026: 18 July at the Rusty Joystick bar in Ghent, 15:00 until late.", author="ravenna"
)


def test_a_reply_inventing_a_place_gets_the_answer_line(make_chain):
    invented = "The summer meetup took place in a small town called Akron, Ohio, on July 18."
    chain = make_chain(ScriptedLLM(responses=[invented]), lore=(MEETUP,))
    result = run_reply(chain, 1, ChatMessage("kiwi", "@Susu where was the summer meetup 2026?", message_id=1))
    assert result.ok and "Akron" not in result.text and "Rusty Joystick bar in Ghent" in result.text


def test_names_from_the_lore_the_members_and_the_character_are_no_invention(make_chain):
    text = "Mrrp, Kiwi: the Summer Meetup is at the Rusty Joystick in Ghent on 18 July, and Susu will be there!"
    chain = make_chain(ScriptedLLM(responses=[text]), lore=(MEETUP,))
    result = run_reply(chain, 1, ChatMessage("kiwi", "@Susu where is the summer meetup 2026?", message_id=1))
    assert result.ok and result.text == text


def test_proper_names_are_capitalised_words_inside_a_sentence():
    from chains.grounding import proper_names

    text = 'Hi there. It was in Akron, Ohio. as Ravenna put it: "Welcome to The tavern" @Kiwi https://x.io/Foo I'
    assert proper_names(text) == {"akron", "ohio", "ravenna"}
