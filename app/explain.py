"""Human-readable account of how a reply was made (`--explain`)."""

from __future__ import annotations

from chains.reply import STAGES, ReplyResult


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms" if seconds >= 0.001 else f"{seconds * 1000:.2f}ms"


def _score_parts(s: dict[str, float]) -> str:
    """What a lore item's score is made of (indexes.vector.RetrievalWeights: each part before its weight): its
    similarity, the share of the question's words it holds, its recency and engagement, the lore boost, the
    penalty of a message that only asks, and whether it took the last place by its words (`lexical_slot`)."""
    parts = [
        f"sim {s.get('similarity', 0):.2f} lex {s.get('lexical', 0):.2f} rec {s.get('recency', 0):.2f} "
        f"eng {s.get('engagement', 0):.2f} lore +{s.get('lore_boost', 0):.2f}"
    ]
    if s.get("question"):
        parts.append(f"asks {s['question']:+.2f}")
    if s.get("by_words"):
        parts.append("last place by its words")
    return ", ".join(parts)


def explain(result: ReplyResult) -> str:
    lines = ["--- explain ---"]
    a = result.analysis
    if a:
        flags = ", ".join(a.flags) or "-"
        lines.append(
            f"intent: {a.intent} | tone: sentiment {a.tone.sentiment:+.2f}, excitement {a.tone.excitement:.2f}, "
            f"hostility {a.tone.hostility:.2f} | needs lore: {'yes' if a.needs_lore else 'no'} | flags: {flags}"
        )
    lines.append(f"lore ({len(result.lore)}):" + (f" [{result.lore_warning}]" if result.lore_warning else ""))
    for item in result.lore:
        parts = _score_parts(item.scores) if item.scores else item.source
        reasons = f" (lore: {item.reasons})" if item.reasons else ""
        text = item.content.replace("\n", " ")
        lines.append(
            f"  {item.score:.3f} [{parts}] {item.author} {item.date}: "
            f"{text[:100]}{'…' if len(text) > 100 else ''}{reasons}"
        )
    if result.assembled:
        c = result.assembled
        sections = ", ".join(f"{k} {v}" for k, v in c.sections.items())
        lines.append(f"budget: {c.tokens}/{c.budget} tokens ({sections})")
        lines.append("cut: " + ("; ".join(c.cut) if c.cut else "nothing"))
    for i, verdict in enumerate(result.attempts, 1):
        status = "ok" if verdict.ok else "rejected: " + ", ".join(verdict.problems)
        fixes = ", ".join(verdict.fixes) or "none"
        lines.append(f"validation attempt {i}: {status} (fixes: {fixes})")
    if not result.ok:
        lines.append(f"fallback line used: {result.error}")
    timings = " ".join(f"{k} {_ms(result.timings[k])}" for k in (*STAGES, "total") if k in result.timings)
    lines.append(f"timings: {timings}")
    if result.prompt_tokens and result.reuse_reported:
        computed = result.prompt_tokens - result.reused_tokens
        lines.append(
            f"prompt: {result.prompt_tokens} tokens, {result.reused_tokens} reused from the engine's cache, "
            f"{computed} computed"
        )
    elif result.prompt_tokens:
        lines.append(f"prompt: {result.prompt_tokens} tokens (the engine did not report how many it reused)")
    if result.generated_tokens:
        lines.append(f"generated: {result.generated_tokens} tokens")
    return "\n".join(lines)
