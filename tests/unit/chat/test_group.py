"""Group chats (chat/group.py): the turn-taking rules, the prompt of a member's reply
in both chat modes (persona, the others, named history, stop strings), and the group
kept in the chat file. Prompts are built with SmolLM2's real tokenizer."""
from __future__ import annotations

import json

import pytest

from webui.characters.character import Character
from webui.characters.store import CharacterStore
from webui.chat.context import TokenCounter
from webui.chat.conversation import ChatOptions, Conversation
from webui.chat.group import (
    Group,
    GroupError,
    GroupTurn,
    group_from_json,
    make_group,
    mentioned,
    next_speaker,
    plan_turn,
    strip_own_name,
    unlabel,
)
from webui.chat.histories import HistoryStore
from webui.chat.prompts import ChatRequest, build_chat_prompt
from webui.chat.templates import BUILTIN_TEMPLATES
from webui.userdata.folders import SHIPPED_CHARACTERS

EMBER = Character(name="Ember", context="Ember is a hearth spirit. She loves riddles.",
                  example_dialogue="<START>\n{{user}}: hi\n{{char}}: *crackles* hello")
SAGE = Character(name="Sage", context="Sage is an old owl who keeps the books. Dry humour.")
MOSS = Character(name="Moss", personality="quiet, green")
GROUP = Group(("Ember", "Sage", "Moss"))


def said(name: str | None, text: str = "...") -> dict:
    return {"role": "assistant", "content": text, **({"name": name} if name else {})}


def user(text: str = "hi") -> dict:
    return {"role": "user", "content": text}


@pytest.fixture
def counter(tokenizer):
    return TokenCounter(tokenizer)


def test_round_robin_follows_the_member_list_from_the_last_speaker():
    assert next_speaker(GROUP, []) == "Ember"
    assert next_speaker(GROUP, [said("Ember"), user()]) == "Sage"
    assert next_speaker(GROUP, [said("Ember"), user(), said("Sage"), user()]) == "Moss"
    assert next_speaker(GROUP, [said("Moss"), user()]) == "Ember"  # wraps around
    assert next_speaker(GROUP, [said(None), user()]) == "Ember"  # no named speaker yet: the first


def test_mentioned_picks_the_member_named_first_in_the_last_message():
    rule = Group(GROUP.members, "mentioned")
    assert next_speaker(rule, [said("Ember"), user("Moss, and you, sage?")]) == "Moss"
    assert next_speaker(rule, [said("Ember"), user("what do you think, SAGE")]) == "Sage"  # any case
    assert mentioned(GROUP.members, user("Sages and mosses")) is None  # whole words only
    # A member does not answer itself: Ember naming Ember and Moss hands over to Moss.
    assert next_speaker(rule, [said("Ember", "I, Ember, ask Moss")]) == "Moss"
    # Nobody named: round-robin from the last speaker.
    assert next_speaker(rule, [said("Sage"), user("and then?")]) == "Moss"


def test_manual_needs_a_choice_and_a_choice_wins_under_any_rule():
    manual = Group(GROUP.members, "manual")
    with pytest.raises(GroupError, match="pick who speaks next"):
        next_speaker(manual, [user()])
    assert next_speaker(manual, [user()], chosen="Moss") == "Moss"
    assert next_speaker(GROUP, [said("Ember"), user()], chosen="Ember") == "Ember"
    with pytest.raises(GroupError, match="Bob is not in this group"):
        next_speaker(GROUP, [user()], chosen="Bob")


def test_a_group_needs_two_to_eight_different_members_and_a_known_rule():
    assert make_group(["Ember", " Sage ", "Ember"]).members == ("Ember", "Sage")
    with pytest.raises(GroupError, match="at least two different"):
        make_group(["Ember", "Ember"])
    with pytest.raises(GroupError, match="at most 8"):
        make_group([f"c{i}" for i in range(9)])
    with pytest.raises(GroupError, match="turns must be one of"):
        make_group(["Ember", "Sage"], "random")


def test_chat_instruct_prompt_names_every_speaker_and_describes_the_others(counter):
    msgs = [said("Ember", "Welcome!"), user("Hi both"), said("Sage", "Hoo."), user("Ember, a riddle?")]
    turn = GroupTurn(EMBER, (SAGE, MOSS))
    request = ChatRequest(msgs, mode="chat-instruct", character=EMBER, template=BUILTIN_TEMPLATES["ChatML"],
                          group=turn)
    prompt = build_chat_prompt(request, counter, None, 1024, 64)
    system = prompt.text.split("<|im_end|>")[0]
    assert system.startswith("<|im_start|>system\nEmber is a hearth spirit.")
    assert "- Sage: Sage is an old owl who keeps the books.\n- Moss: quiet, green" in system  # first sentence
    assert "Dry humour" not in system
    assert "write only Ember's next reply" in system
    # Ember's own turn is the template's assistant turn; the user's and Sage's are named,
    # merged into one user turn so templates that insist on alternating roles still render.
    assert prompt.text.endswith(
        "<|im_start|>assistant\nWelcome!<|im_end|>\n"
        "<|im_start|>user\nYou: Hi both\n\nSage: Hoo.\n\nYou: Ember, a riddle?<|im_end|>\n"
        "<|im_start|>assistant\n")
    assert prompt.stop == (*BUILTIN_TEMPLATES["ChatML"].stop, "\nYou:", "\nSage:", "\nMoss:")


