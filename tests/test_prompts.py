import base64
import json
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from prompts import PromptError, load_persona, load_prompt, load_prompts

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ROOT / "prompts"


@pytest.mark.parametrize("path", sorted(PROMPTS.glob("*.txt")), ids=lambda p: p.name)
def test_every_prompt_file_loads_and_formats_with_its_declared_variables(path):
    prompt = load_prompt(path)
    assert prompt.variables, f"{path.name} declares no variables"
    text = prompt.format(**{v: f"<{v}>" for v in prompt.variables})
    for variable in prompt.variables:
        assert f"<{variable}>" in text


def test_the_shipped_prompt_set_and_persona_load():
    prompts = load_prompts(PROMPTS)
    persona = load_persona(PROMPTS / "persona.yaml")
    assert persona.name == "Susu" and persona.fallback_lines and persona.examples
    assert {"summary", "lore"} <= prompts.headings.keys()


def test_undeclared_variable_fails_at_load(tmp_path):
    bad = tmp_path / "system.txt"
    bad.write_text("---\nvariables: [char]\n---\nYou are {char}. {persona}\n")
    with pytest.raises(PromptError, match=r"undeclared variable\(s\) \['persona'\]"):
        load_prompt(bad)


def test_declared_but_unused_variable_fails_at_load(tmp_path):
    bad = tmp_path / "x.txt"
    bad.write_text("---\nvariables: [char, lore]\n---\nYou are {char}.\n")
    with pytest.raises(PromptError, match="never uses"):
        load_prompt(bad)


def test_missing_value_fails_loudly():
    prompt = load_prompt(PROMPTS / "lore.txt")
    with pytest.raises(PromptError, match="missing value for date"):
        prompt.format(author="a", content="c")


def test_missing_prompt_file_is_named(tmp_path):
    with pytest.raises(PromptError, match="system.txt: prompt file is missing"):
        load_prompts(tmp_path)


def test_persona_placeholders_are_rendered(persona):
    core = persona.core("alice")
    assert "{{" not in core and "Susu" in core and "alice" in core


CARD = {
    "spec": "chara_card_v2",
    "spec_version": "2.0",
    "data": {
        "name": "Mochi",
        "description": "{{char}} is a shy robot barista.",
        "personality": "gentle",
        "scenario": "a café",
        "first_mes": "welcome, {{user}}!",
        "mes_example": "<START>\n{{user}}: hi\n{{char}}: beep, hello!\n<START>\n{{user}}: coffee?\n{{char}}: always",
        "creator_notes": "SECRET NOTES never in prompts",
        "system_prompt": "",
        "post_history_instructions": "Stay brief.",
        "alternate_greetings": [],
        "tags": ["robot"],
        "creator": "me",
        "character_version": "1",
        "extensions": {"custom_tool": {"keep": True}},
        "character_book": {
            "scan_depth": 3,
            "entries": [
                {
                    "keys": ["latte"],
                    "content": "The latte art is a cat.",
                    "enabled": True,
                    "insertion_order": 1,
                    "priority": 5,
                },
                {"keys": ["menu"], "content": "Disabled entry", "enabled": False, "insertion_order": 2},
            ],
        },
    },
}


def test_character_card_v2_json(tmp_path):
    path = tmp_path / "mochi.json"
    path.write_text(json.dumps(CARD))
    persona = load_persona(path)
    assert persona.name == "Mochi" and persona.examples == (
        ("{{user}}: hi", "beep, hello!"),
        ("{{user}}: coffee?", "always"),
    )
    assert persona.extensions == {"custom_tool": {"keep": True}}
    assert persona.lorebook_scan_depth == 3 and len(persona.lorebook) == 2
    core = persona.core("bob")
    assert "Mochi is a shy robot barista." in core and "Stay brief." in core and "SECRET" not in core
    assert persona.lorebook[0].matches("one LATTE please") and not persona.lorebook[1].matches("menu")


def test_character_card_v2_png(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("chara", base64.b64encode(json.dumps(CARD).encode()).decode())
    path = tmp_path / "mochi.png"
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    assert load_persona(path).name == "Mochi"


def test_not_a_card_is_refused(tmp_path):
    path = tmp_path / "card.json"
    path.write_text(json.dumps({"name": "x"}))
    with pytest.raises(PromptError, match="not a Character Card V2"):
        load_persona(path)
    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    with pytest.raises(PromptError, match="no 'chara' tEXt chunk"):
        load_persona(plain)
