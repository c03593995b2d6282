"""`python -m app index ...` and `forget` as a user runs them, in a subprocess."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "exports"


def app(tmp_path, *args, **env):
    environment = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "DISCORD_CHANNEL_ID": "555000000000000001", **env}
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )


def test_rebuild_twice_stats_and_forget(tmp_path):
    first = app(tmp_path, "index", "rebuild", "--from", str(FIXTURES))
    assert first.returncode == 0, first.stderr[-3000:]
    assert "files       6 imported, 0 failed" in first.stdout
    assert "skipped" in first.stdout and "messages/s" in first.stdout and "rebuilt, swapped in" in first.stdout
    second = app(tmp_path, "index", "rebuild", "--from", str(FIXTURES))
    assert second.returncode == 0 and ", 0 new, 0 updated," in second.stdout  # the same export changes nothing

    stats = app(tmp_path, "index", "stats")
    assert stats.returncode == 0, stats.stderr[-3000:]
    assert "Alice" in stats.stdout and "2020-11" in stats.stdout and "on disk" in stats.stdout

    forget = app(tmp_path, "forget", "1001")
    assert forget.returncode == 0 and "member 1001 opted out" in forget.stdout
    assert "1 members opted out" in app(tmp_path, "index", "stats").stdout


def test_a_bad_file_fails_the_command_but_keeps_the_good_ones(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "broken.json").write_bytes(
        (FIXTURES / "Fixture Guild - tavern [555000000000000001].json").read_bytes()[:900]
    )
    (folder / "good.txt").write_bytes((FIXTURES / "Fixture Guild - tavern [555000000000000001].txt").read_bytes())
    result = app(tmp_path, "index", "update", "--from", str(folder))
    assert result.returncode == 1
    assert "FAILED" in result.stdout and "broken.json: near byte" in result.stdout
    assert "files       1 imported, 1 failed" in result.stdout


def test_another_channel_and_a_missing_path_are_refused(tmp_path):
    other = app(
        tmp_path,
        "index",
        "update",
        "--from",
        str(FIXTURES / "old-schema [555000000000000001].json"),
        DISCORD_CHANNEL_ID="42",
    )
    assert other.returncode == 1 and "--any-channel" in other.stdout
    accepted = app(
        tmp_path,
        "index",
        "update",
        "--any-channel",
        "--from",
        str(FIXTURES / "old-schema [555000000000000001].json"),
        DISCORD_CHANNEL_ID="42",
    )
    assert accepted.returncode == 0 and "3 new" in accepted.stdout
    missing = app(tmp_path, "index", "update", "--from", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr


def test_update_rebuilds_an_index_made_with_another_embedding_model(tmp_path):
    from indexes.vector import packaged_embedding_path

    assert app(tmp_path, "index", "rebuild", "--from", str(FIXTURES)).returncode == 0
    folder = tmp_path / "my-embedder"
    shutil.copytree(packaged_embedding_path(), folder, copy_function=os.symlink)
    update = app(tmp_path, "index", "update", "--from", str(FIXTURES), EMBED_MODEL=str(folder))
    assert update.returncode == 0, update.stderr[-3000:]
    assert "indexed again, with EMBED_MODEL's embedding model" in update.stdout
    again = app(tmp_path, "index", "update", "--from", str(FIXTURES), EMBED_MODEL=str(folder))
    assert again.returncode == 0 and "indexed again" not in again.stdout  # made with it now: nothing to redo

    missing = app(tmp_path, "index", "update", "--from", str(FIXTURES), EMBED_MODEL="someone/never-downloaded")
    assert missing.returncode != 0
    assert "EMBED_MODEL=someone/never-downloaded" in missing.stderr + missing.stdout
    assert "hf download someone/never-downloaded" in missing.stderr + missing.stdout
