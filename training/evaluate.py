"""`python -m training.evaluate ADAPTER [--engine E]`: what an adapter changes, on the engine the bot serves with.

- Validation perplexity of the base model and of the adapter on the reply tokens of the
  validation samples, each rendered into the prompt a live reply gets (`training.render`: the
  configured prompt files, persona and CONTEXT_TOKENS), and a few replies side by side. On
  transformers the adapter is switched off and on (peft) and the reply's tokens include the one
  that ends the character's turn, exactly as training saw them; on llama.cpp the adapter is
  converted to a GGUF LoRA and the reply text is scored by forced decoding
  (`llm.engines.llamacpp.score`).
- `python -m evals adapter ADAPTER` adds the eval sets (the tuned ones by default) answered by the
  whole bot without and with the adapter, metric by metric (`evals.adapter`), so an admin sees whether
  training helped the answers as well as the perplexity.

The adapter must have been trained for the configured base model (MODEL_NAME); another base is
refused with both names.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from training.data_prep import NotEnoughData, read_jsonl
from training.render import Rendered, SampleRenderer


@dataclass
class Comparison:
    samples: int
    base_perplexity: float
    adapter_perplexity: float
    replies: list[tuple[str, str, str, str]]  # (message answered, reference, base reply, adapter reply)
    evals: dict[str, tuple[dict, dict]] = field(default_factory=dict)  # set -> (means without, means with)
    skipped: list[str] = field(default_factory=list)  # eval sets that could not run, with why

    def summary(self) -> str:
        change = (self.adapter_perplexity / self.base_perplexity - 1) * 100
        lines = [
            f"validation perplexity on {self.samples} samples: base {self.base_perplexity:.2f}, "
            f"adapter {self.adapter_perplexity:.2f} ({change:+.1f}%)",
        ]
        for message, reference, base, adapted in self.replies:
            lines += [
                "",
                f"after:    {message[:100]}",
                f"real:     {reference[:100]}",
                f"base:     {base[:100]}",
                f"adapter:  {adapted[:100]}",
            ]
        for name, (without, with_adapter) in self.evals.items():
            lines += ["", f"eval set {name}:", f"  {'metric':<22} {'base':>7} {'adapter':>8} {'change':>8}"]
            for metric in dict.fromkeys([*without, *with_adapter]):
                a, b = without.get(metric), with_adapter.get(metric)
                delta = f"{b - a:+.3f}" if a is not None and b is not None else "-"
                lines.append(f"  {metric:<22} {_fmt(a):>7} {_fmt(b):>8} {delta:>8}")
        lines += [f"eval set {why}" for why in self.skipped]
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _completion_loss(model, rendered: Rendered, device: str) -> tuple[float, int]:
    """Summed loss and token count of the reply tokens of one rendered sample."""
    import torch

    ids = torch.tensor([rendered.prompt_ids + rendered.completion_ids], device=device)
    labels = ids.clone()
    labels[:, : len(rendered.prompt_ids)] = -100
    count = len(rendered.completion_ids)
    if count == 0:
        return 0.0, 0
    with torch.no_grad():
        loss = model(input_ids=ids, labels=labels).loss
    return float(loss) * count, count


def _perplexity(model, rendered: list[Rendered], device: str) -> float:
    total, tokens = 0.0, 0
    for sample in rendered:
        loss, count = _completion_loss(model, sample, device)
        total, tokens = total + loss, tokens + count
    return math.exp(total / tokens) if tokens else float("nan")


def _reply(model, tokenizer, rendered: Rendered, device: str, max_new_tokens: int = 40) -> str:
    import torch

    ids = torch.tensor([rendered.prompt_ids], device=device)
    output = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
    )
    return tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True).strip()


def _validation(settings, data: Path | None, limit: int) -> list[dict]:
    data = data or settings.training_data
    samples, _ = read_jsonl(data)
    validation = [s for s in samples if s.get("split") == "validation"][:limit]
    if not validation:
        raise NotEnoughData(f"{data} has no validation samples: run `python -m training.data_prep` again")
    return validation


def _compare_llamacpp(settings, adapter: Path, validation: list[dict], examples: int) -> Comparison:
    """Base GGUF vs base + GGUF LoRA, both in llama.cpp."""
    from dataclasses import replace

    from llm.engines.llamacpp import score
    from llm.model import build_model

    config = replace(settings.model_options(), engine="llamacpp", temperature=0.0, max_new_tokens=40, adapter_path=None)
    results = []
    for bundle in (build_model(config), build_model(replace(config, adapter_path=adapter))):
        renderer = SampleRenderer.from_settings(bundle.tokenizer, settings)
        total, tokens, replies = 0.0, 0, []
        for number, sample in enumerate(validation):
            prompt = renderer.render(sample).prompt
            logprob, count = score(bundle.llm, prompt, renderer.assembler.guard(sample["target"]))
            total, tokens = total + logprob, tokens + count
            if number < examples:
                replies.append(bundle.llm.invoke(prompt).strip())
        bundle.close()
        results.append((math.exp(-total / tokens) if tokens else float("nan"), replies))
    (base, base_replies), (adapted, adapter_replies) = results
    return Comparison(
        len(validation), base, adapted, _side_by_side(validation[:examples], base_replies, adapter_replies)
    )


def _side_by_side(samples: list[dict], base: list[str], adapted: list[str]) -> list[tuple[str, str, str, str]]:
    return [(s["message"]["content"], s["target"], b, a) for s, b, a in zip(samples, base, adapted)]


def compare(
    settings, adapter: Path, data: Path | None = None, limit: int = 40, examples: int = 3, engine: str | None = None
) -> Comparison:
    """Base model vs adapter on the validation samples, on `engine` (default: the one the bot uses)."""
    from peft import PeftModel

    from llm.model import check_adapter_base, resolve_engine
    from training.recipe import Recipe
    from training.train_lora import load_base

    check_adapter_base(adapter, settings.MODEL_NAME)
    validation = _validation(settings, data, limit)
    if (engine or resolve_engine(settings.model_options())) == "llamacpp":
        return _compare_llamacpp(settings, adapter, validation, examples)
    recipe = Recipe(name="evaluate", base_model=settings.MODEL_NAME, quantization=settings.ENABLE_QUANTIZATION)
    model, tokenizer, device = load_base(recipe, settings)
    model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    renderer = SampleRenderer.from_settings(tokenizer, settings)
    rendered = [renderer.render(sample) for sample in validation]
    with model.disable_adapter():
        base = _perplexity(model, rendered, device)
        base_replies = [_reply(model, tokenizer, r, device) for r in rendered[:examples]]
    adapted = _perplexity(model, rendered, device)
    adapter_replies = [_reply(model, tokenizer, r, device) for r in rendered[:examples]]
    return Comparison(
        len(validation), base, adapted, _side_by_side(validation[:examples], base_replies, adapter_replies)
    )


def main(argv: list[str] | None = None) -> int:
    from config.logs import setup_logging
    from config.settings import load_settings
    from errors import UserError

    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate",
        description="Base model vs adapter on the validation samples (with the eval sets: python -m evals adapter).",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        setup_logging("WARNING")
        print(compare(settings, args.adapter, args.data, args.limit, engine=args.engine).summary())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The adapter and how its validation samples are scored (shared with `python -m evals adapter`)."""
    parser.add_argument("adapter", type=Path)
    parser.add_argument("--data", type=Path, help="default: DATA_DIR/training_data.jsonl")
    parser.add_argument("--limit", type=int, default=40, help="validation samples to score")
    parser.add_argument(
        "--engine", choices=["transformers", "llamacpp"], help="default: the engine the bot uses (ENGINE)"
    )


if __name__ == "__main__":
    sys.exit(main())
