"""The four DiscordChatExporter formats, read from hand-written fixtures, and broken files."""

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from indexes.exports import ExportError, MessageProblem, export_files, open_export

FIXTURES = Path(__file__).parent / "fixtures" / "exports"
NAME = "Fixture Guild - tavern [555000000000000001]"
CHANNEL = 555000000000000001


def read(path):
    reader = open_export(path)
    items = list(reader)
    return (
        reader,
        [m for _, m in items if not isinstance(m, MessageProblem)],
        [(p, m) for p, m in items if isinstance(m, MessageProblem)],
    )


def by_content(messages, start):
    return next(m for m in messages if m.content.startswith(start))


@pytest.mark.parametrize("suffix", ["json", "csv", "txt", "html"])
def test_every_format_keeps_what_retrieval_and_training_need(suffix):
    reader, messages, problems = read(FIXTURES / f"{NAME}.{suffix}")
    assert reader.format == suffix and not problems
    assert reader.info.channel_id == CHANNEL  # from the body, or from the exporter's "[id]" file name
    question = by_content(messages, "Who remembers the")
    assert question.author_name == "alice"
    assert question.timestamp == datetime(2020, 11, 24, 15, 15, tzinfo=timezone.utc)
    assert question.reactions == {"😂": 3}
    story = by_content(messages, "The oven caught fire")
    assert story.reactions == {"🔥": 5, "pizza_party": 2}
    attachment_only = next(m for m in messages if m.attachments)
    assert attachment_only.content == "" and attachment_only.attachments == ["cat.png"]
    assert len({m.id for m in messages}) == len(messages)
    if suffix in ("json", "html"):  # the formats that carry ids, nicknames, bots, pins and replies
        assert question.id == 780000000000000002 and question.author_id == 1001
        assert question.author_display == "Alice" and question.edited_at is not None
        assert story.is_pinned and story.reply_to == 780000000000000002 and story.author_display == "Bobby"
        assert any(m.author_is_bot for m in messages)
    if suffix == "txt":
        assert story.is_pinned and "\n\nWe still talk about it." in story.content


def test_json_keeps_unknown_types_as_numbers_and_mentions():
    _, messages, _ = read(FIXTURES / f"{NAME}.json")
    assert by_content(messages, "A poll about").type == "46"
    assert by_content(messages, "The oven").mentions == [1001]


def test_old_schema_json_needs_only_id_timestamp_content_author():
    reader, messages, problems = read(FIXTURES / "old-schema [555000000000000001].json")
    assert [m.id for m in messages] == [700000000000000001, 700000000000000002, 700000000000000004]
    assert messages[0].reactions == {"👋": 7} and messages[0].type == "Default" and not messages[0].author_is_bot
    assert problems == [("message #3", problems[0][1])] and "no id" in str(problems[0][1])


def test_old_csv_semicolons_locale_dates_and_names_only():
    reader, messages, problems = read(FIXTURES / "old-semicolons [555000000000000001].csv")
    assert [m.author_name for m in messages] == ["alice#4242", "bob#0001"]
    assert messages[0].timestamp == datetime(2019, 5, 22, 14, 29, tzinfo=timezone.utc)
    assert messages[1].content == "Glad to be here; the pizza is great."
    assert [p for p, _ in problems] == ["line 4"] and "unreadable date" in str(problems[0][1])


def test_csv_and_txt_ids_are_stable_across_reads():
    for suffix in ("csv", "txt"):
        first = [m.id for m in read(FIXTURES / f"{NAME}.{suffix}")[1]]
        assert first == [m.id for m in read(FIXTURES / f"{NAME}.{suffix}")[1]]
        assert first == sorted(first)  # time-ordered like Discord snowflakes


def test_format_is_chosen_by_content_not_extension(tmp_path):
    renamed = tmp_path / "export.data"
    shutil.copy(FIXTURES / f"{NAME}.txt", renamed)
    assert open_export(renamed).format == "txt"


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not a DiscordChatExporter export"),
        (b"hello, this is a diary", "not a DiscordChatExporter export"),
        (b"", "the file is empty"),
        (b'[{"id": 1}]', "top level is not an object"),
        (b'{"guild": {}, "channel": {}}', "no 'messages' list"),
        (b'"Name","Email"\n"a","b"\n', "not a DiscordChatExporter export"),
    ],
)
def test_wrong_files_are_refused_with_the_reason(tmp_path, content, expected):
    path = tmp_path / "wrong.json"
    path.write_bytes(content)
    with pytest.raises(ExportError, match=expected) as error:
        list(open_export(path))
    assert str(path) in str(error.value)


