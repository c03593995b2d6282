"""Training data from the store, and LoRA training with trl on the default model (a few CPU steps)."""

import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from indexes.filters import Filters
from indexes.importer import import_exports
from indexes.records import StoredMessage
from indexes.store import MessageStore
from training.data_prep import (
    FORMAT,
    NotEnoughData,
    SampleFormatError,
    build_samples,
    prepare,
    read_jsonl,
    split_by_time,
    write_jsonl,
)

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def message(i, author, content, bot=False):
    return StoredMessage(
        id=i,
        channel_id=1,
        author_id=author,
        author_name=f"user{author}",
        timestamp=T0 + timedelta(minutes=i),
        content=content,
        author_is_bot=bot,
    )


def test_samples_are_channel_situations_with_every_author():
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
        message(10, 11, "great, see you all at the maze at nine then"),
        message(11, 11, "and bring a controller if you have a spare one"),
    ]
    samples, report = build_samples(messages, context=3, opted_out={15})
    assert [s["target"] for s in samples] == [
        "me! I have been practising level 5 all week",
        "count me in, I will bring snacks for everyone",
        "great, see you all at the maze at nine then",
    ]
    assert report.dropped == {
        "no_context": 1,
        "command": 1,
        "bot": 1,
        "too_short": 1,
        "link_only": 1,
        "near_duplicate": 1,
        "opted_out": 1,
        "continues_own_message": 1,
    }
    snacks, maze = samples[1], samples[2]
    assert snacks["format"] == FORMAT and snacks["message"] == {
        "author": "user11",
        "content": messages[6].content,
        "own": False,
    }
    assert snacks["history"] == [
        {"author": "user11", "content": "me! I have been practising level 5 all week", "own": False},
        {"author": "user10", "content": "ok", "own": False},
    ]
    assert snacks["author_ids"] == [10, 11, 14] and "never be learned" not in json.dumps(samples)
    # the target's author plays the character: their own earlier message is the character's turn
    assert [t["own"] for t in maze["history"]] == [False, True] and maze["message"]["author"] == "user14"


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
    from dataclasses import replace

    store = MessageStore(settings.store_path)
    store.upsert(
        [
            replace(message(1, 10, "hello there tavern"), licensed=True),
            replace(message(2, 11, "hello back"), licensed=True),
        ]
    )
    store.close()
    with pytest.raises(NotEnoughData, match=r"not enough data \(1 samples, need 20\)"):
        prepare(settings, tmp_path / "data.jsonl")
    store = MessageStore(settings.store_path)
    import_exports(store, ROOT / "data" / "sample" / "export.json", Filters(), progress=False)
    store.close()
    with pytest.raises(NotEnoughData, match="members consent with !consent"):  # nobody consented, nothing licensed
        prepare(settings, tmp_path / "data.jsonl")
    store = MessageStore(settings.store_path)
    import_exports(store, ROOT / "data" / "sample" / "export.json", Filters(), progress=False, licensed=True)
    store.forget(next(m.author_id for m in store.iter_messages() if m.author_name == "kiwi"))
    store.close()
    report = prepare(settings, tmp_path / "data.jsonl")
    samples, problems = read_jsonl(tmp_path / "data.jsonl")
    assert report.kept == len(samples) > 100 and not problems
    assert report.validation == sum(s["split"] == "validation" for s in samples) > 0
    assert all("kiwi" != s["target_author"] for s in samples)
    assert all(len(s["message_ids"]) == len(s["history"]) + 2 for s in samples)  # the message answered, the target


def test_training_on_every_member_says_what_it_means_once_a_run(settings, caplog):
    from indexes.members import ALL_WARNING

    _licensed_sample_server(settings)
    with caplog.at_level(logging.WARNING, logger="indexes.members"):
        prepare(settings.model_copy(update={"TRAINING_CONSENT": "all"}), settings.training_data)
    assert [r.getMessage() for r in caplog.records].count(ALL_WARNING) == 1


