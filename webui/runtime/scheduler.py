"""The generation queue's order: fair across owners (users), first-come first-served
within one owner, with a limit on how many requests one owner may have waiting.

Round-robin by "least recently served": the next reply goes to the owner with queued
replies who was served longest ago (an owner never served comes first), so one user's
ten queued requests take turns with another's one instead of running ahead of it.

An owner may name an end user of an account: "ACCOUNT/END" (an app's API key serving
many people, each named in the request's OpenAI `user` field). Turns are then taken in
two steps: between accounts first, and within the account chosen, between its end users
(its own requests without an end user are one more of them), both least recently
served first. So an account gets no more turns by naming more end users, and the
per-owner limit counts the whole account's waiting replies.

A barrier (the quant advisor's exclusive task, the engine's close) keeps its place in
arrival order: everything queued before it is taken before it, everything queued
after it waits for it. Pure policy and locking: no model, no threads of its own.
"""
from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from webui.errors import ErrorKind, UserError

T = TypeVar("T")

LOCAL_OWNER = "local"  # every request's owner when there are no user accounts
# Owners whose last turn is remembered. Past this the longest-unserved are forgotten,
# which only moves them to the front, where least-recently-served puts them anyway.
_REMEMBERED_OWNERS = 4096


def account_of(owner: str) -> str:
    """The account part of "ACCOUNT/END" (user names hold no "/"); the owner itself otherwise."""
    return owner.partition("/")[0]


class QueueFull(UserError):
    """One owner already has the most requests waiting that one owner may queue."""
    kind = ErrorKind.BUSY


@dataclass
class _Group(Generic[T]):
    """Replies queued between two barriers, by owner in arrival order."""
    by_owner: dict[str, deque[T]] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(q) for q in self.by_owner.values())


@dataclass(frozen=True)
class _Barrier(Generic[T]):
    item: T


class FairQueue(Generic[T]):
    """Thread-safe. `put` queues a reply for an owner, `put_barrier` an item that
    waits for everything before it; `take` blocks for the next in fair order."""

    def __init__(self, per_owner_limit: int | None = None):
        self.per_owner_limit = per_owner_limit
        self._segments: deque[_Group[T] | _Barrier[T]] = deque()
        self._cond = threading.Condition()
        self._clock = itertools.count(1)
        self._served: dict[str, int] = {}  # owner -> tick of their latest turn
        self._served_accounts: dict[str, int] = {}  # account -> tick of its latest turn
        self._queued: dict[str, int] = {}  # account -> replies waiting, its end users' included

    def __len__(self) -> int:
        with self._cond:
            return sum(len(s) if isinstance(s, _Group) else 1 for s in self._segments)

    def queued_for(self, owner: str) -> int:
        """Replies waiting for the owner's account (all its end users together)."""
        with self._cond:
            return self._queued.get(account_of(owner), 0)

    def put(self, item: T, owner: str = LOCAL_OWNER) -> None:
        """Queue a reply; raises QueueFull (naming the limit) when `owner`'s account
        already has per_owner_limit replies waiting."""
        account = account_of(owner)
        with self._cond:
            waiting = self._queued.get(account, 0)
            limit = self.per_owner_limit
            if limit is not None and waiting >= limit:
                raise QueueFull(f"{waiting} of your requests are already waiting, the most one user may queue "
                                f"(--max-queue-per-user {limit}); try again when one has started")
            if not self._segments or not isinstance(self._segments[-1], _Group):
                self._segments.append(_Group())
            group = self._segments[-1]
            group.by_owner.setdefault(owner, deque()).append(item)
            self._queued[account] = waiting + 1
            self._cond.notify_all()

    def put_barrier(self, item: T) -> None:
        with self._cond:
            self._segments.append(_Barrier(item))
            self._cond.notify_all()

    def wake(self) -> None:
        """Make a waiting take() look at its `ready` condition again."""
        with self._cond:
            self._cond.notify_all()

    def take(self, ready: Callable[[T, bool], bool] = lambda item, barrier: True,
             give_up: Callable[[], bool] | None = None) -> tuple[T, bool] | None:
        """(item, is_barrier) of the next item in fair order, once `ready(item,
        is_barrier)` holds for it; None as soon as `give_up()` holds while the head is
        not ready. Both are checked under the queue's lock, again after each put()
        and wake()."""
        with self._cond:
            found: list[tuple[T, bool]] = []

            def settled() -> bool:
                head = self._peek()
                if head is not None and ready(*head):
                    found.append(head)
                    return True
                return give_up is not None and give_up()

            self._cond.wait_for(settled)
            if not found:
                return None
            self._pop()
            return found[-1]

    # --- under the lock ---------------------------------------------------------------
    def _peek(self) -> tuple[T, bool] | None:
        while self._segments:
            head = self._segments[0]
            if isinstance(head, _Barrier):
                return head.item, True
            if head.by_owner:
                return head.by_owner[self._next_owner(head)][0], False
            self._segments.popleft()
        return None

    def _next_owner(self, group: _Group[T]) -> str:
        # Least recently served account, then its least recently served owner; ties
        # (never served) in arrival order (dicts keep it, and min keeps the first).
        account = min((account_of(owner) for owner in group.by_owner),
                      key=lambda name: self._served_accounts.get(name, 0))
        return min((owner for owner in group.by_owner if account_of(owner) == account),
                   key=lambda owner: self._served.get(owner, 0))

    def _pop(self) -> None:
        head = self._segments[0]
        if isinstance(head, _Barrier):
            self._segments.popleft()
            return
        owner = self._next_owner(head)
        replies = head.by_owner[owner]
        replies.popleft()
        if not replies:
            del head.by_owner[owner]
        if not head.by_owner:
            self._segments.popleft()
        account = account_of(owner)
        left = self._queued[account] - 1
        if left:
            self._queued[account] = left
        else:
            del self._queued[account]
        tick = next(self._clock)
        for served, name in ((self._served, owner), (self._served_accounts, account)):
            served.pop(name, None)  # re-inserted last: the dict stays in turn order
            served[name] = tick
            while len(served) > _REMEMBERED_OWNERS:
                del served[next(iter(served))]
