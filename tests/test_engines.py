"""The generation engines on the real packaged model: llama.cpp in the process, and an OpenAI-compatible
server (a real llama.cpp HTTP server on 127.0.0.1, started here through xllamacpp)."""

import json
import urllib.request
from dataclasses import replace

import pytest

from fakes.polling import wait_until
from llm.config import ModelConfig
from llm.engines.base import EngineError, GenerationStats
from llm.engines.lora_gguf import convert_lora
from llm.model import ModelLoadError, build_model, packaged_gguf

pytestmark = pytest.mark.slow
KEY = "test-key-for-the-local-server"


@pytest.fixture(scope="module")
def config(model_folder):
    return ModelConfig(temperature=0.0, max_new_tokens=30, cache_dir=model_folder.parent, context_tokens=384)


@pytest.fixture(scope="module")
def llamacpp(config):
    bundle = build_model(config)
    yield bundle
    bundle.close()


def chat(bundle, text: str) -> str:
    turns = [{"role": "system", "content": "You are Susu, a ghost cat."}, {"role": "user", "content": text}]
    return bundle.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)


def generate(bundle, prompt: str, **kwargs) -> tuple[str, GenerationStats]:
    stats = GenerationStats()
    return "".join(bundle.llm.stream(prompt, stats=stats, **kwargs)), stats


def test_the_default_engine_on_a_cpu_is_llamacpp_on_the_packaged_gguf(llamacpp):
    assert llamacpp.engine == "llamacpp" and type(llamacpp.llm).__name__ == "LlamaCppLLM"
    assert llamacpp.llm.model_path == str(packaged_gguf()) and "via llamacpp" in llamacpp.describe()
    assert llamacpp.tokenizer.chat_template and llamacpp.parameters > 100e6 and llamacpp.weight_bytes > 50e6


def test_llamacpp_streams_and_reuses_the_cache_of_a_shared_prefix(llamacpp):
    prompt = chat(llamacpp, "Tell me about the old arcade cabinet you live in.")
    pieces = list(llamacpp.llm.stream(prompt))
    first, stats = generate(llamacpp, prompt + "It", slot=0)
    longer, again = generate(llamacpp, prompt + "It is dusty", slot=0)
    assert len([p for p in pieces if p]) > 5
    assert again.cached_tokens >= stats.prompt_tokens - 1 and again.computed_tokens <= 4
    assert first and longer and stats.generated_tokens > 0


def test_background_work_on_its_own_slot_leaves_the_replys_cache_alone(llamacpp):
    reply = chat(llamacpp, "Who holds the tetris record in the tavern?")
    generate(llamacpp, reply, slot=0)
    generate(llamacpp, chat(llamacpp, "Summarize: bob said hi. alice said hello."), slot=1)
    _, stats = generate(llamacpp, reply + "Kiwi", slot=0)
    assert stats.cached_tokens >= stats.prompt_tokens - 4


def test_llamacpp_stops_at_stop_strings_and_on_request(llamacpp):
    prompt = chat(llamacpp, "Tell me a long story about the tavern.")
    full, _ = generate(llamacpp, prompt, slot=0)
    stop = full[12:16]
    stopped, stats = generate(llamacpp, prompt, stop=[stop], slot=0)
    assert len(full) > 20 and stopped == full[: full.index(stop)] and stats.finish == "stop"
    calls = {"n": 0}

    def after_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    cancelled, stats = generate(llamacpp, prompt, slot=0, should_stop=after_three, max_new_tokens=200)
    assert stats.finish == "cancelled" and stats.generated_tokens <= 5 and len(cancelled) < len(full)


def test_llamacpp_can_be_stopped_during_a_long_prefill(llamacpp):
    prompt = chat(llamacpp, "remember this: " + " ".join(f"word{i}" for i in range(160)))
    text, stats = generate(llamacpp, prompt, slot=1, should_stop=lambda: True)
    assert text == "" and stats.finish == "cancelled" and stats.generated_tokens == 0
    again, _ = generate(llamacpp, chat(llamacpp, "hi"), slot=1)  # the slot is free again
    assert again


def test_a_prompt_longer_than_the_slot_is_a_clear_error(llamacpp):
    with pytest.raises(EngineError, match="exceeds the available context size"):
        generate(llamacpp, "hello " * 3000)


def test_a_gguf_model_file_is_refused_by_the_transformers_engine_and_a_folder_by_llamacpp(config, tmp_path):
    with pytest.raises(ModelLoadError, match="is a GGUF file: use ENGINE=llamacpp"):
        build_model(replace(config, engine="transformers", model_name=str(packaged_gguf())))
    with pytest.raises(ModelLoadError, match="ENGINE=llamacpp needs a GGUF file"):
        build_model(replace(config, engine="llamacpp", model_name=str(tmp_path)))


def test_unsupported_adapters_are_refused_with_what_to_do(tmp_path, config):
    adapter = tmp_path / "dora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"use_dora": True, "r": 8, "base_model_name_or_path": "smollm2-135m-instruct"})
    )
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(EngineError, match="DoRA.*use ENGINE=transformers"):
        convert_lora(adapter, packaged_gguf(), tmp_path / "out.gguf")
    with pytest.raises(ModelLoadError, match="ADAPTER_PATH=.*DoRA"):
        build_model(replace(config, adapter_path=adapter))


PAIRS = [
    ("Who holds the tetris record in the tavern?", "kiwi does, with 412 lines on the original game boy."),
    ("When is speedrun night?", "every friday at 20:00 utc in the tavern voice channel, hosted by mira."),
    (
        "What is the cursed cartridge?",
        "a grey unlabeled moonlit maze cartridge that saves itself at 3:33 in the morning.",
    ),
]


