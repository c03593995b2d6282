"""The model factory's transformers engine: the production path (4-bit NF4 + LoRA) proven on a tiny random Mistral,
streamed through the HuggingFacePipeline engine with stop strings, cancellation and KV-cache prefix reuse."""

import json

import pytest
import torch

from config.settings import load_settings
from llm.engines.base import GenerationStats
from llm.model import ModelLoadError, build_model, check_adapter_base

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_mistral(tmp_path_factory, model_folder):
    """A tiny random MistralForCausalLM (with a real tokenizer) and a LoRA adapter for it, on disk."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    root = tmp_path_factory.mktemp("tiny")
    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    base = root / "tiny-mistral"
    MistralForCausalLM(config).save_pretrained(base)
    tokenizer.save_pretrained(base)
    lora = get_peft_model(
        MistralForCausalLM.from_pretrained(base),
        LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM", init_lora_weights=False
        ),
    )
    adapter = root / "adapter"
    lora.save_pretrained(adapter)
    return base, adapter


def test_quantized_model_with_lora_loads_through_the_factory_and_generates(tiny_mistral, tmp_path):
    import bitsandbytes as bnb
    from peft import PeftModel

    base, adapter = tiny_mistral
    settings = load_settings(
        MODEL_NAME=str(base),
        ENABLE_QUANTIZATION=True,
        ADAPTER_PATH=adapter,
        DEVICE="cpu",
        MAX_NEW_TOKENS=8,
        TEMPERATURE=0,
        DATA_DIR=tmp_path,
    )
    bundle = build_model(settings.model_options())
    assert (
        bundle.quantized and bundle.adapter == "adapter" and bundle.device == "cpu" and bundle.engine == "transformers"
    )
    assert isinstance(bundle.model, PeftModel)
    layers = list(bundle.model.modules())
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in layers)
    assert any(
        type(m).__name__ == "Linear4bit" and hasattr(m, "lora_A") for m in layers
    )  # LoRA sits on the 4-bit layers
    out = bundle.llm.invoke("hello there")
    assert isinstance(out, str)
    streamed = "".join(bundle.llm.stream("hello there"))
    assert streamed == out  # greedy: the stream gives the same text
    assert "4-bit NF4" in bundle.describe() and "LoRA" in bundle.describe()


def test_lora_changes_the_output_of_the_base_model(tiny_mistral, tmp_path):
    base, adapter = tiny_mistral
    common = dict(
        MODEL_NAME=str(base), DEVICE="cpu", MAX_NEW_TOKENS=4, TEMPERATURE=0, DATA_DIR=tmp_path, TORCH_DTYPE="float32"
    )
    plain = build_model(load_settings(**common).model_options())
    tuned = build_model(load_settings(**common, ADAPTER_PATH=adapter).model_options())
    ids = plain.tokenizer("hello there", return_tensors="pt").input_ids
    with torch.no_grad():
        assert not torch.allclose(plain.model(ids).logits, tuned.model(ids).logits)


def test_adapter_for_another_base_model_is_refused(tiny_mistral, tmp_path):
    _, adapter = tiny_mistral
    other = tmp_path / "other-adapter"
    other.mkdir()
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "mistralai/Mistral-7B-v0.3"
    (other / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(
        ModelLoadError, match="trained for base model 'mistralai/Mistral-7B-v0.3'.*MODEL_NAME is 'smollm2"
    ):
        check_adapter_base(other, "smollm2-135m-instruct")


def test_missing_model_says_what_to_do(tmp_path):
    with pytest.raises(ModelLoadError, match="MODEL_NAME=.*cannot load the model"):
        build_model(load_settings(MODEL_NAME=str(tmp_path / "nope"), DATA_DIR=tmp_path).model_options())


def test_cuda_requested_without_a_gpu_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ModelLoadError, match="DEVICE=cuda but no CUDA GPU"):
        build_model(load_settings(DEVICE="cuda", DATA_DIR=tmp_path).model_options())


@pytest.fixture(scope="module")
def default_transformers(model_folder):
    """The packaged default on the transformers engine (the HuggingFacePipeline path the GPU uses)."""
    # float32: in bfloat16 on the CPU, a token computed alone and the same token computed in a batch differ
    # slightly, enough to change a greedy choice now and then; float32 shows the cache changes nothing.
    settings = load_settings(
        ENGINE="transformers",
        TEMPERATURE=0,
        MAX_NEW_TOKENS=24,
        MODEL_CACHE_DIR=model_folder.parent,
        TORCH_DTYPE="float32",
    )
    bundle = build_model(settings.model_options())
    assert bundle.engine == "transformers" and type(bundle.llm).__name__ == "StreamingPipeline"
    return bundle


def prompt_for(bundle, text: str) -> str:
    return bundle.tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )


def test_transformers_engine_reuses_the_cache_of_a_shared_prefix_without_changing_the_output(default_transformers):
    llm = default_transformers.llm
    base = prompt_for(default_transformers, "Tell me a story about a ghost cat who lives in an arcade cabinet.")
    longer = base + "Once upon a time"
    first, second, cold = GenerationStats(), GenerationStats(), GenerationStats()
    "".join(llm.stream(base, slot=0, stats=first))
    reused = "".join(llm.stream(longer, slot=0, stats=second))
    assert first.cached_tokens == 0 and second.cached_tokens >= first.prompt_tokens - 1
    assert second.computed_tokens < 10
    fresh = "".join(llm.stream(longer, slot=5, stats=cold))  # another slot: nothing cached there
    assert cold.cached_tokens == 0 and fresh == reused  # the cache changes the speed, not the text


def test_transformers_engine_stops_at_stop_strings_and_on_request(default_transformers):
    llm = default_transformers.llm
    prompt = prompt_for(default_transformers, "Count from one to twenty in words, separated by commas.")
    full = "".join(llm.stream(prompt, slot=1, max_new_tokens=40))
    stop = full[12:16]
    stopped = "".join(llm.stream(prompt, stop=[stop], slot=1, max_new_tokens=40))
    assert len(full) > 20 and stopped == full[: full.index(stop)]  # ends right before the stop string
    calls = {"n": 0}

    def after_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    stats = GenerationStats()
    cancelled = "".join(llm.stream(prompt, slot=1, should_stop=after_three, stats=stats, max_new_tokens=40))
    assert stats.finish == "cancelled" and stats.generated_tokens <= 6 and len(cancelled) < len(full)
