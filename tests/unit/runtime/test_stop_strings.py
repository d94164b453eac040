import itertools

import pytest

from webui.runtime.stop_strings import StopMatcher

TEXT = "Hello there.\nUser: what now?"


def run(pieces, stops):
    m = StopMatcher(stops)
    out = []
    for p in pieces:
        out.append(m.feed(p))
        if m.stopped:
            break
    out.append(m.flush())
    return "".join(out), m.stopped


def splits(text, n_cuts):
    for cuts in itertools.combinations(range(1, len(text)), n_cuts):
        bounds = (0, *cuts, len(text))
        yield [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@pytest.mark.parametrize("n_cuts", [1, 2, 3])
def test_stop_found_whatever_the_token_boundaries(n_cuts):
    for pieces in splits(TEXT, n_cuts):
        text, stopped = run(pieces, ["\nUser:"])
        assert (text, stopped) == ("Hello there.", True), pieces


def test_no_part_of_a_stop_string_is_ever_released():
    m = StopMatcher(["\nUser:"])
    released = ""
    for ch in TEXT:
        released += m.feed(ch)
        assert "\nUs" not in released and not released.endswith("\n")
        if m.stopped:
            break
    assert released == "Hello there."


def test_a_false_start_is_released_later():
    text, stopped = run(["a\nUs", "ually fine"], ["\nUser:"])
    assert (text, stopped) == ("a\nUsually fine", False)


def test_held_text_is_flushed_at_the_end():
    text, stopped = run(["ends with \nUse"], ["\nUser:"])
    assert (text, stopped) == ("ends with \nUse", False)


def test_earliest_of_several_stops_wins():
    text, _ = run(["one ### two END three"], ["END", "###"])
    assert text == "one "


def test_stop_at_the_very_start_gives_empty_text():
    assert run(["END and more"], ["END"]) == ("", True)


def test_no_stops_passes_everything_through():
    m = StopMatcher([])
    assert m.feed("abc") == "abc" and m.flush() == ""


def _held_back(text: str, stops: list[str]) -> int:
    """How much of `text`'s end could still begin a stop string: the longest proper
    prefix of any stop that the text ends with (the rule the matcher must follow)."""
    return max((k for s in stops for k in range(1, min(len(s) - 1, len(text)) + 1) if text.endswith(s[:k])),
               default=0)


def test_holds_back_the_longest_begun_stop_among_overlapping_ones():
    stops = ["<|im_end|>", "<|im_start|>", "<|endoftext|>", "abab"]
    text = "x<|im_<|endo aba <|i aba a<|im_e b abab tail"
    for pieces in splits(text, 2):
        m = StopMatcher(stops)
        sent = released = ""
        for p in pieces:
            sent += p
            released += m.feed(p)
            if m.stopped:
                break
            assert len(sent) - len(released) == _held_back(sent, stops), pieces
        released += m.flush()
        assert released == text[:text.find("abab")], pieces