def perplexity(bundle) -> float:
    import math

    from llm.engines.llamacpp import score

    total = tokens = 0
    for question, answer in PAIRS:
        logprob, count = score(bundle.llm, chat(bundle, question), answer)
        total, tokens = total + logprob, tokens + count
    return math.exp(-total / tokens)


def test_q8_0_weights_are_made_once_and_score_like_the_packaged_file(config, llamacpp, tmp_path):
    import gguf

    from llm.engines.gguf_weights import as_q8_0

    relaid = build_model(replace(config, llamacpp_weights="q8_0", cache_dir=tmp_path))
    made = as_q8_0(packaged_gguf(), tmp_path)
    assert relaid.llm.model_path == str(made) and "(as Q8_0)" in relaid.describe()
    modified = made.stat().st_mtime_ns
    assert as_q8_0(packaged_gguf(), tmp_path) == made and made.stat().st_mtime_ns == modified  # made once
    reader = gguf.GGUFReader(made)
    assert {t.tensor_type.name for t in reader.tensors if len(t.shape) == 2} == {"Q8_0"}
    original = gguf.GGUFReader(packaged_gguf())
    assert reader.fields["tokenizer.chat_template"].contents() == original.fields["tokenizer.chat_template"].contents()
    assert abs(perplexity(relaid) / perplexity(llamacpp) - 1) < 0.1  # the same weights, laid out differently
    relaid.close()


# --- an OpenAI-compatible server ---------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    """A real llama.cpp HTTP server on 127.0.0.1 (xllamacpp), with an API key, serving the packaged model."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(packaged_gguf())
    params.n_ctx = 2048
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 2
    params.verbosity = -1
    params.api_keys = [KEY]
    params.endpoint_slots = params.endpoint_metrics = True
    instance = xllamacpp.Server(params)
    yield instance
    del instance


def http(server, path: str) -> str:
    request = urllib.request.Request(server.listening_address + path, headers={"Authorization": f"Bearer {KEY}"})
    return urllib.request.urlopen(request, timeout=30).read().decode()


def test_openai_engine_streams_from_a_real_server(server, config):
    bundle = build_model(
        replace(config, engine="auto", openai_base_url=server.listening_address + "/v1", openai_api_key=KEY)
    )
    assert bundle.engine == "openai" and "via openai" in bundle.describe()
    prompt = chat(bundle, "Tell me about the tavern.")
    pieces = [p for p in bundle.llm.stream(prompt) if p]
    text, stats = generate(bundle, prompt + "The tavern", stop=["\n"])
    assert len(pieces) > 5 and text and "\n" not in text
    assert stats.prompt_tokens > 10 and stats.cached_tokens > 10  # the server reused its cache for the shared prefix


def test_openai_engine_a_stopped_stream_stops_the_server(server, config):
    bundle = build_model(
        replace(config, engine="openai", openai_base_url=server.listening_address + "/v1", openai_api_key=KEY)
    )
    before = _decodes(server)
    calls = {"n": 0}

    def after_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    _, stats = generate(bundle, chat(bundle, "Write a very long story."), should_stop=after_three, max_new_tokens=400)
    assert stats.finish == "cancelled"
    assert wait_until(lambda: not any(s["is_processing"] for s in json.loads(http(server, "/slots"))), timeout=60)
    assert _decodes(server) - before < 100  # far fewer than the 400 tokens asked for: the server stopped


def _decodes(server) -> int:
    line = next(line for line in http(server, "/metrics").splitlines() if line.startswith("llamacpp:n_decode_total"))
    return int(float(line.split()[-1]))


def test_openai_engine_with_a_wrong_key_or_no_server_is_a_clear_error(server, config):
    wrong = build_model(
        replace(config, engine="openai", openai_base_url=server.listening_address + "/v1", openai_api_key="nope")
    )
    with pytest.raises(EngineError, match="inference server at .* failed.*401"):
        generate(wrong, "hello")
    gone = build_model(replace(config, engine="openai", openai_base_url="http://127.0.0.1:9/v1", timeout_s=2))
    gone.llm.max_retries = 0
    with pytest.raises(EngineError, match="inference server at http://127.0.0.1:9/v1 failed"):
        generate(gone, "hello")


def test_openai_engine_needs_the_models_tokenizer_here(config, tmp_path):
    missing = tmp_path / "no-tokenizer"
    missing.mkdir()
    with pytest.raises(ModelLoadError, match="(?s)tokenizer and chat template.*hf download"):
        build_model(replace(config, engine="openai", openai_base_url="http://127.0.0.1:9/v1", model_name=str(missing)))


def test_the_eval_judge_reaches_an_openai_compatible_server(server):
    from evals.metrics import Scored, Scorer
    from evals.runner import openai_judge

    before = _decodes(server)
    judge = openai_judge(server.listening_address + "/v1", "judge", KEY, timeout_s=120)
    scorer = Scorer(judge_llm=judge)
    assert {"response_relevancy", "faithfulness"} <= set(scorer.metrics)
    scores = scorer.score(
        Scored(
            "who won the golden joystick in 2024?",
            "tomasz won it for repairing 30 Game Boys.",
            "tomasz won it.",
            ["The Golden Joystick 2024 goes to tomasz, who repaired 30 Game Boys."],
            [],
        )
    )
    # A 135M judge's verdicts mean little (it may not even write the JSON asked for: then None); the
    # wiring is what is checked: both metrics ran and the server did the judging.
    assert {"response_relevancy", "faithfulness"} <= set(scores)
    assert all(v is None or 0.0 <= v <= 1.0 for v in scores.values())
    assert _decodes(server) - before > 20