def truncate(source: Path, tmp_path: Path, keep: float) -> Path:
    data = source.read_bytes()
    path = tmp_path / source.name
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize("suffix, position", [("json", "near byte"), ("txt", "line"), ("html", "line")])
def test_truncated_exports_are_refused_with_the_position(tmp_path, suffix, position):
    path = truncate(FIXTURES / f"{NAME}.{suffix}", tmp_path, 0.7)
    with pytest.raises(ExportError, match="truncated") as error:
        list(open_export(path))
    assert position in str(error.value) and path.name in str(error.value)


def test_truncated_csv_inside_a_quoted_field_is_refused(tmp_path):
    path = tmp_path / "cut.csv"
    path.write_text(
        '"AuthorID","Author","Date","Content","Attachments","Reactions"\n'
        '"1","a","2020-01-01T00:00:00+00:00","an unfinished',
        encoding="utf-8",
    )
    with pytest.raises(ExportError, match="line 2.*truncated"):
        list(open_export(path))


@pytest.mark.parametrize("suffix", ["json", "csv", "txt", "html"])
def test_invalid_utf8_is_refused_with_the_position(tmp_path, suffix):
    data = (FIXTURES / f"{NAME}.{suffix}").read_bytes().replace(b"pizza outage", b"pizza \xff\xfe outage", 1)
    path = tmp_path / f"bad.{suffix}"
    path.write_bytes(data)
    with pytest.raises(ExportError, match="UTF-8") as error:
        list(open_export(path))
    assert "byte" in str(error.value)


def test_a_large_json_message_streams(tmp_path):
    data = json.loads((FIXTURES / f"{NAME}.json").read_text(encoding="utf-8"))
    data["messages"][1]["content"] = "x" * 1_000_000
    path = tmp_path / "big.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    messages = [m for _, m in open_export(path)]
    assert len(messages[1].content) == 1_000_000


def test_folders_are_searched_for_export_files(tmp_path):
    (tmp_path / "a").mkdir()
    shutil.copy(FIXTURES / f"{NAME}.json", tmp_path / "a" / "one.json")
    (tmp_path / "a" / "one.json_Files").mkdir()
    (tmp_path / "a" / "one.json_Files" / "asset.txt").write_text("not an export")
    (tmp_path / "notes.md").write_text("x")
    assert export_files(tmp_path) == [tmp_path / "a" / "one.json"]
    with pytest.raises(ExportError, match="no export files"):
        export_files(tmp_path / "a" / "one.json_Files")


# --- hostile files ----------------------------------------------------------------------------------


def txt_with(tmp_path, content: str, declared: int = 5) -> Path:
    text = (FIXTURES / f"{NAME}.txt").read_text(encoding="utf-8")
    text = text.replace("[not a header] brackets in content are fine", content).replace(
        "Exported 5 message(s)", f"Exported {declared} message(s)"
    )
    path = tmp_path / "forged.txt"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_footer_typed_inside_a_message_does_not_end_the_import(tmp_path):
    path = txt_with(
        tmp_path,
        "look at this\n==============================================================\n"
        "Exported 1 message(s)\nand more text after it",
    )
    _, messages, problems = read(path)
    dave = by_content(messages, "look at this")
    assert len(messages) == 5 and not problems and dave.content.endswith("and more text after it")


def test_a_header_typed_inside_a_message_without_a_blank_line_is_content(tmp_path):
    _, messages, _ = read(txt_with(tmp_path, "hi\n[02/11/2024 13:03] Ravenna\nI am leaving the server"))
    assert len(messages) == 5 and not any(m.author_name == "Ravenna" for m in messages)
    assert "[02/11/2024 13:03] Ravenna" in by_content(messages, "hi").content


