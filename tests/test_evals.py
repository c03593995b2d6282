"""Eval plumbing: ragas metrics move the right way, the gate fails below a threshold, runs are saved."""

import json
from pathlib import Path

import pytest
import yaml

from evals.dataset import DatasetError, EvalSample, EvalSet, load_dataset
from evals.gate import check, load_thresholds
from evals.metrics import Scored, Scorer, VoiceCheck, facts_found, grounded, source_found
from evals.report import write_report
from evals.runner import previous_run, run_eval

ROOT = Path(__file__).resolve().parent.parent
LORE = (
    "The Golden Joystick 2024 goes to tomasz, who repaired 30 Game Boys for the children's hospital "
    "during the Charity Drive."
)


@pytest.fixture(scope="module")
def scorer():
    return Scorer()


def test_a_perfect_answer_beats_a_wrong_one_on_every_metric(scorer):
    perfect = scorer.score(
        Scored(
            "who won the golden joystick in 2024?",
            "tomasz won it for repairing 30 Game Boys for the hospital.",
            "tomasz, who repaired 30 Game Boys for the children's hospital.",
            [LORE],
            [LORE],
        )
    )
    wrong = scorer.score(
        Scored(
            "who won the golden joystick in 2024?",
            "I like turtles and the weather in Paris.",
            "tomasz, who repaired 30 Game Boys for the children's hospital.",
            ["lol", "gg"],
            [LORE],
        )
    )
    assert perfect["context_precision"] > 0.9 and wrong["context_precision"] < 0.1
    assert perfect["context_recall"] > 0.9 and wrong["context_recall"] < 0.1
    assert perfect["semantic_similarity"] > wrong["semantic_similarity"] + 0.3


def test_retrieval_is_not_scored_without_reference_contexts(scorer):
    scores = scorer.score(Scored("hi!", "mrrp, hello!", "Hello, welcome!", ["some lore"], []))
    assert (
        scores["context_precision"] is None and scores["context_recall"] is None and scores["semantic_similarity"] > 0
    )


def test_the_gate_fails_when_a_threshold_is_above_the_score(tmp_path):
    run = {"dataset": "sample_server", "means": {"context_recall": 0.7, "semantic_similarity": 0.26}}
    passed, lines = check(run, {"sample_server": {"context_recall": 0.6, "semantic_similarity": 0.2}})
    assert passed and all(line.startswith("PASS") for line in lines)
    passed, lines = check(run, {"sample_server": {"context_recall": 0.6, "semantic_similarity": 0.85}})
    assert not passed and any(line.startswith("FAIL") and "semantic_similarity" in line for line in lines)
    assert not check(run, {"other": {"x": 0.1}})[0]  # no thresholds for this set: fail, do not pass silently


def test_shipped_thresholds_cover_both_sets():
    thresholds = load_thresholds(ROOT / "evals" / "thresholds.yaml")
    assert {"context_precision", "context_recall", "semantic_similarity", "answered", "in_character"} <= set(
        thresholds["sample_server"]
    )
    assert {"source_in_top_k", "answer_correct", "answered", "grounded"} <= set(thresholds["real_nextgen"])
    from evals.__main__ import DEFAULT_SETS, DEV_SETS, TEST_SETS

    assert set(DEV_SETS) <= set(DEFAULT_SETS) and not set(TEST_SETS) & set(DEFAULT_SETS)  # test sets: reported only
    for path in DEV_SETS:
        assert {"source_in_top_k", "answer_correct", "answered"} <= set(thresholds[load_dataset(path).name])


REAL_EXPORT = ROOT.parent / "shared" / "data" / "real-exports" / "nextgen-oct30.html"


@pytest.mark.skipif(not REAL_EXPORT.is_file(), reason=f"{REAL_EXPORT} not on this machine")
def test_the_real_channel_set_quotes_real_messages_of_its_export(store):
    from indexes.filters import Filters
    from indexes.importer import import_exports

    eval_set = load_dataset(ROOT / "evals" / "datasets" / "real_nextgen.yaml")
    assert (ROOT / eval_set.source).resolve() == REAL_EXPORT.resolve() and len(eval_set.samples) >= 12
    import_exports(store, REAL_EXPORT, Filters(), progress=False)
    messages = {m.content for m in store.iter_messages()}
    for sample in eval_set.samples:
        assert sample.facts and sample.reference_contexts, sample.id
        for context in sample.reference_contexts:
            assert context in messages, (sample.id, context[:60])
        for fact in sample.facts:  # each fact is in the reference answer: the reference is consistent with it
            assert facts_found(sample.reference + " " + " ".join(sample.reference_contexts), [fact]) == 1.0, fact


