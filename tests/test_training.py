"""Training data from the store, and LoRA training with trl on the default model (a few CPU steps)."""

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from indexes.filters import Filters
from indexes.importer import import_exports
from indexes.records import StoredMessage
from indexes.store import MessageStore
from training.data_prep import NotEnoughData, build_samples, prepare, read_jsonl, split_by_time, write_jsonl

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def message(i, author, content, bot=False):
    return StoredMessage(id=i, channel_id=1, author_id=author, author_name=f"user{author}", timestamp=T0 + timedelta(minutes=i),
                         content=content, author_is_bot=bot)  # fmt: skip


def test_samples_have_context_target_and_every_author():
    messages = [
        message(1, 10, "who wants to race moonlit maze tonight?"),
        message(2, 11, "me! I have been practising level 5 all week"),
        message(3, 12, "!play some music"),
        message(4, 99, "Now playing: a song", bot=True),
        message(5, 10, "ok"),
        message(6, 13, "https://example.com/clip"),
        message(7, 11, "Me, I have been practising level 5 all week!!"),
        message(8, 14, "count me in, I will bring snacks for everyone"),
        message(9, 15, "my messages must never be learned from"),
    ]
    samples, report = build_samples(messages, context=3, opted_out={15})
    assert [s["messages"][-1]["content"] for s in samples] == [
        "me! I have been practising level 5 all week", "count me in, I will bring snacks for everyone",
    ]  # fmt: skip
    assert report.dropped == {
        "no_context": 1,
        "command": 1,
        "bot": 1,
        "too_short": 1,
        "link_only": 1,
        "near_duplicate": 1,
        "opted_out": 1,
    }
    last = samples[-1]
    assert [m["role"] for m in last["messages"]] == ["system", "user", "assistant"]
    assert last["messages"][1]["content"].splitlines() == [
        "user11: me! I have been practising level 5 all week", "user10: ok", "user11: Me, I have been practising level 5 all week!!",
    ]  # fmt: skip
    assert last["author_ids"] == [10, 11, 14] and "never be learned" not in json.dumps(samples)


def test_persona_user_and_time_split():
    def topic(i):  # distinct words, so no message is a near-duplicate of another
        return "".join(chr(97 + int(d)) for d in str(i))

    messages = [message(i, 10 + i % 3, f"a message about {topic(i)} in the tavern") for i in range(1, 31)]
    samples, report = build_samples(messages, persona_user=11)
    assert samples and all(s["target_author"] == "user11" for s in samples) and report.dropped["other_member"] > 0
    split_by_time(samples, 0.25)
    splits = [s["split"] for s in samples]
    assert splits == sorted(splits, key=lambda s: s == "validation")  # validation is the newest
    assert splits.count("validation") == round(len(samples) * 0.25)


def test_prepare_from_the_store_and_not_enough_data(settings, tmp_path):
    store = MessageStore(settings.store_path)
    store.upsert([message(1, 10, "hello there tavern"), message(2, 11, "hello back to you")])
    store.close()
    with pytest.raises(NotEnoughData, match=r"not enough data \(1 samples, need 20\)"):
        prepare(settings, tmp_path / "data.jsonl")
    store = MessageStore(settings.store_path)
    import_exports(store, ROOT / "data" / "sample" / "export.json", Filters(), progress=False)
    store.forget(next(m.author_id for m in store.iter_messages() if m.author_name == "kiwi"))
    store.close()
    report = prepare(settings, tmp_path / "data.jsonl")
    samples, problems = read_jsonl(tmp_path / "data.jsonl")
    assert report.kept == len(samples) > 100 and not problems
    assert report.validation == sum(s["split"] == "validation" for s in samples) > 0
    assert all("kiwi" != s["target_author"] for s in samples)


def test_a_corrupt_jsonl_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "data.jsonl"
    write_jsonl([{"messages": [{"role": "user", "content": "a"}]}] * 2, path)
    with open(path, "a") as f:
        f.write('{"messages": [broken\n')
        f.write(json.dumps({"messages": [{"role": "user", "content": "b"}]}) + "\n")
    samples, problems = read_jsonl(path)
    assert len(samples) == 3 and len(problems) == 1 and "line 3" in problems[0]


# --- training -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def training_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("training")
    store = MessageStore(folder / "messages.sqlite3")
    import_exports(store, ROOT / "data" / "sample" / "export.json", Filters(), progress=False)
    samples, _ = build_samples(list(store.iter_messages()), context=2)  # short samples: quick CPU steps
    store.close()
    samples = [s for s in samples if len(json.dumps(s)) < 700][:20]
    split_by_time(samples, 0.2)
    path = folder / "training_data.jsonl"
    write_jsonl(samples, path)
    return path


def smoke_recipe(settings, **changes):
    from training.train_lora import load_recipe

    recipe = load_recipe(ROOT / "training" / "recipes" / "cpu-smoke.yaml", settings)
    recipe.max_steps, recipe.max_length, recipe.learning_rate = 12, 192, 1e-3
    recipe.logging_steps, recipe.save_steps, recipe.eval_steps = 1, 4, 1000
    for key, value in changes.items():
        setattr(recipe, key, value)
    return recipe