def test_chat_mode_transcript_has_each_speakers_name_and_ends_with_the_speakers(counter):
    msgs = [said("Ember", "Welcome!"), user("Hi both"), said("Sage", "Hoo.")]
    request = ChatRequest(msgs, mode="chat", character=MOSS, group=GroupTurn(MOSS, (EMBER, SAGE)))
    prompt = build_chat_prompt(request, counter, None, 1024, 64)
    assert "- Ember: Ember is a hearth spirit." in prompt.text
    assert "write only" not in prompt.text  # a transcript has no instructions
    assert prompt.text.endswith("Ember: Welcome!\nYou: Hi both\nSage: Hoo.\nMoss:")
    assert prompt.stop == ("\nYou:", "\nMoss:", "\nEmber:", "\nSage:")


def test_plan_turn_reads_the_members_and_refuses_instruct_mode(tmp_path):
    store = CharacterStore(SHIPPED_CHARACTERS, tmp_path)
    group = Group(("Ember", "Sage"))
    turn = plan_turn(store, group, [said("Ember"), user()], "chat")
    assert turn.speaker.name == "Sage" and [c.name for c in turn.others] == ["Ember"]
    # Continuing a reply: its own speaker goes on, whatever the rule says.
    assert plan_turn(store, group, [said("Ember")], "chat", continue_last=True).speaker.name == "Ember"
    with pytest.raises(GroupError, match="need the chat or chat-instruct mode"):
        plan_turn(store, group, [], "instruct")
    with pytest.raises(GroupError, match="group member Nobody"):
        plan_turn(store, Group(("Ember", "Nobody")), [said("Ember")], "chat")


def test_a_reply_loses_its_own_name_prefix_and_an_edit_its_label():
    assert strip_own_name("Sage: Hoo.", "Sage") == "Hoo."
    assert strip_own_name("Ember: hi", "Sage") == "Ember: hi"
    assert unlabel("**Sage:** Hoo, edited", [said("Sage")], 0) == "Hoo, edited"
    assert unlabel("plain", [said(None)], 0) == "plain"
    assert unlabel("**Sage:** x", [said("Sage")], 3) == "**Sage:** x"  # no such message: the edit refuses it


def test_the_group_and_speakers_are_kept_in_the_chat_file_and_old_files_still_open(tmp_path):
    store = HistoryStore(tmp_path)
    history = store.new("Ember", "chat", "Welcome!")
    history.group = Group(("Ember", "Sage"), "mentioned")
    history.messages[0]["name"] = "Ember"
    history.messages += [user("Sage?"), said("Sage", "Hoo.")]
    store.save(history)
    data = json.loads((tmp_path / "Ember" / f"{history.id}.json").read_text())
    assert data["group"] == {"members": ["Ember", "Sage"], "turns": "mentioned"}
    again = store.load("Ember", history.id)
    assert again.group == history.group
    assert [m.get("name") for m in again.messages] == ["Ember", None, "Sage"]
    # A file written before group chats (no group key, no names) opens as a plain chat;
    # a damaged group key only loses the group.
    for group in (None, {"members": "Ember"}):
        data.pop("group", None)
        if group is not None:
            data["group"] = group
        for m in data["messages"]:
            m.pop("name", None)
        (tmp_path / "Ember" / f"{history.id}.json").write_text(json.dumps(data))
        old = store.load("Ember", history.id)
        assert old.group is None and len(old.messages) == 3
    assert group_from_json({"members": ["Ember", "Sage"]}) == Group(("Ember", "Sage"))


def test_new_chat_in_a_group_chat_starts_the_same_group_unless_the_character_or_mode_changes(tmp_path):
    ember = ChatOptions(mode="chat", character="Ember")
    conv = Conversation(CharacterStore(SHIPPED_CHARACTERS, tmp_path / "c"), HistoryStore(tmp_path / "h"),
                        None, None, ember)  # no reply is asked for: no model needed
    conv.start_group(make_group(["Ember", "Sage"], "mentioned"), ember)
    first = conv.history.id
    conv.new_chat(ember)
    assert conv.history.id != first and conv.history.group == Group(("Ember", "Sage"), "mentioned")
    assert conv.messages[0]["name"] == "Ember"  # the first member's greeting, named
    conv.new_chat(ChatOptions(mode="chat", character="Sage"))  # another character: a plain chat
    assert conv.history.group is None and "name" not in conv.messages[0]
    conv.start_group(make_group(["Ember", "Sage"]), ember)
    conv.new_chat(ChatOptions(mode="instruct", character="Ember"))  # no characters in instruct
    assert conv.history.group is None
