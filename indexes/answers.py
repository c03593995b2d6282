"""Questions and their answers, paired where the export does not link them.

A member's question matches a question about the same thing best, yet it holds no answer; the answer,
a minute later from another member, may share none of its words ("arbitrum l2 first"). Discord's
replies link the two (HTML and JSON exports keep the link, and a reply is embedded with what it
answers); plain-text exports and members who answer without replying do not. So the retriever asks
the store, at search time, for the answer to each question it finds: an explicit reply, else the
most likely of the next messages by other members (see `likely_answer`), else one the same search found,
sent by another member within the day (`found_answer`). A member who tells of a
problem asks without a question ("fails to initialize DFU the first time"): the reply someone sent
to it is its fix (`reports_problem`, `explicit_answer`). What the asker later says fixed it ("`npm install
--force` worked for me") is the answer before anyone else's reply (`own_fix`). An answer goes on in its
author's next messages, sent right after it (`goes_on`: "it's on the readme", then the file to change). Nothing
is stored: what is deleted or edited in the store is gone from the pairing at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta

from indexes.records import StoredMessage

ANSWER_WINDOW = timedelta(minutes=30)  # how long after a question its answer may come
ANSWER_LOOKAHEAD = 8  # how many of the following messages are considered
FOUND_WINDOW = timedelta(hours=24)  # how long after a question an answer the search found too may come
GOES_ON_WINDOW = timedelta(minutes=3)  # how long after each of its messages an answer may go on in the next
GOES_ON_MESSAGES = 3  # the most messages an answer goes on in
_ASKS = re.compile(r"\?\W*$")
# "have", "was" and their kin open a question before the one asked of ("Have you disabled via_ir", "was it fixed"),
# not before what they say ("Have a look at the readme", "had the same problem", "Had this error too, ... fixed it").
# After "ok" or "btw" only a question word opens a question: "ok where do i get the hash" asks, "ok will do",
# "ok did foundryup and it worked" and "please do a full erase first" answer.
_OPENS_A_QUESTION = re.compile(
    r"^(?:@\S+\s+|hey\s+|hi\s+|gm\s+)*(?:are|is|do|does|did|can|could|should|shall|will|would|what|which|who|when|"
    r"where|why|how|any|anyone|anybody)\b|"
    r"^(?:@\S+\s+|hey\s+|hi\s+|gm\s+)*(?:(?:have|has|had)\s+(?:you|u|anyone|anybody|someone|somebody)|"
    r"(?:was|were)\s+(?:you|u|it|this|that|anyone|anybody|someone|somebody)|am\s+i)\b|"
    r"^(?:@\S+\s+|(?:ok|okay|btw|hey|hi|gm)\b[,.]?\s+)+(?:what|which|who|when|where|why|how)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"\w+")
_QUESTION_MARK = re.compile(r"\?(?!\w)")  # a question asked anywhere in a message ("?" after a link is read apart)
# A statement, then a confirming tag ("it's set in the constructor, right?", "Its called LeverageTransformer.sol,
# which readme?"): it answers. Read as chains.grounding.said_before_asking reads a sentence (the two layers do not
# import each other; tests/test_grounding.py checks that they agree).
_TAGGED = re.compile(
    r"(?i)^(?P<said>[^?]+?),\s+(?:right|no|ok|yes|isn'?t\s+it|is\s+it|aren'?t\s+they|which\s+[^\s,?]+|"
    r"did\s+you\s+(?:check|see|read|try)(?:\s+[^\s,?]+){0,2})\s*\?+\W*$"
)
_SAID_ASKS = re.compile(  # a statement part that asks after all: a question, a condition, a request
    r"(?i)^(?:@\S+\s+|(?:hey|hi|gm|ok|okay)\b[,.]?\s+)*(?:are|is|was|were|do|does|did|can|could|should|shall|"
    r"will|would|has|have|had|may|what|which|who|whom|whose|when|where|why|how|any|anyone|anybody)\b|"
    r"^(?:if|when|whenever|so|and|but|or|because|since|while|after|before|once|unless)\b|"
    r"\b(?:ask|asking|question|wonder|wondering|curious|need|needs|help|looking)\b"
)
_URL = re.compile(r"<https?://[^\s>]+>|https?://[^\s<>]*[^\s<>?!.,)]")  # a "?" after a link is the question's
# Phrases that ask, and that an answer does not use ("not sure if it helps, but..." and "I was wondering
# the same, turns out..." answer; "any idea" alone can be "any idea is welcome").
_WONDERS = re.compile(
    r"(?i)\b(?:i\s+wonder|(?:am|was|i'?m)\s+wondering\s+(?:if|whether|why|how|what|when|where|who)|"
    r"want(?:ed)?\s+to\s+ask|any\s+idea\s+(?:if|whether|why|how|what|when|where|who)|anyone\s+know|does\s+anyone|"
    r"(?:can|could)\s+(?:someone|anyone|somebody|anybody)|someone\s+can\s+(?:\w+\s+)?(?:explain|tell|help|clarify|confirm)|"
    r"having\s+a\s+hard\s+time\s+(?:understanding|figuring)|can'?t\s+figure\s+out|missed\s+(?:this|my)\s+question)\b"
)


def only_asks(text: str) -> bool:
    """A short message that asks (ends in "?", opens like a question, or wonders: "I wonder if the manager is
    trusted", "you missed this question"): it holds no answer itself. A statement that a confirming tag ends
    ("Its called LeverageTransformer.sol, which readme?") answers (`says_first`)."""
    text = _URL.sub("", text).strip()  # a link is not what a message says: its path is no words of it
    words = len(_WORD.findall(text))
    return (
        (bool(_ASKS.search(text)) and words <= 40 and not says_first(text))
        or (bool(_OPENS_A_QUESTION.match(text)) and words <= 25)
        or (bool(_WONDERS.search(text)) and words <= 60)
    )


def says_first(text: str) -> bool:
    """Does the question a message ends with only confirm a statement of its own ("yes it is in the readme, right?"),
    which answers? Not after a condition ("If I call it twice, is it ok?"), a request or an earlier question."""
    *before, last = re.split(r"(?<=[.!?])\s+", text.strip())
    match = _TAGGED.match(last)
    if match is None or any(_ASKS.search(s) or _OPENS_A_QUESTION.match(s) or _WONDERS.search(s) for s in before):
        return False
    said = match["said"].strip()
    return len(_WORD.findall(said)) >= 3 and not _SAID_ASKS.search(said)


_REPORTS = re.compile(
    r"(?i)\b(?:fail(?:s|ed|ing)?|errors?|not\s+working|(?:doesn'?t|does\s+not|don'?t|won'?t|didn'?t)\s+(?:work|boot|start|"
    r"connect|show|load|flash|compile|run)|unable\s+to|stuck|crash(?:es|ed|ing)?|keep\s+getting|bricked)\b"
)


# What a message that is no problem (any more) says: "fixed it, no errors now", "error handling docs".
_NO_PROBLEM = re.compile(
    r"(?i)\b(?:fixed|solved|resolved|works\s+now|working\s+now|(?:no|without|zero)\s+(?:more\s+)?errors?|"
    r"error\s+(?:handling|messages?\s+(?:are|is)|means?))\b"
)
# A reply that has the problem too, and no fix: "same here", "me too, same error", "+1".
_ME_TOO = re.compile(r"(?i)^\W*(?:same|me\s+too|\+1|also\s+(?:having|getting|seeing))\b")
ME_TOO_WORDS = 8  # a longer "same here, ..." goes on to say something
# A reply saying its author does not know: "sorry, I’m not sure about that", "no idea", "idk tbh". No answer,
# unless it goes on to say something: a figure, a guess or a try ("not sure, 0.8.20 I think", "idk, try foundryup").
_NOT_KNOWN = re.compile(
    r"(?i)^\W*(?:@\S+\s+)*(?:sorry\W*)?(?:(?:i\s*['’]?\s*a?m\s+)?not\s+(?:sure|certain)|no\s+(?:idea|clue)|idk|"
    r"dunno|i\s+(?:don['’]?t|do\s+not)\s+know|i\s+have\s+no\s+(?:idea|clue))\b"
)
_GOES_ON_TO_SAY = re.compile(r"(?i)\d|\b(?:but|try|think|maybe|probably|guess|because|perhaps)\b")
NOT_KNOWN_WORDS = 8  # a longer "not sure, ..." goes on to say something


def reports_problem(text: str) -> bool:
    """A message telling of something that fails ("seemed to fail the first time when the device appeared
    as ProMicro_OTA", "i keep getting this error"): it asks for a fix without a question, and its fix, when someone
    replied with one, is its answer (`explicit_answer`). Not one saying it is fixed or that there are no errors."""
    text = _URL.sub("", text)
    return bool(_REPORTS.search(text)) and not _NO_PROBLEM.search(text) and not only_asks(text)


def goes_on(answer: StoredMessage, following: Sequence[StoredMessage]) -> list[StoredMessage]:
    """The messages an answer goes on in: its author's next ones (`following`: the messages after it, oldest
    first), each sent within GOES_ON_WINDOW of the one before, before anyone else speaks, at most GOES_ON_MESSAGES.
    Members split an answer over several messages ("it's on the readme" - "bytes32 internal constant
    POOL_INIT_CODE_HASH = 0xe34f..." - "`lib/v3-periphery/contracts/libraries/PoolAddress.sol` change it here"):
    the reply to the question may be only its first words. Not one that asks anything or tells of a problem
    ("that fails on the T-Deck though"), not a reply to another message, not one without words (an attachment), not
    one that speaks to someone the answer did not (an @mention: "@Susu no, that's wrong" is said to the character,
    whose own posts are not stored)."""
    more: list[StoredMessage] = []
    last = answer
    for m in following[:GOES_ON_MESSAGES]:
        if (
            m.author_id != answer.author_id
            or m.timestamp - last.timestamp > GOES_ON_WINDOW
            or m.reply_to not in (None, answer.reply_to)
            or not m.content.strip()
            or _QUESTION_MARK.search(_URL.sub("", m.content))
            or only_asks(m.content)
            or reports_problem(m.content)
            or not _addressees(m) <= _addressees(answer)
        ):
            break
        more.append(m)
        last = m
    return more


def explicit_answer(message: StoredMessage, following: Sequence[StoredMessage]) -> StoredMessage | None:
    """The first of the messages after `message` (oldest first) that another member sent as a reply to it, or to
    the asker's own follow-ups before it ("This is on Android15 btw"), however late among them: Discord links the
    two. Not a bot's, not a question back, not a word alone ("thx"), not a "same here" with no more to it."""
    asked = {message.id}
    for m in following:
        if m.author_id == message.author_id:
            asked.add(m.id)
        elif m.reply_to in asked and not m.author_is_bot and _answers(m.content, message.content):
            return m
    return None


# What a member says of a fix they tried: "`npm install --force` worked for me", "that was the reason, I ran foundryup
# and it worked after that", "fixed it by reflashing". Read as chains.grounding reads a sentence that tells of a fix
# (the two layers do not import each other; tests/test_grounding.py checks that they agree).
_WORKED = re.compile(
    r"(?i)\b(?:worked|works\s+now|working\s+now|(?:fixed|solved|resolved)\s+(?:it|this|that|the\s+\w+)|"
    r"did\s+the\s+trick|that\s+was\s+(?:it|the\s+(?:reason|problem|issue|fix))|(?:this|that)\s+fixed)\b"
)


def tells_of_a_fix(text: str) -> bool:
    """Does a message say that something fixed a problem ("`npm install --force` worked for me")? Not one that
    still reports the problem ("it worked before, now it fails"), not a question ("has that worked for you?")."""
    text = _URL.sub("", text)
    return bool(_WORKED.search(text)) and not only_asks(text) and not _REPORTS.search(_WORKED.sub("", text))


# The words of a confirmation that say nothing of what the fix was ("yes that worked for me too, thanks!").
_CONFIRMING = frozenset(
    """a all also and after at but for i in it its it's just me my now oh ok okay so that the then this thanks thank
    thx ty too was yes yeah you works worked great perfect awesome much very""".split()
)


def names_the_fix(text: str) -> bool:
    """Does a message that tells of a fix say what it was ("I ran foundryup and it worked")? "thanks, that worked!"
    does not: the fix is in the message it thanks, which the pairing finds as any other answer."""
    words = [w for w in _WORD.findall(_WORKED.sub(" ", _URL.sub("", text)).lower()) if w not in _CONFIRMING]
    return len(words) >= 2


def own_fix(message: StoredMessage, following: Sequence[StoredMessage]) -> StoredMessage | None:
    """The asker's own later message, within ANSWER_WINDOW, that says what fixed it (`tells_of_a_fix` and
    `names_the_fix`): sent on its own or into the thread (as a reply to the question, or to a reply in it: "Do
    you have the latest version of foundry?" - "that was the reason, thanks, I ran foundryup and it worked after
    that"). Said by who had the problem, it is confirmed; it answers before any other member's reply."""
    thread = {message.id}
    for m in following:
        if m.timestamp - message.timestamp > ANSWER_WINDOW:
            return None
        if m.reply_to in thread or (m.author_id == message.author_id and m.reply_to is None):
            thread.add(m.id)
            if m.author_id == message.author_id and tells_of_a_fix(m.content) and names_the_fix(m.content):
                return m
    return None


def found_answer(question: StoredMessage, found: Sequence[StoredMessage]) -> StoredMessage | None:
    """The first of the messages a search found (best first) that another member sent within FOUND_WINDOW after
    `question` and that neither asks nor tells of a problem: an answer given hours later without a reply ("They
    are partially trusted (and run by Revert)", six hours after "Are operators trusted in this protocol?"), past
    the next messages `likely_answer` reads. Found by the same search as the question, it is about the same thing."""
    for m in found:
        if (
            m.author_id != question.author_id
            and not m.author_is_bot
            and timedelta(0) < m.timestamp - question.timestamp <= FOUND_WINDOW
            and _answers(m.content, question.content)
            and not reports_problem(m.content)
        ):
            return m
    return None


# A figure alone ("867", "$5k", "0.5%"), which answers a question asking for a figure, unlike a word alone ("thx").
# Read as chains.grounding reads one (the two layers do not import each other; tests/test_grounding.py checks that
# they agree), as is a question asking for a figure (`chains.grounding.asks_for_figure`).
FIGURE_ALONE = re.compile(r"(?i)^[~≈$€£]?\d[\d,.]*\s*(?:%|k|m|x|usd[ct]?|eth)?[.!]?$")
_ASKS_FIGURE = re.compile(
    r"(?i)\b(?:how\s+(?:much|many|long|old|big|far|often|fast|high)|when|what\s+(?:year|date|day|time|score|price|"
    r"amount|number|percentage|rate|size)|which\s+(?:year|date|day)|cost|costs|price|score|percent|record)\b"
)


def _says_something(text: str, question: str) -> bool:
    """Two words or more, or a figure alone to a question asking for one ("How many submissions on this one?" -
    "867"; to "is the audit still open?", a stray "2" says nothing)."""
    if len(_WORD.findall(text)) >= 2:
        return True
    return bool(FIGURE_ALONE.match(text.strip())) and bool(_ASKS_FIGURE.search(question))


def _answers(text: str, question: str) -> bool:
    """Could this reply to `question` answer it: two words or more or a figure alone to a question asking for one,
    no question, no short "same here" nor "not sure"."""
    words = len(_WORD.findall(text))
    return (
        _says_something(text, question)
        and not only_asks(text)
        and not (_ME_TOO.match(text) and words < ME_TOO_WORDS)
        and not not_known(text)
    )


def not_known(text: str) -> bool:
    """A short reply saying its author does not know ("sorry, I’m not sure about that", "no idea"): it answers
    nothing. A longer one, or one with a figure, a guess, a try or a fix, goes on to say something ("not sure, but I
    think the root is on Arbitrum", "idk, try 0.8.20", "no idea why, restarting fixed it")."""
    return (
        bool(_NOT_KNOWN.match(text))
        and len(_WORD.findall(text)) <= NOT_KNOWN_WORDS
        and not _GOES_ON_TO_SAY.search(text)
        and not tells_of_a_fix(text)
    )


def likely_answer(question: StoredMessage, following: Sequence[StoredMessage]) -> StoredMessage | None:
    """The message among those after `question` (oldest first) most likely to answer it, if any.

    An explicit reply to it (or to the asker's follow-ups) wins, however late (`explicit_answer`);
    otherwise a message by another member within ANSWER_WINDOW that is not itself a question,
    preferring one that names the asker (an @mention or their name), else the first such message, unless it
    replies to another message or mentions another member ("@Jay can you share the link"): it answers something else.
    Bots' messages and the asker's own follow-ups are not answers.
    """
    explicit = explicit_answer(question, following)
    if explicit is not None:
        return explicit
    names = {n.lower() for n in (question.author_name, question.author_display) if n}
    candidates = [
        m
        for m in following
        if m.author_id != question.author_id
        and not m.author_is_bot
        and not only_asks(m.content)
        and _says_something(m.content, question.content)
        and not not_known(m.content)
        and m.timestamp - question.timestamp <= ANSWER_WINDOW
    ]
    if not candidates:
        return None
    for message in candidates:
        text = message.content.lower()
        if question.author_id in message.mentions or any(f"@{name}" in text or name in text.split() for name in names):
            return message
    first = candidates[0]  # it names no asker: a reply or a mention is to another member
    return first if first.reply_to is None and not _mentions_someone(first) else None


_AT_NAME = re.compile(r"(?<![\w@])@([\w.]*\w)")  # "@name" in a message's words; not an e-mail address


def _addressees(message: StoredMessage) -> set[int | str]:
    """Whom a message @mentions: by id (JSON exports, the live channel) and by "@name" in its words."""
    return set(message.mentions) | {name.lower() for name in _AT_NAME.findall(message.content)}


def _mentions_someone(message: StoredMessage) -> bool:
    """An @mention in `message`: by id (JSON exports) or as "@name" in its words (TXT, HTML; not an e-mail address)."""
    return bool(_addressees(message))