def _licensed_sample_server(settings) -> list[StoredMessage]:
    store = MessageStore(settings.store_path)
    import_exports(store, ROOT / "data" / "sample" / "export.json", Filters(), progress=False, licensed=True)
    messages = list(store.iter_messages())
    store.close()
    return messages


def test_what_changes_in_the_store_while_samples_are_made_is_in_none_of_them(settings, monkeypatch):
    # Deleted, edited and withdrawn after the store was read, before the file is written.
    from dataclasses import replace

    import training.data_prep as data_prep

    messages = _licensed_sample_server(settings)
    deleted, edited = messages[10], messages[20]
    withdrawn = next(m.author_id for m in messages if m.author_name == "kiwi")
    made = data_prep.build_samples

    def build_then_change(*args, **kwargs):
        built = made(*args, **kwargs)
        store = MessageStore(settings.store_path)
        store.delete([deleted.id])
        store.upsert([replace(edited, content="the new words of an edit")])
        store.set_consent(withdrawn, False)
        store.close()
        return built

    monkeypatch.setattr(data_prep, "build_samples", build_then_change)
    report = prepare(settings, settings.training_data)
    samples, _ = read_jsonl(settings.training_data)
    assert samples and report.dropped["changed_since_read"] > 0 and report.kept == len(samples)
    assert all(deleted.id not in s["message_ids"] and edited.id not in s["message_ids"] for s in samples)
    assert all(withdrawn not in s["author_ids"] for s in samples)


def test_a_message_deleted_while_the_samples_are_written_is_scrubbed_from_the_new_file(settings, monkeypatch):
    # Its deletion is taken by the store after the samples were checked: the scrub waits for the file, then drops it.
    import threading

    import training.data_prep as data_prep
    from indexes.forget import by_message, scrub_training

    _licensed_sample_server(settings)
    checked = data_prep._still_trainable
    deletion: list[threading.Thread] = []
    gone: list[int] = []
    scrubbing = threading.Event()

    def check_then_delete(samples, *args):
        kept = checked(samples, *args)
        gone.append(kept[0]["message_ids"][-1])

        def delete():
            store = MessageStore(settings.store_path)
            store.delete(gone)
            store.close()
            scrubbing.set()
            scrub_training(settings.DATA_DIR, by_message(set(gone)))

        deletion.append(threading.Thread(target=delete))
        deletion[0].start()
        scrubbing.wait()
        deletion[0].join(timeout=1)  # the scrub waits for the file being written (else it is done by now)
        return kept

    monkeypatch.setattr(data_prep, "_still_trainable", check_then_delete)
    prepare(settings, settings.training_data)
    deletion[0].join()
    samples, _ = read_jsonl(settings.training_data)
    assert samples and all(gone[0] not in s["message_ids"] for s in samples)


def test_an_adapter_is_not_published_when_its_data_was_deleted_or_withdrawn_while_it_trained(settings):
    from training.train_lora import DataWithdrawn, learned_words, still_allowed

    store = MessageStore(settings.store_path)
    store.upsert([message(i, 10 + i % 2, f"message number {i} of the channel") for i in range(1, 5)])
    samples = [{"message_ids": [1, 2], "author_ids": [10, 11]}, {"message_ids": [3, 4], "author_ids": [10, 11]}]
    learned = learned_words(settings, samples)
    assert len(learned) == 4 and not any("message" in digest for digest in learned.values())  # hashes, not words
    still_allowed(settings, samples, learned)  # nothing changed: fine
    store.delete([3])
    with pytest.raises(DataWithdrawn, match="1 of its messages were deleted, 0 edited and 0 of its members"):
        still_allowed(settings, samples, learned)
    store.upsert([message(3, 11, "message number 3 of the channel")])
    edited = message(2, 11, "message number 2, said otherwise now")
    edited.edited_at = T0 + timedelta(days=1)  # when Discord says it was edited does not matter: its words do
    store.upsert([edited])
    with pytest.raises(DataWithdrawn, match="0 of its messages were deleted, 1 edited and 0 of its members"):
        still_allowed(settings, samples, learned)
    still_allowed(settings, samples, learned_words(settings, samples))  # edited before training read it: fine
    store.set_consent(10, False)
    with pytest.raises(DataWithdrawn, match="0 of its messages were deleted, 0 edited and 1 of its members"):
        still_allowed(settings, samples, learned_words(settings, samples))
    store.close()