def test_a_set_whose_export_is_missing_is_skipped_visibly_and_the_gate_says_so(tmp_path, capsys):
    from evals.__main__ import main

    missing = tmp_path / "elsewhere.yaml"
    missing.write_text(
        "name: elsewhere\nsource: /nowhere/export.txt\nsamples:\n  - {id: a, question: hi, reference: r}\n"
    )
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text("elsewhere:\n  answered: 1.0\n")
    runs = tmp_path / "runs"
    assert main(["run", "--dataset", str(missing), "--runs", str(runs), "--thresholds", str(thresholds)]) == 0
    assert "eval set elsewhere: SKIPPED (/nowhere/export.txt not found)" in capsys.readouterr().out
    assert main(["gate", "--dataset", str(missing), "--runs", str(runs), "--thresholds", str(thresholds)]) == 0
    assert "gate on elsewhere: SKIPPED (/nowhere/export.txt not found)" in capsys.readouterr().out


def test_answer_metrics_check_facts_sources_and_invented_figures():
    assert facts_found("the pot is $60,500, opens 10/30", ["60,500|60500", "10/30"]) == 1.0
    assert facts_found("the pot is big", ["60,500|60500"]) == 0.0 and facts_found("anything", []) is None
    assert (
        source_found(["Gm no it has not been audited previously."], ["gm no it has NOT been audited previously."])
        == 1.0
    )
    assert source_found(["something else"], ["Gm no it has not been audited previously."]) == 0.0
    assert source_found(["867"], ["867"]) == 1.0 and source_found(["2"], ["we sent 2 highs and a medium"]) == 0.0
    assert source_found(["Gm no it has not"], ["Gm no it has not been audited previously."]) == 1.0  # a start
    assert grounded("the pool has 1.8 million boxes, or $60,500", ["the $60,500 NextGen audit"]) == 0.5
    assert grounded("mrrp, hello!", ["lore"]) is None  # nothing checkable
    quote = 'as 0xandy_2014_07_22 put it: "Both are trustable"'  # who said it is no invented figure
    assert grounded(quote, ["Both are trustable"], ["0xandy_2014_07_22"]) == 1.0
    assert grounded(quote, ["Both are trustable"]) == 0.0


def test_in_character_tells_the_persona_from_a_neutral_assistant(scorer):
    voice = VoiceCheck(scorer.embeddings, ["mrrp, morning! the cabinet is warm", "kiwi does! 412 lines, purr"])
    assert voice.score("mrrp! the cabinet hums, purr") == 1.0
    assert voice.score("As an AI language model, I would be happy to help you with that request.") == 0.0


def test_the_shipped_eval_set_has_30_questions_of_every_intent():
    eval_set = load_dataset(ROOT / "evals" / "datasets" / "sample_server.yaml")
    assert len(eval_set.samples) >= 30
    assert {"lore", "banter", "greeting", "question", "off_topic"} <= {s.intent for s in eval_set.samples}
    export = (ROOT / "data" / "sample" / "export.json").read_text(encoding="utf-8")
    for sample in eval_set.samples:  # every reference context is a real message of the sample server
        for context in sample.reference_contexts:
            assert json.dumps(context, ensure_ascii=False)[1:-1] in export, (sample.id, context)


def test_broken_eval_sets_are_refused_with_the_sample(tmp_path):
    path = tmp_path / "set.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "samples": [
                    {"id": "a", "question": "q?", "reference": "r"},
                    {"id": "a", "question": "q", "reference": "r"},
                ]
            }
        )
    )
    with pytest.raises(DatasetError, match="sample #2: duplicate id 'a'"):
        load_dataset(path)
    path.write_text(yaml.safe_dump({"samples": [{"id": "a", "question": "q?"}]}))
    with pytest.raises(DatasetError, match="sample #1: missing reference"):
        load_dataset(path)


