"""Each user's chats, characters, presets and settings are theirs alone: what bob saves
through the facade lands in user_data/users/bob/ and alice never lists it (the real
stores on real files; the UI and API reach them through the same `Hearth.space()`)."""
from __future__ import annotations

import pytest

from loaders.params import GenerationParams
from webui.accounts.current import acting_as
from webui.accounts.users import UserBook
from webui.characters.character import Character
from webui.chat.histories import ChatHistory, new_chat_id
from webui.hearth import Hearth


@pytest.fixture
def hearth(tmp_path):
    book = UserBook(tmp_path / "users.json")
    book.add("alice", "alice-password")
    book.add("bob", "bob-password")
    core = Hearth(tmp_path / "models", user_data_dir=tmp_path)
    yield core
    core.engine.close()


def test_what_bob_saves_is_bobs_alone(hearth, tmp_path):
    with acting_as("alice"):
        alice_presets, alice_characters = set(hearth.space().presets.names()), set(hearth.space().characters.names())
    with acting_as("bob"):
        bob = hearth.space()
        bob.presets.save("bobs-preset", GenerationParams(temperature=0.3))
        bob.characters.save(Character("Bobs Friend", greeting="Hi"))
        bob.settings.update(mode="chat")
        bob.histories.save(ChatHistory(new_chat_id(), "Bobs Friend", title="bob's secret"))
    assert (tmp_path / "users" / "bob" / "presets" / "bobs-preset.yaml").exists()
    assert (tmp_path / "users" / "bob" / "characters").is_dir()
    with acting_as("alice"):
        alice = hearth.space()
        assert set(alice.presets.names()) == alice_presets
        assert set(alice.characters.names()) == alice_characters
        assert alice.settings.load().mode != "chat"
        assert alice.histories.list("Bobs Friend") == []
    with acting_as("bob"):
        assert [c.title for c in hearth.space().histories.list("Bobs Friend")] == ["bob's secret"]
    assert not (tmp_path / "presets").exists() and not (tmp_path / "histories").exists()
