"""`python -m training.evaluate ADAPTER [--engine E]`: validation perplexity of the base model vs the adapter,
and a few replies side by side, on the engine the bot serves with.

Perplexity is measured on the reply (completion) tokens of the validation samples, with the
model's chat template, exactly as training saw them. On transformers the adapter is switched off
and on (peft); on llama.cpp the adapter is converted to a GGUF LoRA and each reply's tokens are
scored by forced decoding (`chains.engines.llamacpp.score`). The adapter must have been trained
for the configured base model (MODEL_NAME); another base is refused with both names.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from training.data_prep import NotEnoughData, read_jsonl


@dataclass
class Comparison:
    samples: int
    base_perplexity: float
    adapter_perplexity: float
    replies: list[tuple[str, str, str, str]]  # (context, reference, base reply, adapter reply)

    def summary(self) -> str:
        change = (self.adapter_perplexity / self.base_perplexity - 1) * 100
        lines = [
            f"validation perplexity on {self.samples} samples: base {self.base_perplexity:.2f}, "
            f"adapter {self.adapter_perplexity:.2f} ({change:+.1f}%)",
        ]
        for context, reference, base, adapted in self.replies:
            last = context.splitlines()[-1] if context else ""
            lines += [
                "",
                f"after:    {last[:100]}",
                f"real:     {reference[:100]}",
                f"base:     {base[:100]}",
                f"adapter:  {adapted[:100]}",
            ]
        return "\n".join(lines)


def _completion_loss(model, tokenizer, sample: dict, device: str) -> tuple[float, int]:
    """Summed loss and token count of the reply tokens of one sample."""
    import torch

    prompt = tokenizer.apply_chat_template(sample["messages"][:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(sample["messages"], tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False, return_tensors="pt")["input_ids"].to(device)
    labels = ids.clone()
    labels[:, : len(prompt_ids)] = -100
    count = int((labels != -100).sum())
    if count == 0:
        return 0.0, 0
    with torch.no_grad():
        loss = model(input_ids=ids, labels=labels).loss
    return float(loss) * count, count


def _perplexity(model, tokenizer, samples: list[dict], device: str) -> float:
    total, tokens = 0.0, 0
    for sample in samples:
        loss, count = _completion_loss(model, tokenizer, sample, device)
        total, tokens = total + loss, tokens + count
    return math.exp(total / tokens) if tokens else float("nan")


def _reply(model, tokenizer, sample: dict, device: str, max_new_tokens: int = 40) -> str:
    prompt = tokenizer.apply_chat_template(
        sample["messages"][:-1], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    prompt = {k: v.to(device) for k, v in prompt.items()}
    output = model.generate(
        **prompt, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    return tokenizer.decode(output[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True).strip()


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

    from chains.engines.llamacpp import score
    from chains.model import build_model

    config = replace(settings.model_options(), engine="llamacpp", temperature=0.0, max_new_tokens=40, adapter_path=None)
    results = []
    for bundle in (build_model(config), build_model(replace(config, adapter_path=adapter))):
        total, tokens, replies = 0.0, 0, []
        for number, sample in enumerate(validation):
            prompt = bundle.tokenizer.apply_chat_template(
                sample["messages"][:-1], tokenize=False, add_generation_prompt=True
            )
            logprob, count = score(bundle.llm, prompt, sample["messages"][-1]["content"])
            total, tokens = total + logprob, tokens + count
            if number < examples:
                replies.append(bundle.llm.invoke(prompt).strip())
        bundle.close()
        results.append((math.exp(-total / tokens) if tokens else float("nan"), replies))
    (base, base_replies), (adapted, adapter_replies) = results
    replies = [
        (s["messages"][-2]["content"], s["messages"][-1]["content"], b, a)
        for s, b, a in zip(validation[:examples], base_replies, adapter_replies)
    ]
    return Comparison(len(validation), base, adapted, replies)


def compare(
    settings, adapter: Path, data: Path | None = None, limit: int = 40, examples: int = 3, engine: str | None = None
) -> Comparison:
    """Base model vs adapter on the validation samples, on `engine` (default: the one the bot uses)."""
    from peft import PeftModel

    from chains.model import check_adapter_base, resolve_engine
    from training.train_lora import Recipe, load_base

    check_adapter_base(adapter, settings.MODEL_NAME)
    validation = _validation(settings, data, limit)
    if (engine or resolve_engine(settings.model_options())) == "llamacpp":
        return _compare_llamacpp(settings, adapter, validation, examples)
    recipe = Recipe(name="evaluate", base_model=settings.MODEL_NAME, quantization=settings.ENABLE_QUANTIZATION)
    model, tokenizer, device = load_base(recipe, settings)
    model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    with model.disable_adapter():
        base = _perplexity(model, tokenizer, validation, device)
        base_replies = [_reply(model, tokenizer, s, device) for s in validation[:examples]]
    adapted = _perplexity(model, tokenizer, validation, device)
    adapter_replies = [_reply(model, tokenizer, s, device) for s in validation[:examples]]
    replies = [
        (s["messages"][-2]["content"], s["messages"][-1]["content"], b, a)
        for s, b, a in zip(validation[:examples], base_replies, adapter_replies)
    ]
    return Comparison(len(validation), base, adapted, replies)


def main(argv: list[str] | None = None) -> int:
    from app.logs import setup_logging
    from app.settings import load_settings
    from chains.model import ModelLoadError

    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate", description="Base model vs adapter on the validation samples."
    )
    parser.add_argument("adapter", type=Path)
    parser.add_argument("--data", type=Path, help="default: DATA_DIR/training_data.jsonl")
    parser.add_argument("--limit", type=int, default=40, help="validation samples to score")
    parser.add_argument(
        "--engine", choices=["transformers", "llamacpp"], help="default: the engine the bot uses (ENGINE)"
    )
    args = parser.parse_args(argv)
    settings = load_settings()
    setup_logging("WARNING")
    try:
        print(compare(settings, args.adapter, args.data, args.limit, engine=args.engine).summary())
    except (NotEnoughData, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