def test_a_run_is_saved_reported_and_compared(tmp_path, settings, fake_bundle, scorer):
    from app.runtime import build_runtime

    eval_set = EvalSet(
        "tiny",
        tmp_path / "tiny.yaml",
        (
            EvalSample(
                "joystick", "@Susu who won the golden joystick in 2024?", "tomasz won it.", "lin", "lore", (LORE,)
            ),
            EvalSample("hello", "hi @Susu", "mrrp, hello!", "bob", "greeting"),
        ),
    )
    runtime = build_runtime(
        settings, model=fake_bundle(["Mrrp, tomasz won the golden joystick, purr."]), with_index=False
    )
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text("tiny:\n  semantic_similarity: 0.1\n")
    first = run_eval(
        settings, eval_set, runtime=runtime, scorer=scorer, runs_dir=tmp_path / "runs", progress=lambda _: None
    )
    second = run_eval(
        settings, eval_set, runtime=runtime, scorer=scorer, runs_dir=tmp_path / "runs", progress=lambda _: None
    )
    runtime.close()
    assert second.id > first.id
    baseline = previous_run(tmp_path / "runs", second.id, "tiny")
    assert baseline["id"] == first.id
    assert previous_run(tmp_path / "runs", second.id, "tiny", samples=3) is None  # other questions: no comparison
    report = write_report(second, baseline, thresholds).read_text()
    assert f"compared with: `{first.id}`" in report and "chart.svg" in report and "| semantic_similarity |" in report
    assert "gap of" in report and "joystick" in report
    record = json.loads((second.path / "run.json").read_text())
    assert record["samples"] == 2 and record["prompt_files"] and record["settings"]["MODEL_NAME"]
    assert "DISCORD_BOT_TOKEN" not in json.dumps(record)
    lines = [json.loads(line) for line in (second.path / "samples.jsonl").read_text().splitlines()]
    assert lines[0]["reply"].startswith("Mrrp") and lines[0]["reference_contexts"] == [LORE]
    assert lines[1]["scores"]["context_precision"] is None
    assert (second.path / "chart.svg").read_text().startswith("<svg")


def test_make_drafts_lore_and_answered_questions(tmp_path):
    from evals.make import make_from_export

    out = tmp_path / "drafted.yaml"
    count = make_from_export(ROOT / "data" / "sample" / "export.json", out, "Susu", limit=40)
    drafted = load_dataset(out)
    assert count == len(drafted.samples) >= 10
    intents = {s.intent for s in drafted.samples}
    assert intents == {"lore", "question"}
    assert any("Cursed Cartridge" in c for s in drafted.samples for c in s.reference_contexts)
    assert out.read_text().startswith("# DRAFT")


CHANNEL_SETS = sorted((ROOT / "evals" / "datasets").glob("[dt]e[vs]*_*.yaml"))
CHANNEL_SETS = [p for p in CHANNEL_SETS if not p.stem.endswith("_persona")]


def test_there_are_dev_sets_to_tune_on_and_test_sets_to_report_on():
    names = [p.stem for p in CHANNEL_SETS]
    assert (
        len([n for n in names if n.startswith("dev_")]) >= 3 and len([n for n in names if n.startswith("test_")]) >= 3
    )


@pytest.mark.parametrize("path", CHANNEL_SETS, ids=lambda p: p.stem)
def test_each_channel_set_quotes_real_messages_of_its_shipped_export(path, store, tmp_path):
    from evals.runner import unpacked
    from indexes.filters import Filters
    from indexes.importer import import_exports
    from prompts import load_persona

    eval_set = load_dataset(path)
    assert eval_set.source.suffix == ".gz" and eval_set.source.parent == Path("evals/exports") and not eval_set.missing
    assert load_persona(eval_set.persona).name and len(eval_set.samples) >= 12
    import_exports(store, unpacked(ROOT / eval_set.source, tmp_path), Filters(), progress=False)
    messages = {m.content for m in store.iter_messages()}
    for sample in eval_set.samples:
        assert sample.facts and sample.reference_contexts, sample.id
        for context in sample.reference_contexts:
            assert context in messages, (sample.id, context[:60])
        for fact in sample.facts:
            assert facts_found(sample.reference + " " + " ".join(sample.reference_contexts), [fact]) == 1.0, fact


