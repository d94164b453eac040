"""The generation queue's policy (webui/runtime/scheduler.py) with plain items: turns
between owners, first-come first-served within one, barriers in arrival order, the
per-owner limit."""
from __future__ import annotations

import threading

import pytest

from webui.errors import ErrorKind
from webui.runtime.scheduler import FairQueue, QueueFull


def drain(q: FairQueue) -> list:
    out = []
    while len(q):
        item, _ = q.take()
        out.append(item)
    return out


def test_owners_take_turns_and_each_owner_keeps_its_order():
    q = FairQueue()
    for i in range(4):
        q.put(f"a{i}", "alice")
    q.put("b0", "bob")
    q.put("b1", "bob")
    q.put("c0", "carol")
    assert drain(q) == ["a0", "b0", "c0", "a1", "b1", "a2", "a3"]


def test_one_owner_alone_is_first_come_first_served():
    q = FairQueue()
    for i in range(5):
        q.put(i)
    assert drain(q) == [0, 1, 2, 3, 4]


def test_an_owner_just_served_waits_behind_one_who_arrives_later():
    q = FairQueue()
    q.put("a0", "alice")
    q.put("a1", "alice")
    assert q.take() == ("a0", False)  # alice's first is running
    q.put("b0", "bob")  # bob arrives while alice still has one waiting
    assert drain(q) == ["b0", "a1"]


def test_a_barrier_waits_for_what_came_before_and_holds_back_what_came_after():
    q = FairQueue()
    q.put("a0", "alice")
    q.put("a1", "alice")
    q.put_barrier("task")
    q.put("b0", "bob")  # after the barrier: does not jump ahead of it, nor of alice's
    q.put("a2", "alice")
    taken = [q.take() for _ in range(5)]
    assert taken == [("a0", False), ("a1", False), ("task", True), ("b0", False), ("a2", False)]


def test_the_per_owner_limit_counts_waiting_replies_only_and_names_itself():
    q = FairQueue(per_owner_limit=2)
    q.put("a0", "alice")
    q.put("a1", "alice")
    with pytest.raises(QueueFull) as refused:
        q.put("a2", "alice")
    assert refused.value.kind is ErrorKind.BUSY
    assert "--max-queue-per-user 2" in str(refused.value) and "\n" not in str(refused.value)
    q.put("b0", "bob")  # another owner is not affected
    assert q.queued_for("alice") == 2 and len(q) == 3
    q.take()  # alice's first starts: one of hers waits now
    q.put("a2", "alice")
    assert q.queued_for("alice") == 2


def test_take_waits_until_the_head_is_ready_or_gives_up():
    q = FairQueue()
    assert q.take(give_up=lambda: True) is None  # nothing queued
    q.put("a0")
    slots = {"free": False}
    assert q.take(ready=lambda item, barrier: slots["free"], give_up=lambda: True) is None
    assert len(q) == 1  # left in place

    def free_a_slot():
        slots["free"] = True
        q.wake()

    timer = threading.Timer(0.05, free_a_slot)
    timer.start()
    assert q.take(ready=lambda item, barrier: slots["free"]) == ("a0", False)
    timer.join()


def test_end_users_of_one_account_take_turns_within_that_accounts_turns():
    """An app's key (account "app") names its end users ("app/ann", "app/ben"): they take
    turns with each other, and the account as a whole takes turns with bob."""
    q = FairQueue()
    for i in range(3):
        q.put(f"ann{i}", "app/ann")
    q.put("ben0", "app/ben")
    q.put("app0", "app")  # the key's own request, naming nobody
    q.put("bob0", "bob")
    q.put("bob1", "bob")
    assert drain(q) == ["ann0", "bob0", "ben0", "bob1", "app0", "ann1", "ann2"]


def test_naming_end_users_does_not_get_past_the_accounts_limit():
    q = FairQueue(per_owner_limit=2)
    q.put("a", "app/ann")
    q.put("b", "app/ben")
    with pytest.raises(QueueFull, match="--max-queue-per-user 2"):
        q.put("c", "app/cid")
    assert q.queued_for("app") == 2 and q.queued_for("app/ann") == 2
    q.put("bob0", "bob")
