"""Importing exports into the SQLite store: filters, idempotence, edits, all-or-nothing files."""

import json
import shutil
from pathlib import Path

from indexes.filters import Filters
from indexes.importer import import_exports, import_file
from indexes.lore import LORE_THRESHOLD

FIXTURES = Path(__file__).parent / "fixtures" / "exports"
JSON = FIXTURES / "Fixture Guild - tavern [555000000000000001].json"
CHANNEL = 555000000000000001


def snapshot(store):
    return [(m.id, m.content, json.dumps(m.reactions), m.lore_score) for m in store.iter_messages()]


def test_json_import_filters_and_counts_by_reason(store):
    report = import_exports(store, JSON, Filters(), channel_id=CHANNEL, progress=False)
    assert report.total("read") == 6 and report.total("new") == 3
    assert report.skipped == {"system": 1, "bot": 1, "attachment_only": 1}
    assert {m.content[:10] for m in store.iter_messages()} == {"Who rememb", "The oven c", "A poll abo"}
    assert "6 read, 3 new" in report.summary() and "messages/s" in report.summary()


def test_importing_twice_changes_nothing(store):
    import_exports(store, FIXTURES, Filters(), progress=False)
    before = snapshot(store)
    again = import_exports(store, FIXTURES, Filters(), progress=False)
    assert snapshot(store) == before
    assert again.total("new") == again.total("updated") == 0 and again.total("duplicates") > 0


def test_edits_replace_content_and_older_versions_do_not(store, tmp_path):
    import_exports(store, JSON, Filters(), progress=False)
    data = json.loads(JSON.read_text(encoding="utf-8"))
    question = data["messages"][1]
    question["content"], question["timestampEdited"] = (
        "Who remembers the pizza outage? (edited again)",
        "2021-01-01T00:00:00+00:00",
    )
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(data), encoding="utf-8")
    assert import_file(store, newer, Filters(), progress=False).updated == 1
    assert "edited again" in next(m.content for m in store.iter_messages() if m.id == int(question["id"]))
    assert import_file(store, JSON, Filters(), progress=False).updated == 0  # the older export loses
    assert "edited again" in next(m.content for m in store.iter_messages() if m.id == int(question["id"]))


def test_duplicate_ids_across_files_are_kept_once(store, tmp_path):
    for name in ("2020.json", "2020-again.json"):
        shutil.copy(JSON, tmp_path / name)
    report = import_exports(store, tmp_path, Filters(), progress=False)
    assert store.count() == 3
    assert [f.new for f in report.files] == [3, 0] and report.files[1].duplicates == 3


def test_a_truncated_file_imports_nothing_and_the_rest_goes_on(store, tmp_path):
    import_exports(store, FIXTURES / "old-schema [555000000000000001].json", Filters(), progress=False)
    before = snapshot(store)
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "a-broken.json").write_bytes(JSON.read_bytes()[:-300])
    shutil.copy(FIXTURES / "Fixture Guild - tavern [555000000000000001].txt", folder / "b-good.txt")
    report = import_exports(store, folder, Filters(), progress=False)
    assert [bool(f.error) for f in report.files] == [True, False]
    assert "a-broken.json" in report.files[0].error and "truncated" in report.files[0].error
    assert "FAILED" in report.summary()
    assert set(before) <= set(snapshot(store)) and store.count() == len(before) + report.files[1].new
    assert not any(m.id == 780000000000000003 for m in store.iter_messages())  # nothing of the broken file


def test_export_of_another_channel_is_refused(store, tmp_path):
    report = import_exports(store, JSON, Filters(), channel_id=123456789012345678, progress=False)
    assert store.count() == 0
    assert "channel 555000000000000001 (#tavern)" in report.files[0].error and "--any-channel" in report.files[0].error


def test_a_one_megabyte_message_is_cut_with_a_warning(store, tmp_path, caplog):
    data = json.loads(JSON.read_text(encoding="utf-8"))
    data["messages"][1]["content"] = "pizza " * 180_000
    path = tmp_path / "big.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    report = import_exports(store, path, Filters(max_chars=4000), progress=False)
    assert report.warnings["truncated"] == 1
    assert max(len(m.content) for m in store.iter_messages()) == 4000
    assert any("message #2" in r.getMessage() and "cut to 4,000" in r.getMessage() for r in caplog.records)


def test_invalid_utf8_leaves_the_store_as_it_was(store, tmp_path):
    import_exports(store, FIXTURES / "old-schema [555000000000000001].json", Filters(), progress=False)
    before = snapshot(store)
    path = tmp_path / "bad.json"
    path.write_bytes(JSON.read_bytes().replace(b"legendary", b"legen\xffdary"))
    report = import_exports(store, path, Filters(), progress=False)
    assert "invalid UTF-8" in report.files[0].error and snapshot(store) == before


def test_filters_are_configurable(store):
    keep_all = Filters(skip_bots=False, skip_system=False, skip_commands=False)
    report = import_exports(store, JSON, keep_all, progress=False)
    assert report.skipped == {"attachment_only": 1} and store.count() == 5
    assert Filters().is_command("!play x") and Filters().is_command("/roll 2d6")
    assert not Filters().is_command("...so anyway") and not Filters().is_command("? what")
    assert Filters(command_prefixes=(">",)).is_command(">help")


def test_opted_out_members_are_not_imported_again(store):
    import_exports(store, JSON, Filters(), progress=False)
    assert store.forget(1001) == 1
    report = import_exports(store, JSON, Filters(opted_out=frozenset(store.opted_out())), progress=False)
    assert report.skipped["opted_out"] == 2 and all(m.author_id != 1001 for m in store.iter_messages())
    assert store.upsert([m for m in store.iter_messages()][:1]) == 0  # unchanged rows are not rewritten


