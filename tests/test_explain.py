from app.explain import explain
from chains.drafting import ReplyResult
from chains.types import LoreItem


def lore_lines(*items: LoreItem) -> list[str]:
    text = explain(ReplyResult(text="hi", ok=True, lore=list(items)))
    return [line for line in text.splitlines() if line.startswith("  ")]


def test_each_lore_item_says_what_its_score_is_made_of():
    summary = LoreItem(
        content="High risk findings: 6 unique (42 total)",
        author="thebrittfactor",
        score=0.41,
        scores={
            "similarity": 0.26,
            "lexical": 0.4,
            "recency": 0.01,
            "engagement": 0.0,
            "lore_boost": 0.0,
            "question": -0.0,
            "by_words": 1.0,
        },
    )
    asking = LoreItem(
        content="how many findings were there?",
        author="kiwi",
        score=0.5,
        scores={
            "similarity": 0.7,
            "lexical": 0.3,
            "recency": 0.02,
            "engagement": 0.5,
            "lore_boost": 0.0,
            "question": -0.1,
        },
    )
    pinned = LoreItem(content="Welcome to the audit", author="kartoonjoy", score=0.3, source="lorebook")
    by_words, asks, lorebook = lore_lines(summary, asking, pinned)
    # the share of the question's words too, and the place it took by them; a penalty of none is not said
    assert "[sim 0.26 lex 0.40 rec 0.01 eng 0.00 lore +0.00, last place by its words]" in by_words
    assert "[sim 0.70 lex 0.30 rec 0.02 eng 0.50 lore +0.00, asks -0.10]" in asks
    assert "[lorebook]" in lorebook
