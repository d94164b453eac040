"""Context shift on the real SmolLM2 model through llama.cpp: a character chat that
outgrows a small context drops its oldest turns inside the KV cache and evaluates
only the new turn; with the option off, everything after the character is read again."""
from __future__ import annotations

from pathlib import Path

import pytest

from loaders.kv_reuse import common_prefix
from loaders.params import GenerationParams
from webui.characters.store import CharacterStore
from webui.chat.conversation import ChatOptions
from webui.chat.histories import HistoryStore
from webui.userdata.folders import SHIPPED_CHARACTERS

# Ember's persona and greeting take about 215 tokens and each turn adds about 25, so
# from the 5th turn on every turn drops the oldest ones.
N_CTX = 320
TURNS = 6
PARAMS = GenerationParams(temperature=0.0, seed=1, max_new_tokens=12)
QUESTIONS = ["Tell me about your favourite place.", "What do you eat for breakfast?",
             "Do you have friends nearby?", "What is the weather like today?",
             "Sing me a short song.", "What scares you the most?", "Where did you grow up?",
             "What is your favourite book?"]
# Template glue around a new turn (end of the last reply, "<|im_start|>user\n", the
# generation prompt) and a token or two where a re-tokenized reply differs from the
# tokens the model generated.
GLUE = 16


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    from webui.hearth import Hearth

    root = tmp_path_factory.mktemp("context-shift")
    core = Hearth(models_dir=Path(root) / "no-models-here")
    core.histories = HistoryStore(root / "histories")
    core.characters = CharacterStore(SHIPPED_CHARACTERS, root / "characters")
    yield core
    core.unload_model()
    core.engine.close()


def long_chat(core, context_shift: bool) -> list[tuple[str, object, list[int]]]:
    """A chat-instruct chat with Ember past the context, on a freshly loaded model:
    (reply, stats, prompt ids) per turn."""
    core.load_model(None, "llama.cpp", {"n_ctx": N_CTX, "context_shift": context_shift})
    options = ChatOptions(mode="chat-instruct", character="Ember")
    conv = core.conversation(options)
    turns = []
    for question in QUESTIONS[:TURNS]:
        reply = conv.send(question, options, PARAMS)
        text, stats = reply.job.result()
        conv.update(reply, text)
        conv.finish(reply, failed=False)
        turns.append((text, stats, reply.job.prompt.built))
    return turns


def drop_turns(turns) -> list[int]:
    """Indexes of the turns that dropped older messages than the turn before."""
    return [i for i in range(1, len(turns)) if turns[i][2].first_kept > turns[i - 1][2].first_kept]


def test_a_chat_past_the_context_evaluates_only_the_new_turn(core):
    first = long_chat(core, context_shift=True)
    drops = drop_turns(first)
    assert len(drops) >= 2, [t[2].first_kept for t in first]
    counter = core.count_tokens
    for i in drops:
        _, stats, built = first[i]
        new_turn = counter(QUESTIONS[i]) - 1  # less the BOS count_tokens includes
        assert stats.prompt_eval_tokens <= new_turn + GLUE, (i, stats)
        assert stats.prompt_eval_tokens < len(built.ids) / 4, (i, stats)
        # The system prompt and the character stay at the front.
        assert built.text.startswith("<|im_start|>system\nEmber is")
    for text, _, _ in first:
        assert len(text.split()) >= 3 and sum(c.isalpha() for c in text) > len(text) / 2, text

    # The same chat again gives the same replies, shifts included.
    second = long_chat(core, context_shift=True)
    assert [t[0] for t in second] == [t[0] for t in first]


def test_with_context_shift_off_the_kept_history_is_read_again(core):
    turns = long_chat(core, context_shift=False)
    drops = drop_turns(turns)
    assert len(drops) >= 2
    for i in drops:
        _, stats, built = turns[i]
        previous = turns[i - 1][2].ids
        # Only the common prefix (the character) is reused: today's behaviour.
        assert stats.prompt_eval_tokens == len(built.ids) - common_prefix(previous, built.ids), (i, stats)
        assert stats.prompt_eval_tokens > len(built.ids) / 4, (i, stats)