def test_a_gzipped_export_is_unpacked_once(tmp_path):
    import gzip

    from evals.runner import unpacked

    packed = tmp_path / "chan.txt.gz"
    packed.write_bytes(gzip.compress(b"hello"))
    first = unpacked(packed, tmp_path / "out")
    assert first == tmp_path / "out" / "chan.txt" and first.read_bytes() == b"hello"
    stamp = first.stat().st_mtime_ns
    assert unpacked(packed, tmp_path / "out").stat().st_mtime_ns == stamp
    plain = tmp_path / "plain.html"
    assert unpacked(plain, tmp_path / "out") == plain


def test_evals_retrieval_reports_source_in_top_k_and_rank_per_set(tmp_path, monkeypatch, capsys):
    import gzip

    import evals.runner
    from evals.__main__ import main

    monkeypatch.setattr(evals.runner, "EVAL_DATA_DIR", tmp_path / "evals")
    export = tmp_path / "sample.json.gz"
    export.write_bytes(gzip.compress((ROOT / "data" / "sample" / "export.json").read_bytes()))
    found = "The Golden Joystick 2024 goes to tomasz"
    eval_set = tmp_path / "retrieval_check.yaml"
    eval_set.write_text(
        yaml.safe_dump(
            {
                "name": "retrieval_check",
                "source": str(export),
                "samples": [
                    {
                        "id": "joystick",
                        "question": "@Susu who won the Golden Joystick 2024?",
                        "reference": "tomasz",
                        "facts": ["tomasz"],
                        "reference_contexts": [
                            next(
                                m["content"]
                                for m in json.loads(
                                    (ROOT / "data" / "sample" / "export.json").read_text(encoding="utf-8")
                                )["messages"]
                                if m["content"].startswith(found)
                            )
                        ],
                    },
                    {
                        "id": "nowhere",
                        "question": "@Susu what is the capital of Mars?",
                        "reference": "none",
                        "facts": ["olympus city"],
                        "reference_contexts": ["a message that is not in the channel at all"],
                    },
                ],
            }
        )
    )
    assert main(["retrieval", "--dataset", str(eval_set), "--show"]) == 0
    out = capsys.readouterr().out
    assert "retrieval_check: source_in_top_k 0.500" in out and "missed: nowhere" in out
    # the evidence for the first question quotes the winner; nothing in the channel names Mars' capital
    assert "fact_in_evidence 0.500" in out
    shown = dict(line.strip().split(": ", 1) for line in out.splitlines() if line.startswith("  "))
    assert shown["joystick"].startswith("rank 1  facts yes") and "tomasz" in shown["joystick"]
    assert shown["nowhere"].startswith("rank -  facts no")


def test_a_run_left_broken_is_named_by_the_gate_and_skipped_as_a_baseline(tmp_path, capsys):
    from evals.__main__ import main
    from evals.runner import previous_run

    broken = tmp_path / "runs" / "20261201-120000.000-sample_server"
    broken.mkdir(parents=True)
    (broken / "run.json").write_text('{"dataset": "sample_server", "means": {')  # killed while saving
    assert previous_run(tmp_path / "runs", "20261202-000000.000-sample_server", "sample_server") is None
    capsys.readouterr()  # the warning logged about it, wherever an earlier test left logging
    assert main(["gate", "--run", str(broken)]) == 2
    err = capsys.readouterr().err
    assert f"error: {broken / 'run.json'}: cannot read the run" in err and f"delete {broken}" in err
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text("sample_server: {answered: plenty}\n")
    assert main(["gate", "--run", str(broken), "--thresholds", str(thresholds)]) == 2
    assert "cannot read the thresholds" in capsys.readouterr().err


def test_each_message_a_lore_item_holds_is_one_retrieved_context(store):
    from datetime import datetime, timezone

    from chains.types import LoreItem
    from evals.runner import messages_of
    from indexes.records import StoredMessage

    when = datetime(2026, 11, 24, tzinfo=timezone.utc)
    rest = StoredMessage(id=3, channel_id=1, author_id=6, author_name="six", timestamp=when, content="PoolAddress.sol")
    store.upsert([rest])
    item = LoreItem(content="it's on the readme\nPoolAddress.sol", message_ids=(2, 1), more_ids=(3,))
    assert messages_of(item, store) == ["it's on the readme", "PoolAddress.sol"]  # as two messages were retrieved
    assert messages_of(LoreItem(content="arbitrum l2 first", message_ids=(2, 1)), store) == ["arbitrum l2 first"]
    store.delete([3])
    assert messages_of(item, store) == [item.content]  # its words no longer stored: the item as it was shown