def test_lore_is_classified_with_reasons(store):
    import_exports(store, FIXTURES, Filters(), keywords=("speedrun",), progress=False)
    story = next(m for m in store.iter_messages() if m.id == 780000000000000003)
    assert story.lore_score >= LORE_THRESHOLD
    assert "pinned" in story.lore_reasons and "7 reactions" in story.lore_reasons
    assert any(r.startswith("keywords: speedrun") for r in story.lore_reasons)
    assert store.lore_count(LORE_THRESHOLD) >= 1


def test_stats_per_member_and_month(store):
    import_exports(store, FIXTURES, Filters(), progress=False)
    months = dict(store.month_counts())
    assert set(months) == {"2019-05", "2020-11"}
    names = [name for name, _, _ in store.author_counts()]
    assert "Alice" in names and "Bobby" in names


def test_forgetting_a_member_reaches_every_format_and_keeps_them_out(store, tmp_path):
    from indexes.forget import forget_member

    text = FIXTURES / "Fixture Guild - tavern [555000000000000001].txt"
    import_exports(store, JSON, Filters(), progress=False)
    import_exports(store, text, Filters(), progress=False)
    alice_rows = [m for m in store.iter_messages() if m.author_name == "alice"]
    assert len({m.author_id for m in alice_rows}) == 2  # her JSON id, and the id plain text derives from her name
    assert forget_member(store, None, tmp_path, 1001).messages == 1  # her Discord id: the JSON message only
    report = forget_member(store, None, tmp_path, 1001, names=["alice"])  # an admin names her
    assert report.messages == len(alice_rows) - 1 and "alice" in report.names
    assert not any(m.author_name == "alice" for m in store.iter_messages())
    again = import_exports(store, FIXTURES, Filters(opted_out=frozenset(store.opted_out())), progress=False)
    assert not any(m.author_name == "alice" for m in store.iter_messages()) and again.skipped.get("opted_out")


def test_a_name_given_for_a_member_known_only_from_plain_text(store, tmp_path):
    from indexes.forget import forget_member

    import_exports(store, FIXTURES / "Fixture Guild - tavern [555000000000000001].txt", Filters(), progress=False)
    assert any(m.author_name == "dave" for m in store.iter_messages())
    forget_member(store, None, tmp_path, 424242, names=["dave"])
    assert not any(m.author_name == "dave" for m in store.iter_messages())


def test_a_bad_value_is_a_counted_problem_and_a_folder_always_goes_on(store, tmp_path, caplog, monkeypatch):
    """Values the store cannot hold or dates that cannot be true skip their message, never the file or folder."""
    folder = tmp_path / "exports"
    folder.mkdir()
    csv = (FIXTURES / "Fixture Guild - tavern [555000000000000001].csv").read_text(encoding="utf-8")
    csv = csv.replace('"1001","alice","2020-11-24T15:15', '"1001","alice","2100-11-24T15:15')  # dated 2100
    csv = csv.replace('"1002","bob"', '"99999999999999999999","bob"')  # an author id past 64 bits
    csv = csv.replace('"1001","alice","2020-11-24T15:19', '"²","alice","2020-11-24T15:19')  # a digit, not a number
    (folder / "a.csv").write_text(csv, encoding="utf-8")
    txt = (FIXTURES / "Fixture Guild - tavern [555000000000000001].txt").read_text(encoding="utf-8")
    (folder / "b.txt").write_text(txt.replace("[11/24/2020 3:15 PM] alice", "[11/24/2100 3:15 PM] alice"), "utf-8")
    html = (FIXTURES / "Fixture Guild - tavern [555000000000000001].html").read_text(encoding="utf-8")
    html = html.replace(
        "scrollToMessage(event, '780000000000000002')", "scrollToMessage(event, '99999999999999999999')"
    )
    html = html.replace(
        '<span class="chatlog__reaction-count">3</span>', '<span class="chatlog__reaction-count">²</span>'
    )
    (folder / "c.html").write_text(html, encoding="utf-8")
    data = json.loads(JSON.read_text(encoding="utf-8"))
    data["messages"][1]["timestamp"] = "9999-12-31T23:00-05:00"  # past what a UTC date can hold
    (folder / "d.json").write_text(json.dumps(data), encoding="utf-8")
    shutil.copy(FIXTURES / "old-schema [555000000000000001].json", folder / "e.json")

    report = import_exports(store, folder, Filters(), progress=False)
    assert report.failed == []
    assert [f.skipped["malformed"] for f in report.files] == [3, 1, 2, 1, 1]  # e.json has one of its own (no id)
    assert [f.new > 0 for f in report.files] == [True, True, False, True, True]  # c.html kept only broken ones
    said = " | ".join(r.getMessage() for r in caplog.records)
    for expected in (
        "a.csv: line 2: skipped: date 2100-11-24",
        "a.csv: line 3: skipped: author id is out of range",
        "a.csv: line 6: skipped: author id is not a number: '²'",
        "b.txt: line 7: skipped: date 2100-11-24",
        "reply-to id is out of range",
        "reaction count of '😂' is not a number",
        "d.json: message #2: skipped: date is out of range",
    ):
        assert expected in said, expected

    from indexes.importer import open_export

    def broken(path, dayfirst=False):  # a reader failing in a way nobody foresaw, on one file
        if path.name == "c.html":
            raise RuntimeError("a bug in a reader")
        return open_export(path, dayfirst=dayfirst)

    monkeypatch.setattr("indexes.importer.open_export", broken)
    report = import_exports(store, folder, Filters(), progress=False)
    assert [bool(f.error) for f in report.files] == [False, False, True, False, False]
    assert "c.html: cannot be read (RuntimeError: a bug in a reader)" in report.files[2].error
