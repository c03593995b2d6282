"""Grounded answers: a question is answered from the lore found for it, never against it.

For a question (intents `lore` and `question`), the sentences of the retrieved lore are compared
with the question by embedding, and the closest one is the evidence (the relevant sentence of a
long post, not the whole post). When the evidence is close enough (`min_score`), the generated reply
is checked against it before anything is shown:

- every checkable claim of the reply (numbers, code-like names, proper names) must be in the lore,
  the question, the conversation, the persona or the names of who speaks: a reply that invents a
  figure or a place is stopped as soon as it appears;
- the finished reply must use the evidence beyond the question's own words: one of its figures or
  code-like names when it has some, else enough of its words.

A reply that fails either is replaced by the answer line (`prompts/answer.txt`): the evidence, said
as who said it (and the passage of the message the retrieval ranked first, or of another message that
ranks nearly as high, on a line of its own: see `Evidence.also`). A small model that cannot paraphrase
lore then still answers right; a model that can (Mistral-7B) keeps its own words. `GROUNDING=off` turns the check off.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chains.links import as_read, without_links
from chains.types import LoreItem

logger = logging.getLogger(__name__)

QUESTION_INTENTS = ("lore", "question")
MIN_SENTENCE_CHARS = 12
MAX_SENTENCES = 64  # sentences compared per reply (the best lore items' first ones)
PASSAGE_CHARS = 280  # a message up to this long is quoted whole
THREAD_CHARS = 120  # how much of the thread a reply answers is read with its sentences
KIND_BONUS = 0.2  # a sentence holding what the question asks for (a date for "when") ranks this much higher
ASKING_PENALTY = 0.2  # a sentence of a message that asks ("I wonder if the manager is trusted") ranks lower
SECOND_WITHIN = 0.2  # another message's sentence ranked this close to the best one is quoted too
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_LETTERS = re.compile(r"[^\W\d_]+")
_WORD = re.compile(r"[\w$][\w$.,'-]*\w|\w")
_NUMBER = re.compile(r"(?<![\w.])\d[\d,.]*\d|(?<![\w.])\d")
_CODE_NAME = re.compile(r"\b(?:[a-z]+[A-Z]\w*|\w*_\w+|0x[0-9a-fA-F]+)\b")
_ASKING = re.compile(  # a question word first, after a mention or a filler ("ok where do i get the hash")
    r"(?i)^(?:@\S+\s+)?(?:(?:ok|okay|hey|hi|gm|btw|pls|please)\b[,.]?\s+)*"
    r"(?:what|who|whom|whose|when|where|why|how|is|are|was|were|do|does|did|can|could|will|would|"
    r"should|shall|has|have|had|may|anyone|any)\b"
)
# A statement, then a confirming tag, in one sentence: read as indexes.answers.says_first reads a message (the two
# layers do not import each other; tests/test_grounding.py checks that they agree).
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
_STOPWORDS = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been being it its this that these "
    "those there here what which who whom whose when where why how do does did done can could will would should "
    "may might must have has had i you he she we they me him her us them my your his our their not no yes so just "
    "about into over than then also only very any all some each more most much many such own same too".split()
)

Embed = Callable[[list[str]], Sequence[Sequence[float]]]


@dataclass(frozen=True)
class Evidence:
    """The lore sentence closest to the question, the passage around it, and where it comes from.

    `also`: the best sentence of another message: of one whose sentence ranks nearly as high
    (SECOND_WITHIN), or of the one the retrieval ranked first when the best sentence is not of it. The
    embeddings cannot tell which of two close answers is right ("I think it's pure numbers" or "it
    depends on the case: % for model 3, wei for model 2"), so the answer line quotes both. `also_checks`:
    a reply using `also` alone passes the check (a close second); not so for the first message's, which
    ranks lower by sentence: quoted in the answer line, it lets no vaguer reply through.
    """

    sentence: str
    item: LoreItem
    score: float
    also: Evidence | None = None
    also_checks: bool = True

    @property
    def passage(self) -> str:
        """What the answer line quotes: the whole message when short, else the sentence and what follows it."""
        return _passage(self.sentence, self.item)

    @property
    def quoted(self) -> tuple[Evidence, ...]:
        """What the answer line quotes: this evidence, and the other message's when there is one."""
        return (self, self.also) if self.also else (self,)


def _passage(sentence: str, item: LoreItem) -> str:
    whole = " ".join(item.content.split())
    if len(whole) <= PASSAGE_CHARS:
        return whole
    start = whole.find(sentence)
    if start < 0:
        return sentence
    end = start + len(sentence)
    while end < len(whole) and end - start < PASSAGE_CHARS // 2:  # a short sentence takes the next one along
        following = _SENTENCE.search(whole, end + 1)
        end = following.start() if following else len(whole)
    return whole[start:end].strip()


_ASKS_FIGURE = re.compile(
    r"(?i)\b(?:how\s+(?:much|many|long|old|big|far|often|fast|high)|when|what\s+(?:year|date|day|time|score|price|"
    r"amount|number|percentage|rate|size)|which\s+(?:year|date|day)|cost|costs|price|score|percent|record)\b"
)


# What a question asks for, said by its question word ("when", "how many", "who"), decides; a word of a kind said
# further on ("the end", "the price") only when no question word did: "how many findings did it have in the end?"
# asks for a figure, not a date.
_ASKS_DATE = re.compile(
    r"(?i)^(?:@\S+\s+)?(?:(?:until|till|since|by|from)\s+)?when\b|\b(?:what|which)\s+(?:year|date|day|time|month)\b"
)
_ASKS_AMOUNT = re.compile(
    r"(?i)\bhow\s+(?:much|many|long|big|far|often|high)\b|\bwhat\s+(?:score|price|amount|number|percentage|rate|size)\b"
)
_TELLS_DATE = re.compile(r"(?i)\b(?:deadline|start|starts|open|opens|close|closes|end|ends)\b.*\?$")
_TELLS_AMOUNT = re.compile(r"(?i)\b(?:cost|costs|price|percent|prize\s+pool|raised?)\b")
# A question of an amount that names money ("how much did the drive raise?", "how big is the prize pool?", "how
# many dollars ...?") asks for a sum, not for any number: a sentence with one (`_MONEY`) answers it before one with
# a date or a count. A count, a duration, a share or a rate ("how long does the payout take?", "what percentage of
# the fees ...?") is no sum, whatever it names.
_CURRENCY = r"euros?|eur|dollars?|usd[ct]?|dai|w?eth|w?btc|gbp|chf|bucks"
_NAMES_CURRENCY = re.compile(rf"(?i)\b(?:{_CURRENCY})\b")
_NAMES_MONEY = re.compile(
    r"(?i)\b(?:rais(?:e|ed|ing)|cost(?:s|ing)?|price[sd]?|prizes?|rewards?|pa(?:y|ys|id|yout|youts)|fees?|budget|"
    r"fund(?:s|ed|ing)?|donat\w*|earn(?:s|ed|ing|ings)?|spen[dt]|spending|worth|salary|bount(?:y|ies)|money)\b"
)
_NOT_A_SUM = re.compile(
    r"(?i)\bhow\s+(?:many|long|often|far|high|fast|old)\b|\bwhat\s+(?:percentage|percent|rate|number|score|size)\b"
)
_MONEY = re.compile(  # a figure with its currency: linear (`*+`) on a long run of digits
    r"(?i)[$€£¥₹]\s?\d|(?<![\w.,/-])\d[\d,.]*+(?<=\d)\s?(?:k|m|million|billion|thousand)?\s*"
    rf"(?:[€$£¥₹](?!\w)|(?:{_CURRENCY})\b)|\b(?:eur|usd[ct]?|gbp|chf)\s?\d"
)
_ASKS_PERSON = re.compile(r"(?i)^(?:@\S+\s+)?(?:who|whom|whose)\b|\bwhich\s+(?:member|person|user|warden|one of us)\b")
_ASKS_FIX = re.compile(
    r"(?i)\b(?:fix(?:ed|es)?|solved?|solution|resolved?|workaround|work\s+around|get\s+(?:past|around|rid\s+of))\b"
)
_DATE = re.compile(
    r"(?i)\b\d{1,4}[/.-]\d{1,2}(?:[/.-]\d{2,4})?\b|\b\d{1,2}:\d{2}\b|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|"
    r"nov|dec)[a-z]*\.?\s+\d{1,2}\b|\b\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|"
    r"dec)[a-z]*\b|\b(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|today|tomorrow|yesterday|tonight)\b|"
    r"\b(?:19|20)\d{2}\b"
)
# A figure, with its unit if any ("5k", "3x", "42%", "3weeks", "24h"), not a part of a name or an id ("T114",
# ":10_10:", "0x3f", "@0xBugsy", "v2", "H-01", "1e18"); a raw mention or emoji (`<@123...>`, `<:pepe:123...>`) is
# removed first.
_AMOUNT = re.compile(r"(?i)(?<![\w.#@])(?<![a-z]-)(?!0x[0-9a-f])\d(?:[\d,.]*\d)?[a-z%]{0,6}(?!\w)")
_RAW_TOKEN = re.compile(r"<[@#:&!\w]*\d+>")
# A figure alone ("867", "$5k"): evidence in the thread it answers (`statements`). As indexes.answers reads one.
_FIGURE_ALONE = re.compile(r"(?i)^[~≈$€£]?\d[\d,.]*\s*(?:%|k|m|x|usd[ct]?|eth)?[.!]?$")
SHORT_REPLY_WORDS = 4  # a shorter reply holding no figure or name is read alone, not in its thread (`_in_thread`)
# A count asked for by what it counts ("how many unique high and medium findings did ...?"): the words after "how
# many" up to the verb or preposition that ends them.
_COUNTED = re.compile(r"(?i)\bhow\s+(?:many|much)\s+(?P<what>[^?.!,;:]*)")
_ENDS_COUNTED = frozenset(
    """am are be been can could did do does had has have in is may might of on should to was were will with would
    for from at by per""".split()
)
COUNT_REACH = 3  # a figure this many words or fewer from a word the question counts is a count of it
_PERSON = re.compile(r"@\S|»")
# A sentence telling of a fix that worked: read as indexes.answers.tells_of_a_fix reads a message
# (tests/test_grounding.py checks that they agree).
_FIXED = re.compile(
    r"(?i)\b(?:worked|works\s+now|working\s+now|(?:fixed|solved|resolved)\s+(?:it|this|that|the\s+\w+)|"
    r"did\s+the\s+trick|that\s+was\s+(?:it|the\s+(?:reason|problem|issue|fix))|(?:this|that)\s+fixed)\b"
)


def answer_kind(question: str) -> str:
    """What a question asks for: "date", "amount", "money" (an amount of money: "how much did the drive raise?",
    "how big is the prize pool?"), "person", "fix" (what got past a problem: "what fixed it?",
    "how do I get past it?"), or "" (anything else: a fact, a reason, a how). Its question word ("when", "how
    many", "who") decides before a word of a kind said further on ("... in the end?", "... the price?")."""
    for kind, pattern in (("date", _ASKS_DATE), ("amount", _ASKS_AMOUNT), ("person", _ASKS_PERSON)):
        if pattern.search(question):
            return _sum_or_amount(question) if kind == "amount" else kind
    if _TELLS_DATE.search(question):
        return "date"
    if _TELLS_AMOUNT.search(question):
        return _sum_or_amount(question)
    if _ASKS_FIX.search(question):
        return "fix"
    return ""


def _sum_or_amount(question: str) -> str:
    """The kind of an amount question: "money" when it names a currency, or money and no count, duration, share or
    rate ("how many fees are there?", "how long does the payout take?"); else "amount"."""
    if _NAMES_CURRENCY.search(question):
        return "money"
    return "money" if _NAMES_MONEY.search(question) and not _NOT_A_SUM.search(question) else "amount"


def counted(question: str) -> set[str]:
    """What a "how many" or "how much" question counts, as `content_words`: "how many unique high and medium findings
    did Curves end up with?" -> {"unique", "high", "medium", "findings"}; none for "how much should I return?"."""
    match = _COUNTED.search(question)
    if not match:
        return set()
    words = []
    for word in match.group("what").split():
        if word.lower() in _ENDS_COUNTED:
            break
        words.append(word)
    return content_words(" ".join(words))


def counts(what: set[str], text: str) -> bool:
    """Does `text` hold a figure within COUNT_REACH words of one of the words counted (`counted`), not a date or a
    time? "High risk findings: 6 unique (42 total)" counts findings; "the $88,500 audit opens 03/04/2024" does not."""
    if not what:
        return False
    tokens = [(w.lower().strip(".,'-"), bool(_NUMBER.search(w))) for w in _WORD.findall(_DATE.sub(" ", text))]
    near = [i for i, (word, _) in enumerate(tokens) if any(_same_word(word, w) for w in what)]
    return any(number and any(abs(i - j) <= COUNT_REACH for j in near) for i, (_, number) in enumerate(tokens))


def _same_word(said: str, asked: str) -> bool:
    """One word, give or take its ending: "findings" and "finding", "highs" and "high"."""
    if len(said) >= 5 and len(asked) >= 5:
        return said[:5] == asked[:5]
    return said in (asked, asked + "s", asked + "es") or asked in (said + "s", said + "es")


def fits(kind: str, text: str) -> bool:
    """Does `text` hold what a question of this kind asks for (a date, a figure, a sum of money, a member)?"""
    if kind == "date":
        return bool(_DATE.search(text))
    if kind == "amount":  # not the numbers of a link: a message id, a release tag
        return bool(_AMOUNT.search(_RAW_TOKEN.sub(" ", without_links(text))))
    if kind == "money":
        return bool(_MONEY.search(text))
    if kind == "person":
        return bool(_PERSON.search(text) or proper_names(text))
    if kind == "fix":  # one who tells what worked ("`npm install --force` worked for me"), not one who still asks
        return bool(_FIXED.search(text)) and not _asks(text)
    return False


def seeks(item: LoreItem) -> bool:
    """A message that asks rather than answers: one with a question in it (not a confirming tag after a statement:
    "Its called LeverageTransformer.sol, which readme?" answers), or one the retriever found asking
    (`LoreItem.asks`: "I wonder if the manager is trusted", see indexes.answers.only_asks)."""
    parts = [" ".join(part.split()).strip("*_~ ") for part in _SENTENCE.split(item.content) if part.strip()]
    return item.asks or any(_asks(part) and not said_before_asking(part) for part in parts)


def asks_for_figure(question: str) -> bool:
    """A question whose answer is a figure: an amount, a count, a date, a score ("how much did it raise?")."""
    return bool(_ASKS_FIGURE.search(question))


_ASKS_TASTE = re.compile(
    r"(?i)\b(?:(?:best|worst|good|better)(?!\s+(?:way|ways|method|practice|practices|settings?|option)\b)|"
    r"favou?rite|prefer|worth|recommend(?:s|ations?)?|suggest(?:s|ions?)?|which\s+one|should\s+i|would\s+you|"
    r"do\s+you\s+(?:like|love|think|prefer)|what\s+do\s+you\s+think|your\s+(?:opinion|take|view|pick))\b"
)


def asks_for_taste(question: str) -> bool:
    """A question for the character's own taste or advice ("what's the best mario game?", "should I buy bitcoin?"),
    which its answer may give with a figure of its own ("super mario 64")."""
    return bool(_ASKS_TASTE.search(question))


def claims(text: str) -> set[str]:
    """Numbers, code-like names and proper names: what a reply can get wrong by inventing it."""
    return figures(text) | proper_names(text)


def figures(text: str) -> set[str]:
    """Numbers and code-like names: the claims a reply to a question never makes up, lore or not."""
    numbers = {n.rstrip(".,").replace(",", "") for n in _NUMBER.findall(text)}
    return {n for n in numbers if n} | {c.lower() for c in _CODE_NAME.findall(text)}


def proper_names(text: str) -> set[str]:
    """Capitalised words inside a sentence ("a small town called Akron, Ohio"), lowercased.

    The first word of a sentence, of a quote or after a colon is not a name, nor is a common word
    capitalised for emphasis ("The"), a mention, a link or a word in capitals.
    """
    return {name for run in name_runs(text) for name in run}


def name_runs(text: str) -> list[set[str]]:
    """The proper names of a text (`proper_names`), those standing next to each other as one: "did Revert Lend have
    any?" -> [{"revert", "lend"}]."""
    runs: list[set[str]] = []
    for part in _SENTENCE.split(text):
        tokens = part.split()
        last = -2
        for at, (before, token) in enumerate(zip(tokens, tokens[1:])):
            word = token.strip(".,;:!?)(*_~")
            starts = before.endswith(":") or word[:1] in "\"'“‘«"
            if starts or not (len(word) >= 3 and word.isalpha() and word[0].isupper() and word[1:].islower()):
                continue
            if word.lower() in _STOPWORDS:
                continue
            if at == last + 1 and before == before.rstrip(".,;:!?)"):  # "Revert Lend", not "Bob, Alice"
                runs[-1].add(word.lower())
            else:
                runs.append({word.lower()})
            last = at
    return runs


def known_claims(supports: Sequence[str], names: Sequence[str] = ()) -> set[str]:
    """The claims the supports (lore, question, conversation) and the names of who speaks hold.

    Counted once per reply. A proper name is known when the supports or names have the word in any
    case ("the NXT Randomizer" is no invention next to "randomizer"); a name is no invented figure
    either ("as 0xandy_2014_07_22 put it").
    """
    words = {w.lower() for text in [*supports, *names] for w in _LETTERS.findall(text)}  # proper names among them
    return set().union(*(figures(s) for s in [*supports, *names])) | words


def content_words(text: str) -> set[str]:
    words = {w.lower().strip(".,'-") for w in _WORD.findall(text)}
    return {w for w in words if w and w not in _STOPWORDS and (len(w) > 2 or w.isdigit())}


def sentences(text: str) -> list[str]:
    """The statements of a text: no questions (a question never answers one), no bare links.

    A statement a confirming tag ends is kept without it ("Its called LeverageTransformer.sol, which
    readme?" says "Its called LeverageTransformer.sol").
    """
    parts = [" ".join(p.split()).strip("*_~ ") for p in _SENTENCE.split(text)]
    said = [said_before_asking(p) if _asks(p) else p for p in parts]
    bare = [(p, as_read(p)) for p in said]
    return [p for p, words in bare if len(words) >= MIN_SENTENCE_CHARS or _short_answer(words)]


def statements(item: LoreItem) -> list[str]:
    """The `sentences` of a lore item; and a figure alone that replies to a thread, which it answers there ("How many
    submissions on this one?" - "867": read with its thread, `_in_thread`)."""
    found = sentences(item.content)
    alone = " ".join(item.content.split())
    if not found and item.thread and _FIGURE_ALONE.match(alone):
        return [alone]
    return found


def _short_answer(sentence: str) -> bool:
    """A short statement with a figure or code-like name in it ("3e16 is 3%"): an answer, unlike "ok thanks"."""
    return bool(figures(sentence)) and len(content_words(sentence)) >= 2


def said_before_asking(sentence: str) -> str:
    """The statement a confirming tag ends in one sentence ("it's in the readme, right?"), or ""."""
    match = _TAGGED.match(sentence)
    said = match["said"].strip() if match else ""
    if len(said.split()) < 3 or _SAID_ASKS.search(said):
        return ""  # all of it asks ("If I call it twice, is it ok?", "May I ask, is it by design?")
    return said


def _in_thread(sentence: str, item: LoreItem) -> str:
    """A reply's sentence read after the start of the thread it answers.

    "This is just for signal to marketplaces" answers "why is the royalty address hardcoded?" only
    in its thread. The start (THREAD_CHARS) is the question; more of the thread would outweigh the
    sentence itself (measured on the eval sets: facts in the evidence 9 -> 11 with the whole
    thread, 12 with its start).
    """
    if not item.thread or (len(_WORD.findall(item.content)) < SHORT_REPLY_WORDS and not claims(sentence)):
        return sentence  # "a rich wallet" would take the thread's meaning; "867", "Hermes Tokens" answer in it
    return f"{item.thread[:THREAD_CHARS]} / {sentence}"


def _misses_figure(question: str, sentence: str, evidence: str) -> bool:
    """Does `sentence` lack a figure or code-like name of the question that `evidence` holds? Then it tells of
    another thing ("the Golden Joystick 2024", when the 2025 one is asked for)."""
    return bool(figures(question) & (figures(evidence) - figures(sentence)))


def _asks_and_answered(item: LoreItem, answered: set[int], asks: set[int]) -> bool:
    """A message that asks (`seeks`: its `id()` in `asks`), whose answer is in the lore too (a reply to it that does
    not ask back): the names it shares with the question are the asking's ("fails on ProMicro_OTA"), and its answer,
    which need not repeat them, comes before it."""
    return bool(item.message_ids) and item.message_ids[0] in answered and id(item) in asks


def _as_answer(sentence: str, item: LoreItem, asking: set[int]) -> str:
    """A sentence with the start of the thread it answers, when that thread is a message of the lore that asks
    (`asking`): the names the asking shares with the question are its answer's too ("fails on ProMicro_OTA" -
    "You need to have force scanning turned on"). Else the sentence alone: a reply to a question the retrieval did
    not find ("there it goes the retirement") takes nothing from it."""
    return _in_thread(sentence, item) if asking.intersection(item.message_ids[1:]) else sentence


def _asks(sentence: str) -> bool:
    """A question, with or without its question mark."""
    return sentence.rstrip(")*_ ").endswith("?") or bool(_ASKING.match(sentence))


class Grounding:
    """Finds the evidence for a question and checks replies against it."""

    def __init__(
        self,
        embed: Embed,
        min_score: float = 0.5,
        kind_bonus: float = KIND_BONUS,
        asking_penalty: float = ASKING_PENALTY,
        second_within: float | None = SECOND_WITHIN,
        common: Callable[[set[str]], set[str]] | None = None,
    ) -> None:
        """`second_within`: how close another message's best sentence must rank to be quoted too (None: never).
        `common`: which of the names a question asks about the channel speaks of everywhere (its topic: "Curves" in
        the Curves audit's channel, `MessageStore.common_words`); None: every name counts."""
        self.embed = embed
        self.common = common
        self.min_score = min_score
        self.kind_bonus = kind_bonus
        self.asking_penalty = asking_penalty
        self.second_within = second_within

    def evidence(self, question: str, intent: str, lore: Sequence[LoreItem]) -> Evidence | None:
        """The lore sentence that answers a question best, if close enough; None for other intents or weak lore.

        A sentence must say something beyond the question's own words ("the cursed cartridge." says
        nothing about it); a figure alone that replies to a thread is one (`statements`: "867" to "How many
        submissions on this one?"). One whose passage (what the answer line quotes; its statements, not a question in
        it) holds the figures and names the question asks about ("the Golden Joystick 2025"; "Hermes Tokens" with
        "hTokens" on its next line), if close enough to answer (`min_score`), comes before near ones without them,
        which embeddings barely tell apart (but
        not a sentence of a message that asks, when its answer is in the lore too: that answer holds
        the asking's names, `_as_answer`; and not for a name the whole channel speaks of, `common`: "I got
        my Curves awards" holds "Curves" as most of the channel does, nor for a name said as one with it,
        "Lend" of "Revert Lend"); among those, the closest by
        embedding, a sentence holding what the question asks for (`answer_kind`: a date, an amount, a sum
        of money, or any figure when none of the sentences holds a sum, a count of what "how many" counts
        (`counts`), or any figure when none holds one, a member, what fixed a problem)
        ranking KIND_BONUS higher, and needing as much less similarity to
        count as close enough (`min_score`): "returned 90% of the excess to 0xd9d3..." at 0.49 answers
        "how much should I return?". Another message's best sentence that ranks within `second_within` of it,
        holds as much of what was asked and is close enough too comes with it (`Evidence.also`). Without
        one, when the evidence is not of the message the retrieval ranked first (on its words, the thread
        it answers and its best part, where one sentence's embedding is a weaker guide: "It is an L2
        network built on the Optimism Superchain." against "So the name is Form network.."), that
        message's best sentence comes with it, if close enough and not lacking a figure of the question
        that the evidence holds.
        """
        if intent not in QUESTION_INTENTS or not question.strip() or not lore:
            return None
        asked_words = content_words(question)
        said = [(s, item) for item in lore for s in statements(item) if content_words(s) - asked_words]
        candidates = said[:MAX_SENTENCES]
        if not candidates:
            return None
        import numpy as np

        texts = [question, *(as_read(_in_thread(s, item)) for s, item in candidates)]
        vectors = np.asarray(self.embed(texts), dtype=float)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-9)
        scores = vectors[1:] @ vectors[0]
        asked = claims(question)
        runs = name_runs(question)
        named = {name for run in runs for name in run}
        if named and self.common:  # not a figure: "2025" picks the year asked for, however often it is said
            topic = self.common(named)  # and a name said as one with it: "Lend" of "Revert Lend" in Revert's channel
            asked -= topic | {name for run in runs if run & topic for name in run}
        asks = {id(item) for item in lore if seeks(item)}  # each message read once, not once per sentence
        answered = {i for item in lore if id(item) not in asks for i in item.message_ids[1:]}  # what answers answer
        asking = {item.message_ids[0] for item in lore if item.message_ids and id(item) in asks}
        passages = [_passage(s, item) for s, item in candidates]
        told = [" ".join(sentences(passage)) or s for passage, (s, _) in zip(passages, candidates, strict=True)]
        holds = [  # what the passage says, not what it asks: "What does hTokens stand for? ..." holds no "hTokens"
            0 if _asks_and_answered(item, answered, asks) else len(asked & claims(_as_answer(said, item, asking)))
            for said, (_, item) in zip(told, candidates, strict=True)
        ]
        kind = answer_kind(question)
        fitting = [bool(kind) and fits(kind, passage) for passage in passages]
        if kind == "money" and not any(fitting):  # no sum among them: any figure may be it ("it raised 2340")
            fitting = [fits("amount", passage) for passage in passages]
        what = counted(question) if kind == "amount" else set()
        if what and any(counting := [counts(what, passage) for passage in passages]):
            fitting = counting  # a count of what is asked, when one holds it, before any figure
        close = [  # how near an answer: its words, and whether it holds what the question asks for
            score + (self.kind_bonus if fit else 0.0) for score, fit in zip(scores, fitting, strict=True)
        ]
        ranked = [
            near - (self.asking_penalty if id(item) in asks else 0.0)
            for near, (_, item) in zip(close, candidates, strict=True)
        ]
        # names count for a sentence close enough to answer: one too far keeps no close one out for them
        order = sorted(
            range(len(candidates)),
            key=lambda i: (holds[i] if close[i] >= self.min_score else 0, ranked[i]),
            reverse=True,
        )
        best = order[0]
        quoted = _passage(*candidates[best])
        second = next(  # another message, never one that asks (a question is no second answer), never a repost
            (
                i
                for i in order
                if candidates[i][1] is not candidates[best][1]
                and id(candidates[i][1]) not in asks
                and _passage(*candidates[i]) != quoted
            ),
            None,
        )
        also, also_checks = None, True
        if (
            second is not None
            and self.second_within is not None
            and holds[second] == holds[best]
            and ranked[second] >= ranked[best] - self.second_within
            and scores[second] >= self.min_score
        ):
            also = Evidence(candidates[second][0], candidates[second][1], float(scores[second]))
        first = lore[0]  # what the retrieval ranks first: on its words, thread and best part, not one sentence's
        if also is None and first is not candidates[best][1] and id(first) not in asks:
            top = next((i for i in order if candidates[i][1] is first and _passage(*candidates[i]) != quoted), None)
            if (
                top is not None
                and scores[top] >= self.min_score
                and not _misses_figure(question, candidates[top][0], candidates[best][0])
            ):
                also, also_checks = Evidence(candidates[top][0], first, float(scores[top])), False
        found = Evidence(candidates[best][0], candidates[best][1], float(scores[best]), also, also_checks)
        logger.debug(
            "evidence %.3f from message by %s (%d characters)%s",
            found.score,
            found.item.author,
            len(found.sentence),
            f", and {also.score:.3f} from another by {also.item.author}" if also else "",
        )
        return found if close[best] >= self.min_score else None

    @staticmethod
    def unsupported(said: str | set[str], known: set[str]) -> set[str]:
        """The claims of a reply (its text, or its claims) that are not among the known ones."""
        return (claims(said) if isinstance(said, str) else said) - known

    @staticmethod
    def uses(text: str, evidence: Evidence, question: str) -> bool:
        """Does the reply use the evidence (or the other message quoted with it, when that is a close second:
        `Evidence.also_checks`) beyond the question's own words?

        Its figures and code-like names, when it has any: one of them, and at least two (an eighth) of
        its words, must be in the reply (a figure alone can be chance: "3D" is not "all 3 randomizer
        options"); else its words (at least two, and a quarter of them).

        A reply to a question of when that tells a date none of the quoted passages (nor the question) holds does not
        use them, whatever it shares: "open 14 days ... a new audit on 09/23/23", when the evidence says "runs
        through 10/06/2023 (14 days)" (a date the claim check lets through when a lore message was posted that day).
        """
        checked = evidence.quoted if evidence.also_checks else (evidence,)
        if answer_kind(question) == "date" and _tells_another_date(
            text, [question, *(q.passage for q in evidence.quoted)]
        ):
            return False
        return any(_uses(text, quoted.passage, question) for quoted in checked)