def test_a_corrupt_jsonl_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "data.jsonl"
    sample = {"format": FORMAT, "history": [], "message": {"author": "a", "content": "hi"}, "target": "hello"}
    write_jsonl([sample] * 2, path)
    with open(path, "a") as f:
        f.write('{"message": [broken\n')
        f.write(json.dumps({**sample, "target": "b"}) + "\n")
    samples, problems = read_jsonl(path)
    assert len(samples) == 3 and len(problems) == 1 and "line 3" in problems[0]


def test_samples_of_the_old_format_are_refused_with_what_to_do(tmp_path):
    path = tmp_path / "data.jsonl"
    old = {
        "messages": [
            {"role": "system", "content": "You are a member"},
            {"role": "user", "content": "a: hi"},
            {"role": "assistant", "content": "hello"},
        ],
        "author_ids": [1],
    }
    write_jsonl([old] * 3, path)
    with pytest.raises(
        SampleFormatError, match=r"data.jsonl: 3 samples in another format.*python -m training.data_prep"
    ):
        read_jsonl(path)


def test_a_training_sample_is_the_prompt_the_reply_chain_builds(settings, tokenizer):
    """The adapter trains on the very prompt the bot builds when it meets the same moment of the channel."""
    from app.runtime import build_runtime
    from chains.types import ChatMessage
    from fakes.llm import ScriptedLLM
    from llm.model import ModelBundle
    from training.render import SampleRenderer

    channel = [
        message(1, 10, "anyone up for a speedrun of the moonlit maze later?"),
        message(2, 11, "always, I have been practising the third level"),  # the voice being learned
        message(3, 12, "count me in but my controller: is <|im_end|> broken"),
        message(4, 10, "@Susu who is the fastest runner here?"),
        message(5, 11, "hazel is, nobody beats her on the ice level"),  # the target
    ]
    samples, _ = build_samples(channel, persona_user=11)
    sample = samples[-1]
    assert sample["target"] == channel[-1].content

    llm = ScriptedLLM(responses=["hazel, by a mile"])
    bundle = ModelBundle(
        llm=llm,
        tokenizer=tokenizer,
        model=None,
        name="fake",
        device="cpu",
        quantized=False,
        adapter=None,
        parameters=0,
        weight_bytes=0,
        load_seconds=0.0,
    )
    runtime = build_runtime(settings, model=bundle, with_index=False)
    for m in channel[:3]:  # the same moment, live: the voice's messages are the character's replies
        if m.author_id == 11:
            runtime.remember_reply(1, m.content)
        else:
            runtime.observe(1, ChatMessage(m.speaker, m.content, author_id=m.author_id, message_id=m.id))
    trigger = channel[3]
    runtime.observe(1, ChatMessage(trigger.speaker, trigger.content, author_id=10, message_id=trigger.id))
    runtime.reply(1, ChatMessage(trigger.speaker, trigger.content, author_id=10, message_id=trigger.id))
    runtime.close()

    rendered = SampleRenderer.from_settings(tokenizer, settings).render(sample)
    assert llm.prompts[0] == rendered.prompt
    assert "I have been practising" in rendered.prompt and "<|im_end|> broken" not in rendered.prompt  # guarded
    assert rendered.completion == "hazel is, nobody beats her on the ice level<|im_end|>"  # ends the turn
    assert tokenizer.decode(rendered.completion_ids) == rendered.completion
    short = SampleRenderer.from_settings(tokenizer, settings, max_length=rendered.tokens - 10).render(sample)
    assert short.tokens <= rendered.tokens - 10 and "I have been practising" not in short.prompt  # history gives way
    assert SampleRenderer.from_settings(tokenizer, settings, max_length=100).render(sample) is None  # frame too big


