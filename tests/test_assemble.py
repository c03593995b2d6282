from chains.assemble import ContextAssembler, speaker_label
from chains.types import ChatMessage, LoreItem


def make(tokenizer, prompt_set, persona, budget=384):
    return ContextAssembler(tokenizer, prompt_set, persona, budget)


def history(n: int) -> list[ChatMessage]:
    return [
        ChatMessage(author=f"user{i % 3}", content=f"this is chat message number {i} about games", message_id=i)
        for i in range(n)
    ]


LORE = [
    LoreItem(
        content=f"lore fact {i}: " + "the tavern was founded in march " * 3,
        author="ravenna",
        date="2023-03-04",
        score=1 - i / 10,
    )
    for i in range(5)
]


def test_everything_fits_in_a_large_budget(tokenizer, prompt_set, persona):
    a = make(tokenizer, prompt_set, persona, 2000)
    msg = ChatMessage("alice", "@Susu hi")
    out = a.assemble(msg, "hi", history(4), LORE, "alice asked about tetris.")
    assert out.cut == [] and out.tokens <= 2000
    assert (
        "alice asked about tetris." in out.prompt and "lore fact 4" in out.prompt and "message number 0" in out.prompt
    )
    # the model's own chat template is used
    assert "<|im_start|>system" in out.prompt and out.prompt.rstrip().endswith("<|im_start|>assistant")


def test_budget_is_respected_with_the_model_tokenizer_and_priorities_hold(tokenizer, prompt_set, persona):
    a = make(tokenizer, prompt_set, persona, 384)
    out = a.assemble(ChatMessage("alice", "x"), "what is the lore?", history(30), LORE, "a summary " * 30)
    assert out.tokens <= 384 == out.budget
    assert len(tokenizer.encode(out.prompt, add_special_tokens=False)) == out.tokens
    assert persona.core("alice")[:60] in out.prompt  # persona is never cut
    assert "what is the lore?" in out.prompt  # the message is never cut here
    assert "message number 29" in out.prompt  # newest history kept first
    assert "message number 0 " not in out.prompt and any("older messages" in c for c in out.cut)
    assert any(c.startswith("summary") for c in out.cut)  # the summary goes before lore and history


def test_lore_is_cut_before_recent_history(tokenizer, prompt_set, persona):
    a = make(tokenizer, prompt_set, persona, 300)
    out = a.assemble(ChatMessage("alice", "x"), "hello", history(3), LORE, "")
    assert "message number 2" in out.prompt and any(c.startswith("lore") for c in out.cut)


def test_a_huge_message_is_shortened_but_the_persona_stays(tokenizer, prompt_set, persona):
    a = make(tokenizer, prompt_set, persona, 384)
    out = a.assemble(ChatMessage("alice", "x"), "spam " * 4000, [], [], "")
    assert out.tokens <= 384 and any("message shortened" in c for c in out.cut)
    assert persona.core("alice")[:60] in out.prompt


def test_character_own_messages_are_assistant_turns_and_name_clash_is_labelled(tokenizer, prompt_set, persona):
    a = make(tokenizer, prompt_set, persona, 2000)
    past = [ChatMessage("susu", "I am the real susu"), ChatMessage("Susu", "mrrp, hello", from_character=True)]
    out = a.assemble(ChatMessage("bob", "x"), "hi", past, [], "")
    assert "susu (member): I am the real susu" in out.prompt
    assert "<|im_start|>assistant\nmrrp, hello" in out.prompt
    assert speaker_label("Su\nsu:", "Susu") == "Su su"


STRICT_TEMPLATE = (  # like Mistral's: a system message only first, then user and assistant alternating
    "{% for m in messages %}{% if m['role'] == 'system' and not loop.first %}"
    "{{ raise_exception('roles must alternate') }}{% endif %}"
    "[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
)
NO_SYSTEM_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
    "[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
)


def with_template(tokenizer, template):
    import copy

    other = copy.deepcopy(tokenizer)
    other.chat_template = template
    return other


def test_lore_is_a_system_turn_right_before_the_message_where_the_template_allows(tokenizer, prompt_set, persona):
    out = make(tokenizer, prompt_set, persona, 2000).assemble(ChatMessage("alice", "x"), "hi", history(2), LORE[:1], "")
    lore_turn = out.prompt.index("<|im_start|>system\nTavern lore")
    assert out.prompt.index("message number 1") < lore_turn < out.prompt.index("alice: hi")


def test_templates_that_refuse_a_second_system_turn_get_the_lore_in_the_last_user_turn(tokenizer, prompt_set, persona):
    strict = make(with_template(tokenizer, STRICT_TEMPLATE), prompt_set, persona, 2000)
    out = strict.assemble(ChatMessage("alice", "x"), "hi", history(2), LORE[:1], "")
    assert out.prompt.startswith("[system] You are Susu") and out.prompt.count("[system]") == 1
    last_user = out.prompt[out.prompt.rindex("[user]") :]
    assert "Tavern lore" in last_user and last_user.index("Tavern lore") < last_user.index("alice: hi")
    folded = make(with_template(tokenizer, NO_SYSTEM_TEMPLATE), prompt_set, persona, 2000)
    out = folded.assemble(ChatMessage("alice", "x"), "hi", [], LORE[:1], "")
    assert "[system]" not in out.prompt and out.prompt.startswith("[user] You are Susu") and "Tavern lore" in out.prompt