def _dates(text: str) -> list[set[int]]:
    """The numbers of each date or time a text tells with digits ("10/06/2023" -> {10, 6, 2023}, "20:00" -> {20, 0})."""
    return [{int(n) for n in re.findall(r"\d+", told)} for told in _DATE.findall(text) if re.search(r"\d", told)]


def _tells_another_date(text: str, sources: Sequence[str]) -> bool:
    """Does `text` tell a date none of `sources` tells, when they tell any? One whose numbers all stand in one of
    theirs is theirs ("10/06" and "Oct 6" of "10/06/2023")."""
    told = [date for source in sources for date in _dates(source)]
    return bool(told) and any(not any(date <= known for known in told) for date in _dates(text))


def _uses(text: str, passage: str, question: str) -> bool:
    key = claims(passage) - claims(question)
    new = content_words(passage) - content_words(question)
    shared = len(new & content_words(text))
    if key:  # a figure or name of the evidence, and some of its words: a shared "3" alone can be chance
        return bool(key & claims(text)) and shared >= min(len(new), max(2, len(new) / 8))
    return not new or shared >= max(2, len(new) / 4)


def embedder(embed_model) -> Embed:
    """A LlamaIndex embedding model (the lore index's) as a batch function."""
    return lambda texts: embed_model.get_text_embedding_batch(texts)