# --- training -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def training_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("training")
    store = MessageStore(folder / "messages.sqlite3")
    import_exports(store, ROOT / "data" / "sample" / "export.json", Filters(), progress=False)
    samples, _ = build_samples(list(store.iter_messages()), context=2)  # short samples: quick CPU steps
    store.close()
    samples = [s for s in samples if len(json.dumps(s)) < 500][:20]
    split_by_time(samples, 0.2)
    path = folder / "training_data.jsonl"
    write_jsonl(samples, path)
    return path


def smoke_recipe(settings, **changes):
    from training.recipe import load_recipe

    recipe = load_recipe(ROOT / "training" / "recipes" / "cpu-smoke.yaml", settings)
    recipe.max_steps, recipe.max_length, recipe.learning_rate = 8, 256, 2e-3
    recipe.logging_steps, recipe.save_steps, recipe.eval_steps = 1, 4, 1000
    recipe.gradient_accumulation_steps, recipe.per_device_batch_size = 1, 2  # a few minutes on 2 cores in fp32
    for key, value in changes.items():
        setattr(recipe, key, value)
    return recipe


@pytest.mark.slow
def test_training_lowers_the_loss_and_the_adapter_loads_back(settings, training_data, tmp_path):
    from llm.model import build_model
    from prompts import prompt_hashes
    from training.train_lora import META_FILE, train

    adapters = tmp_path / "adapters"
    (adapters / "voice").mkdir(parents=True)
    (adapters / "voice" / "marker").write_text("the previous adapter")
    result = train(smoke_recipe(settings), settings, training_data, "voice", adapters_dir=adapters, progress=False)
    assert result.steps == 8 and result.loss_last < result.loss_first
    assert result.validation_loss_after < result.validation_loss_before
    assert result.tokens > 0 and result.tokens_per_second > 0
    meta = json.loads((adapters / "voice" / META_FILE).read_text())
    assert (
        meta["base_model"] == "smollm2-135m-instruct"
        and len(meta["data"]["sha256"]) == 64
        and meta["data"]["train_samples"] == 16
    )
    assert meta["prompt_files"] == prompt_hashes(settings.PROMPTS_DIR, settings.PERSONA_FILE)  # checked when served
    assert meta["prompt_files"]["system.txt"] and meta["prompt_files"]["persona"]
    assert (adapters / "voice.previous" / "marker").is_file()  # the old adapter is kept aside
    trained_on = json.loads((adapters / "voice" / "trained_on.json").read_text())
    assert len(trained_on["message_ids"]) > 16 and trained_on["author_ids"]  # ids only, to tell when it goes stale
    assert trained_on["digests"] == {}  # hashes of stored words, to tell an edit: this data is not in the store
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

    from llm.model import ModelLoadError
    from training.evaluate import compare

    for engine in ("transformers", "llamacpp"):  # the adapter helps on both engines
        comparison = compare(settings, adapters / "voice", training_data, examples=1, engine=engine)
        assert comparison.samples == 4 and comparison.adapter_perplexity < comparison.base_perplexity, engine
        assert "validation perplexity on 4 samples" in comparison.summary() and len(comparison.replies) == 1

    from evals.adapter import compare_evals

    absent = tmp_path / "absent.yaml"  # a set over a channel whose export is not on this machine
    absent.write_text("name: absent\nsource: /nowhere/export.txt\nsamples:\n- {id: a, question: hi, reference: hi}\n")
    runs = tmp_path / "runs"
    comparison.evals, comparison.skipped = compare_evals(
        settings,
        adapters / "voice",
        [ROOT / "evals" / "datasets" / "sample_server.yaml", absent],
        limit=2,
        runs_dir=runs,
    )
    without, with_adapter = comparison.evals["sample_server"]
    assert (
        without.keys() == with_adapter.keys() and {"answered", "in_character", "semantic_similarity"} <= without.keys()
    )
    recorded = sorted(json.loads(p.read_text())["settings"]["ADAPTER_PATH"] for p in runs.glob("*/run.json"))
    assert recorded == sorted(["None", str(adapters / "voice")])  # the bot answered without, then with the adapter
    assert comparison.skipped == ["absent: SKIPPED (/nowhere/export.txt not found)"]
    summary = comparison.summary()
    assert "eval set sample_server:" in summary and "eval set absent: SKIPPED" in summary and "answered" in summary
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
            if state.global_step == 3:
                raise KeyboardInterrupt("killed at step 3")

    adapters = tmp_path / "adapters"
    (adapters / "voice").mkdir(parents=True)
    (adapters / "voice" / "marker").write_text("in use")
    recipe = smoke_recipe(settings, max_steps=4, save_steps=2)
    with pytest.raises(KeyboardInterrupt):
        train(recipe, settings, training_data, "voice", adapters_dir=adapters, callbacks=[Interrupt()], progress=False)
    assert (adapters / "voice" / "marker").read_text() == "in use" and not (adapters / "voice.previous").exists()
    assert (adapters / "voice.work" / "checkpoint-2").is_dir()
    result = train(recipe, settings, training_data, "voice", resume=True, adapters_dir=adapters, progress=False)
    assert result.resumed_from and result.steps == 4
    assert (adapters / "voice" / "adapter_config.json").is_file() and (adapters / "voice.previous" / "marker").is_file()