@pytest.mark.slow
def test_training_lowers_the_loss_and_the_adapter_loads_back(settings, training_data, tmp_path):
    from chains.model import build_model
    from training.train_lora import META_FILE, train

    adapters = tmp_path / "adapters"
    (adapters / "voice").mkdir(parents=True)
    (adapters / "voice" / "marker").write_text("the previous adapter")
    result = train(smoke_recipe(settings), settings, training_data, "voice", adapters_dir=adapters, progress=False)
    assert result.steps == 12 and result.loss_last < result.loss_first
    assert result.validation_loss_after < result.validation_loss_before
    assert result.tokens > 0 and result.tokens_per_second > 0
    meta = json.loads((adapters / "voice" / META_FILE).read_text())
    assert (
        meta["base_model"] == "smollm2-135m-instruct"
        and len(meta["data"]["sha256"]) == 64
        and meta["data"]["train_samples"] == 16
    )
    assert (adapters / "voice.previous" / "marker").is_file()  # the old adapter is kept aside
    for engine, quantized in (("transformers", False), ("transformers", True), ("llamacpp", False)):
        options = settings.model_copy(
            update={
                "ADAPTER_PATH": adapters / "voice",
                "ENABLE_QUANTIZATION": quantized,
                "MAX_NEW_TOKENS": 8,
                "ENGINE": engine,
            }
        )
        bundle = build_model(options.model_options())
        assert bundle.adapter == "voice" and bundle.quantized is quantized and bundle.engine == engine
        assert isinstance(bundle.llm.invoke("Hello"), str)
        bundle.close()
    assert list((settings.MODEL_CACHE_DIR / "lora").glob("voice-*.gguf"))  # converted once for llama.cpp

    from chains.model import ModelLoadError
    from training.evaluate import compare

    for engine in ("transformers", "llamacpp"):  # the adapter helps on both engines
        comparison = compare(settings, adapters / "voice", training_data, examples=1, engine=engine)
        assert comparison.samples == 4 and comparison.adapter_perplexity < comparison.base_perplexity, engine
        assert "validation perplexity on 4 samples" in comparison.summary() and len(comparison.replies) == 1
    config = adapters / "voice" / "adapter_config.json"
    config.write_text(config.read_text().replace("smollm2-135m-instruct", "Mistral-7B-v0.3"))
    with pytest.raises(ModelLoadError, match="Mistral-7B-v0.3.*smollm2-135m-instruct"):
        compare(settings, adapters / "voice", training_data)


@pytest.mark.slow
def test_an_interrupted_run_keeps_the_adapter_and_resumes(settings, training_data, tmp_path):
    from transformers import TrainerCallback

    from training.train_lora import train

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 6:
                raise KeyboardInterrupt("killed at step 6")

    adapters = tmp_path / "adapters"
    (adapters / "voice").mkdir(parents=True)
    (adapters / "voice" / "marker").write_text("in use")
    recipe = smoke_recipe(settings, max_steps=8, save_steps=2)
    with pytest.raises(KeyboardInterrupt):
        train(recipe, settings, training_data, "voice", adapters_dir=adapters, callbacks=[Interrupt()], progress=False)
    assert (adapters / "voice" / "marker").read_text() == "in use" and not (adapters / "voice.previous").exists()
    assert (adapters / "voice.work" / "checkpoint-4").is_dir()
    result = train(recipe, settings, training_data, "voice", resume=True, adapters_dir=adapters, progress=False)
    assert result.resumed_from and result.steps == 8
    assert (adapters / "voice" / "adapter_config.json").is_file() and (adapters / "voice.previous" / "marker").is_file()


def test_a_bad_recipe_is_named(tmp_path, settings):
    from training.train_lora import RecipeError, load_recipe

    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nbase_model: y\nlearning_rat: 0.1\n")
    with pytest.raises(RecipeError, match="bad.yaml.*learning_rat"):
        load_recipe(path, settings)
    overridden = load_recipe(
        ROOT / "training" / "recipes" / "cpu-smoke.yaml",
        settings.model_copy(update={"LEARNING_RATE": 0.01, "EPOCHS": 3}),
    )
    assert overridden.learning_rate == 0.01 and overridden.epochs == 3


@pytest.mark.slow
def test_qlora_trains_on_the_4bit_base(settings, training_data, tmp_path):
    from training.train_lora import train

    recipe = smoke_recipe(settings.model_copy(update={"ENABLE_QUANTIZATION": True}), max_steps=2)
    assert recipe.quantization
    result = train(recipe, settings, training_data, "qlora", adapters_dir=tmp_path / "adapters", progress=False)
    assert result.steps == 2 and (tmp_path / "adapters" / "qlora" / "adapter_model.safetensors").is_file()
