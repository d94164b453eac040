"""Planning a context shift from token ids alone: which cached run a prompt reuses."""
from loaders.kv_reuse import MAX_CANDIDATES, Shift, common_prefix, plan_shift

SYSTEM = list(range(1000, 1040))  # P: the fixed part (system prompt, character)
OLD = list(range(2000, 2100))  # D: the oldest turns, dropped from the prompt
KEPT = list(range(3000, 3200))  # S: the turns that stay
NEW = list(range(4000, 4020))  # the new turn, never cached


def test_dropped_turns_are_found_between_the_prefix_and_the_kept_run():
    shift = plan_shift(SYSTEM + OLD + KEPT, SYSTEM + KEPT + NEW)
    assert shift == Shift(prefix=len(SYSTEM), dropped=len(OLD), run=len(KEPT))
    assert shift.reused == len(SYSTEM) + len(KEPT)


def test_the_run_ends_where_the_cache_and_the_prompt_part():
    reply = list(range(5000, 5050))  # what the model generated; the prompt holds it re-tokenized
    retokenized = reply[:30] + [9999] + reply[31:]
    shift = plan_shift(SYSTEM + OLD + KEPT + reply, SYSTEM + KEPT + retokenized + NEW)
    assert shift == Shift(len(SYSTEM), len(OLD), len(KEPT) + 30)


def test_a_run_to_the_end_of_the_cache_is_the_whole_cache_after_the_gap():
    shift = plan_shift(SYSTEM + OLD + KEPT, SYSTEM + KEPT)
    assert shift == Shift(len(SYSTEM), len(OLD), len(KEPT))


def test_no_match_means_no_shift():
    assert plan_shift(SYSTEM + OLD + KEPT, SYSTEM + NEW * 5) is None


def test_a_match_shorter_than_the_minimum_is_not_worth_a_shift():
    short = KEPT[:31]
    assert plan_shift(SYSTEM + OLD + short + OLD, SYSTEM + short + NEW * 3, min_run=32) is None
    assert plan_shift(SYSTEM + OLD + short + OLD, SYSTEM + short + NEW * 3, min_run=31) == Shift(len(SYSTEM), len(OLD), 31)


def test_a_prompt_the_prefix_already_covers_needs_no_shift():
    assert plan_shift(SYSTEM + KEPT, SYSTEM + KEPT) is None  # the whole cache is the prefix
    assert plan_shift(SYSTEM + KEPT + NEW, SYSTEM + KEPT) is None  # the prompt ends inside the cache
    assert plan_shift(SYSTEM + KEPT, SYSTEM + KEPT + NEW) is None  # the prompt only grows: plain reuse
    assert plan_shift([], SYSTEM + KEPT) is None


def test_without_a_common_prefix_a_run_is_still_reused_from_the_start():
    assert plan_shift(SYSTEM + OLD + KEPT, KEPT + NEW) == Shift(0, len(SYSTEM) + len(OLD), len(KEPT))


def test_the_run_must_start_right_after_the_prefix():
    # Tokens between the prefix and the run would have to go into the gap, before
    # cells already there; not planned (the chat core's drops never need it).
    assert plan_shift(SYSTEM + OLD + KEPT, SYSTEM + NEW + KEPT) is None


def test_the_longest_run_wins_and_of_equal_runs_the_nearest():
    decoy = KEPT[:40] + [7]  # an earlier, shorter copy of the kept turns' start
    assert plan_shift(SYSTEM + OLD + decoy + OLD + KEPT, SYSTEM + KEPT + NEW) == \
        Shift(len(SYSTEM), 2 * len(OLD) + len(decoy), len(KEPT))
    twice = SYSTEM + OLD + KEPT[:50] + OLD + KEPT[:50]
    assert plan_shift(twice, SYSTEM + KEPT[:50] + NEW) == Shift(len(SYSTEM), len(OLD), 50)


def test_a_cache_of_one_repeated_token_stays_cheap():
    # 40,000 places where the rest could start, each matching 20,000 tokens: compared
    # in full that is 8e8 comparisons; only MAX_CANDIDATES of them are.
    cached = [1, 2] + [5] * 40_000
    shift = plan_shift(cached, [1] + [5] * 20_000 + [6])
    assert shift == Shift(1, 1, 20_000) and MAX_CANDIDATES < 1000


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([9], [1]) == 0