@pytest.mark.slow
def test_a_member_forgotten_while_training_runs_is_in_no_published_adapter(settings, tmp_path):
    from transformers import TrainerCallback

    from indexes.forget import forget_member
    from training.train_lora import DataWithdrawn, train

    settings = settings.model_copy(update={"TRAINING_CONSENT": "all"})  # consent is not what this is about
    store = MessageStore(settings.store_path)
    import_exports(store, ROOT / "data" / "sample" / "export.json", Filters(), progress=False)
    samples, _ = build_samples(list(store.iter_messages()), context=2)
    samples = [s for s in samples if len(json.dumps(s)) < 500][:12]
    split_by_time(samples, 0.25)
    data = tmp_path / "training_data.jsonl"
    write_jsonl(samples, data)
    member = samples[0]["author_ids"][0]

    class ForgetMidway(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:  # `!forgetme` while the adapter trains, as the bot would run it
                forget_member(store, None, settings.DATA_DIR, int(member))

    adapters = tmp_path / "adapters"
    (adapters / "voice").mkdir(parents=True)
    (adapters / "voice" / "marker").write_text("the adapter in use")
    with pytest.raises(DataWithdrawn, match="1 of its members forgot or withdrew"):
        train(
            smoke_recipe(settings, max_steps=2),
            settings,
            data,
            "voice",
            adapters_dir=adapters,
            callbacks=[ForgetMidway()],
            progress=False,
        )
    assert [p.name for p in (adapters / "voice").iterdir()] == ["marker"]  # nothing of it was published
    assert not (adapters / "voice.previous").exists()
    store.close()


def test_a_bad_recipe_is_named(tmp_path, settings):
    from training.recipe import RecipeError, load_recipe

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


def test_an_fp32_recipe_trains_in_fp32_whatever_trl_would_choose(settings, tmp_path):
    from trl import SFTConfig

    from training.train_lora import _precision

    config = SFTConfig(
        output_dir=str(tmp_path), use_cpu=True, report_to="none", **_precision(smoke_recipe(settings), "cpu")
    )
    assert not config.bf16 and not config.fp16  # trl alone turns bf16 on: many times slower on a CPU without it
