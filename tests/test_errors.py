"""What a user can fix is one kind of error, caught once per entry point: a line, not a traceback."""

import pytest

from errors import UserError


def test_every_error_a_user_can_fix_is_a_user_error():
    from app.backfill import BackfillError
    from config.settings import SettingsError
    from evals.dataset import DatasetError
    from indexes.disk import StorageError
    from indexes.exports import ExportError
    from indexes.lock import DataDirBusy
    from indexes.vector import IndexUnavailable
    from llm.model import ModelLoadError
    from prompts import PromptError
    from training.data_prep import NotEnoughData, SampleFormatError
    from training.recipe import RecipeError
    from training.train_lora import DataWithdrawn

    kinds = [
        BackfillError,
        SettingsError,
        DatasetError,
        StorageError,
        ExportError,
        DataDirBusy,
        IndexUnavailable,
        ModelLoadError,
        PromptError,
        NotEnoughData,
        SampleFormatError,
        RecipeError,
        DataWithdrawn,
    ]
    assert [k.__name__ for k in kinds if not issubclass(k, UserError)] == []
    assert issubclass(SettingsError, ValueError) and issubclass(ModelLoadError, RuntimeError)  # still caught as before


@pytest.mark.parametrize("command", ["training.data_prep", "training.train_lora", "training.evaluate", "evals adapter"])
def test_a_bad_setting_is_one_line_from_every_training_command(command, monkeypatch, capsys, tmp_path):
    import importlib

    monkeypatch.setenv("CONTEXT_TOKENS", "many")
    args = {"training.train_lora": ["--recipe", "training/recipes/cpu-smoke.yaml"]}.get(command, [])
    if command in ("training.evaluate", "evals adapter"):
        args = [str(tmp_path / "adapter")]
    module = importlib.import_module("evals.adapter" if command == "evals adapter" else command)
    assert module.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Invalid settings") and "CONTEXT_TOKENS" in err and "Traceback" not in err


def test_evals_say_what_is_wrong_with_an_eval_set(tmp_path, capsys):
    from evals.__main__ import main

    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\nsamples: [\n")
    assert main(["retrieval", "--dataset", str(broken)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {broken}")