def test_a_forged_message_after_a_blank_line_refuses_the_file_naming_the_line(tmp_path):
    path = txt_with(tmp_path, "hi\n\n[02/11/2024 13:03] Ravenna\nI am leaving the server")
    with pytest.raises(ExportError, match=r"lines \d+.*6 message headers but the footer counts 5.*JSON or HTML"):
        list(open_export(path))


def test_plain_text_system_notices_are_system_messages(tmp_path):
    _, messages, _ = read(txt_with(tmp_path, "Pinned a message."))
    assert by_content(messages, "Pinned a message.").type == "ChannelPinnedMessage"
    assert by_content(messages, "Who remembers").type == "Default"


def test_the_real_plain_text_export_reads_completely():
    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-exports" / "nextgen-oct30.txt"
    if not real.is_file():
        pytest.skip(f"the real export is not here ({real})")
    reader, messages, problems = read(real)
    assert len(messages) == reader.info.declared_count == 964 and not problems


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("where", ["content", "guild"])
def test_deeply_nested_json_is_refused_early_with_its_position(tmp_path, where):
    import resource

    data = json.loads((FIXTURES / f"{NAME}.json").read_text(encoding="utf-8"))
    text = json.dumps(data)
    if where == "guild":
        text = text.replace('"guild": {', f'"guild": {{"deep": {nested(100_000)}, ', 1)
    else:
        text = text.replace('"content": "Who remembers', f'"content": {nested(20_000)}, "x": "Who remembers', 1)
    path = tmp_path / "deep.json"
    path.write_text(text, encoding="utf-8")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ExportError, match=r"deep.json: near byte [\d,]+.*nested more than \d+ levels") as error:
        list(open_export(path))
    assert "\n" not in str(error.value)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200  # refused as soon as it is read, not after building the whole structure


def test_an_id_too_large_for_sqlite_is_a_problem_not_a_crash(tmp_path):
    data = json.loads((FIXTURES / f"{NAME}.json").read_text(encoding="utf-8"))
    data["messages"][0]["id"] = "9" * 30
    path = tmp_path / "big-id.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    _, messages, problems = read(path)
    assert len(problems) == 1 and "out of range" in str(problems[0][1]) and len(messages) == len(data["messages"]) - 1


def test_html_keeps_the_markdown_members_wrote(tmp_path):
    html = (
        (FIXTURES / f"{NAME}.html")
        .read_text(encoding="utf-8")
        .replace(
            "The oven caught fire during the speedrun, legendary night.",
            "The <strong>oven</strong> caught <em>fire</em>, see "
            '<code class="chatlog__markdown-pre chatlog__markdown-pre--inline">oven.log</code> '
            'and <a href="https://example.org/log">the log</a> '
            '<span class="chatlog__markdown-spoiler chatlog__markdown-spoiler--hidden">it was bob</span>'
            '<code class="chatlog__markdown-pre chatlog__markdown-pre--multiline language-py">print("fire")</code>',
        )
    )
    path = tmp_path / "markdown.html"
    path.write_text(html, encoding="utf-8")
    _, messages, _ = read(path)
    story = by_content(messages, "The **oven**")
    assert story.content.startswith(
        "The **oven** caught *fire*, see `oven.log` and [the log](https://example.org/log) "
        '||it was bob||```py\nprint("fire")\n```'
    )


REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-exports"


def test_the_real_html_and_plain_text_exports_agree():
    if not (REAL / "nextgen-oct30.html").is_file():
        pytest.skip(f"the real exports are not here ({REAL})")
    _, html, html_problems = read(REAL / "nextgen-oct30.html")
    _, text, text_problems = read(REAL / "nextgen-oct30.txt")
    assert len(html) == len(text) == 964 and not html_problems and not text_problems
    same = sum(a.content.strip() == b.content.strip() for a, b in zip(html, text, strict=True))
    assert same >= 0.98 * len(html)  # bold, code, masked links and custom emoji read back as typed
    pins = [m for m in html if m.type == "ChannelPinnedMessage"]
    assert len(pins) == 3 and all(m.content == "Pinned a message." for m in pins)
    assert [m.type for m in text if m.content == "Pinned a message."] == ["ChannelPinnedMessage"] * 3
