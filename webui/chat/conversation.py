"""One person's chat: its history (saved after every message), its character, and
its running reply. The Chat tab keeps one per browser session, so two people chatting
at once never see each other's messages and each Stop stops only its own reply.

Core, not UI: every chat action (send, regenerate, continue, remove last, edit, new
chat, open, rename, delete) is a method here, and the tab only shows the result.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from loaders.params import GenerationParams
from webui.characters.character import Character, CharacterError
from webui.characters.lorebooks import LorebookStore
from webui.characters.store import CharacterStore
from webui.chat import provenance, versions
from webui.chat.attachments import Attachment, AttachmentLimits, check_message, prompt_messages
from webui.chat.authors_note import AuthorsNote
from webui.chat.branches import branch
from webui.chat.budget import keep_budget
from webui.chat.budget_shares import attachment_shares
from webui.chat.group import (
    Group,
    GroupError,
    carried_group,
    check_members,
    open_group,
    plan_turn,
    strip_own_name,
)
from webui.chat.histories import ChatHistory, ChatSummary, HistoryError, HistoryStore
from webui.chat.impersonate import impersonation
from webui.chat.lore import chat_lorebooks
from webui.chat.prompts import ChatRequest
from webui.chat.reasoning import DEFAULT_MARKERS, ReasoningFormat, split_reasoning
from webui.chat.template_fallback import strip_markers
from webui.chat.templates import MODEL_TEMPLATE, resolve_template
from webui.runtime.generation import GenerationJob
from webui.runtime.model_manager import ModelManager

log = logging.getLogger(__name__)

FALLBACK_CHARACTER = "Assistant"  # history folder when no character file exists at all


@dataclass(frozen=True)
class ChatOptions:
    """What the chat controls say at the moment of an action."""
    mode: str = "instruct"
    character: str = ""
    template: str = MODEL_TEMPLATE
    custom_template: str = ""
    user_name: str = "You"
    system_prompt: str = ""


@dataclass
class Reply:
    """A reply being generated; stale once a newer action replaced it."""
    job: GenerationJob
    base: str  # text already there (continue), the new text goes after it
    user_text: str | None  # the message that asked for it (send), to give back on refusal
    got_text: bool = False
    options: ChatOptions | None = None  # what the controls said, for the reply's record
    params: GenerationParams | None = None  # the samplers asked for, the seed picked
    replaced: dict | None = None  # the reply a regenerate replaces: a version of it once done


class ChatReplies(Protocol):
    """Starts a reply: the app's chat_turn, which runs the extensions' prompt hooks."""

    models: ModelManager  # the loaded model, which Reproduce checks against a reply's record

    def chat_turn(self, request: ChatRequest, params: GenerationParams) -> GenerationJob: ...


class TextHooks(Protocol):
    """The extensions' hooks on what the user typed and on the finished reply."""

    def modify_input(self, text: str) -> str: ...

    def modify_output(self, text: str, prompt: Any = None) -> str: ...


def reasoning_format(job: GenerationJob) -> ReasoningFormat:
    """Where a chat turn's thinking is: the markers of its template (chat/turns.py), and
    whether its rendered prompt opened them (DeepSeek-R1's does), once the worker built it."""
    fmt = getattr(job, "reasoning", None)
    if fmt is not None:
        return fmt
    open_, close = getattr(job, "reasoning_markers", DEFAULT_MARKERS)
    built = getattr(job.prompt, "built", None)
    return ReasoningFormat(open_, close, built is not None and built.text.rstrip().endswith(open_))


class Conversation:
    def __init__(self, characters: CharacterStore, histories: HistoryStore, replies: ChatReplies,
                 hooks: TextHooks, options: ChatOptions, lorebooks: LorebookStore | None = None):
        self.characters = characters
        self.lorebooks = lorebooks  # the user's standalone lorebooks a chat may choose
        self.histories = histories
        self.replies = replies
        self.hooks = hooks
        self._lock = threading.RLock()
        self.reply: Reply | None = None
        self.character: Character | None = None
        self.history: ChatHistory
        self.chosen_speaker = ""  # the group member the user picked to speak next; "": the group's rule
        self.new_chat(options)

    # --- which chat -----------------------------------------------------------------
    @property
    def messages(self) -> list[dict]:
        return self.history.messages

    def _load_character(self, name: str) -> Character | None:
        store = self.characters
        for candidate in (name, *store.names()):
            if candidate and store.exists(candidate):
                try:
                    return store.load(candidate)
                except CharacterError as e:
                    log.warning("%s", e)
        return None

    def _bucket(self) -> str:
        return self.character.name if self.character else FALLBACK_CHARACTER

    def new_chat(self, options: ChatOptions) -> None:
        """A fresh chat with the chosen character (its greeting first, in the chat modes)."""
        with self._lock:
            self.stop()
            previous = getattr(self, "history", None)  # None: the first chat of this conversation
            self.character = self._load_character(options.character)
            greeting = ""
            if options.mode != "instruct" and self.character is not None:
                greeting = self.character.fill(self.character.greeting, options.user_name).strip()
            self.history = self.histories.new(self._bucket(), options.mode, greeting)
            group = carried_group(previous.group if previous is not None else None, options.mode, self._bucket())
            if group is not None:  # New chat in a group chat: the same group
                open_group(self.history, group)

    def open(self, chat_id: str) -> bool:
        """Open a saved chat; False, and nothing done, when it is the one open already
        (a reply streaming in it goes on)."""
        with self._lock:
            if self.history.id == chat_id:
                return False
            self.stop()
            self.history = self.histories.load(self._bucket(), chat_id)
            return True

    def past_chats(self) -> list[ChatSummary]:
        return self.histories.list(self._bucket())

    def rename(self, title: str) -> None:
        with self._lock:
            self.histories.rename(self.history, title)

    def delete(self, options: ChatOptions) -> None:
        """Delete this chat's file and start a new chat."""
        with self._lock:
            if self.histories.exists(self.history):
                self.histories.delete(self.history.character, self.history.id)
            self.new_chat(options)

    def save(self) -> None:
        """Write the chat now (a face that changed the history itself: a reply with tools)."""
        with self._lock:
            self._save()

    def _save(self) -> None:
        # A chat is written once it has something from the user: opening a chat and
        # leaving leaves no file behind.
        if any(m["role"] == "user" for m in self.history.messages) or self.histories.exists(self.history):
            self.histories.save(self.history)

    # --- replies ----------------------------------------------------------------------
    def _request(self, options: ChatOptions, continue_last: bool = False) -> ChatRequest:
        template = resolve_template(options.template, options.custom_template)
        # Attached files reach the prompt inside their message, fenced (chat/attachments.py).
        group = self.history.group  # a group chat: who speaks next (chat/group.py)
        chosen = self.chosen_speaker if group is not None and self.chosen_speaker in group.members else ""
        turn = plan_turn(self.characters, group, self.history.messages, options.mode, chosen,
                         continue_last) if group is not None else None
        return ChatRequest(prompt_messages(self.history.messages), mode=options.mode,
                           character=turn.speaker if turn is not None else self.character,
                           user_name=options.user_name or "You", system_prompt=options.system_prompt,
                           template=template, continue_last=continue_last,
                           group=turn, authors_note=self.history.authors_note)

    def _start(self, options: ChatOptions, params: GenerationParams, continue_last: bool,
               user_text: str | None) -> Reply:
        request = self._request(options, continue_last)
        request.lorebooks = chat_lorebooks(request.character, self.history.lorebooks, self.lorebooks)
        request.shares = [*request.shares, *attachment_shares(self.history.messages)]  # for the budget view
        self.history.mode = options.mode
        # The request holds a snapshot: the reply placeholder below is not part of it.
        request.messages = [dict(m) for m in request.messages]
        params = provenance.with_seed(params)  # the seed is picked here, so the record has it
        job = self.replies.chat_turn(request, params)
        if continue_last:
            base = self.history.messages[-1]["content"].rstrip()
        else:
            base = ""
            speaker = {"name": request.group.speaker.name} if request.group is not None else {}
            self.history.messages.append({"role": "assistant", "content": "", **speaker})
        self.reply = Reply(job, base, user_text, options=options, params=params)
        return self.reply

    def send(self, text: str, options: ChatOptions, params: GenerationParams,
             attachments: Sequence[Attachment] = (), limits: AttachmentLimits | None = None) -> Reply:
        """Add the user's message (saved at once, with its attached files) and start the
        reply. Attachments past `limits` are refused in one line before anything changes."""
        with self._lock:
            if limits is not None:
                check_message(attachments, limits)
            self.stop()
            self._drop_empty_reply()
            text = self.hooks.modify_input(text)  # the extensions' modify_input hooks
            message: dict[str, Any] = {"role": "user", "content": text}
            if attachments:
                message["attachments"] = [a.to_dict() for a in attachments]
            self.history.messages.append(message)
            self._save()
            try:
                return self._start(options, params, False, text)
            except Exception:
                self.history.messages.pop()
                self._save()
                raise

    def regenerate(self, options: ChatOptions, params: GenerationParams) -> Reply:
        """Replace the last reply with a new one. The old one stays on disk until the
        new one is complete."""
        with self._lock:
            self.stop()
            self._drop_empty_reply()
            msgs = self.history.messages
            if not msgs or (msgs[-1]["role"] == "assistant" and len(msgs) == 1):
                raise HistoryError("nothing to regenerate")
            replaced = msgs.pop() if msgs[-1]["role"] == "assistant" else None
            try:
                reply = self._start(options, params, False, None)
            except Exception:
                if replaced is not None:
                    msgs.append(replaced)
                raise
            reply.replaced = replaced  # kept as a version (chat/versions.py)
            return reply

    def continue_reply(self, options: ChatOptions, params: GenerationParams) -> Reply:
        with self._lock:
            self.stop()
            self._drop_empty_reply()
            if not self.history.messages or self.history.messages[-1]["role"] != "assistant":
                raise HistoryError("there is no reply to continue")
            return self._start(options, params, True, None)

    def update(self, reply: Reply, text: str) -> bool:
        """Show the reply so far; False if this reply was replaced meanwhile."""
        with self._lock:
            if reply is not self.reply:
                return False
            if text:
                reply.got_text = True
            message = self.history.messages[-1]
            if reply.base:
                message["content"] = reply.base + text
                return True
            # A reasoning model's thinking is kept apart from the answer (the Chat tab shows
            # it folded above the reply; prompts.py never feeds it back into later turns).
            reasoning, answer = split_reasoning(text, reasoning_format(reply.job))
            message["content"] = strip_own_name(answer.lstrip(), message.get("name"))
            if reasoning:
                message["reasoning_content"] = reasoning
            else:
                message.pop("reasoning_content", None)
            return True

    def finish(self, reply: Reply, failed: bool) -> str | None:
        """Commit the reply and save. Returns the user's text when a send was refused
        before any reply text came (it goes back into the input box)."""
        with self._lock:
            if reply is not self.reply:
                return None
            self.reply = None
            msgs = self.history.messages
            if msgs and msgs[-1]["role"] == "assistant":
                keep_budget(msgs[-1], reply.job)  # how its context was spent, shown under it
                # The stop strings keep the template's markers out; a marker begun when
                # the token limit cut the reply is taken off here.
                built = getattr(reply.job.prompt, "built", None)
                msgs[-1]["content"] = strip_markers(msgs[-1]["content"], built.stop if built else ()).rstrip()
                if not msgs[-1]["content"] and not reply.base and not msgs[-1].get("reasoning_content"):
                    msgs.pop()
                else:
                    if not failed and msgs[-1]["content"]:
                        # Extensions' modify_output hooks, with what modify_prompt left for them.
                        msgs[-1]["content"] = self.hooks.modify_output(
                            msgs[-1]["content"], getattr(reply.job, "extension_prompt", None))
                    self._record(msgs[-1], reply)
            if reply.replaced is not None:
                versions.settle(msgs, reply.replaced)
            if failed and not reply.got_text and reply.user_text is not None \
                    and msgs and msgs[-1]["role"] == "user" and msgs[-1]["content"] == reply.user_text:
                msgs.pop()
                self._save()
                return reply.user_text
            self._save()
            return None

    def stop(self) -> None:
        if self.reply is not None:
            self.reply.job.stop()

    def _drop_empty_reply(self) -> None:
        msgs = self.history.messages
        if self.reply is not None and msgs and msgs[-1]["role"] == "assistant" and not msgs[-1]["content"]:
            msgs.pop()
        if self.reply is not None and self.reply.replaced is not None:
            versions.settle(msgs, self.reply.replaced)  # an abandoned regenerate loses no version
        self.reply = None

    def _record(self, message: dict, reply: Reply) -> None:
        """Save with the reply what made it (chat/provenance.py)."""
        o = reply.options
        if o is None:
            return
        record = provenance.build_record(
            getattr(reply.job, "ran_on", None), reply.params, mode=o.mode, template=o.template,
            custom_template=o.custom_template, character=self.character.name if self.character else "",
            user_name=o.user_name, system_prompt=o.system_prompt,
            extensions=getattr(reply.job, "extensions_on", ()))
        if record is None:
            return
        if reply.base:
            record["continued"] = True  # only the continuation's: Reproduce makes a whole new reply
        message["provenance"] = record

    # --- versions, branches, impersonate (chat/versions.py, branches.py, provenance.py) --
    def swipe(self, step: int) -> tuple[int, int]:
        """Show the last reply's previous (-1) or next (+1) version; (shown, how many)."""
        with self._lock:
            if self.reply is not None:
                raise versions.VersionError("a reply is being written: stop it first")
            shown = versions.swipe(self.history.messages, step)
            self._save()
            return shown

    def reproduce(self) -> Reply:
        """Regenerate the last reply with exactly its record (model, samplers, seed,
        template, mode); the result becomes a new version of it."""
        with self._lock:
            reply = versions.last_reply(self.history.messages)
            record = reply.get("provenance")
            provenance.check_reproducible(record, self.replies.models.current)
            return self.regenerate(ChatOptions(**provenance.record_chat(record)),
                                   provenance.record_params(record))

    def branch(self, index: int) -> None:
        """Continue in a new chat holding this one's messages up to `index`."""
        with self._lock:
            self.stop()
            self._drop_empty_reply()
            self.history = branch(self.histories, self.history, index)

    def impersonate(self, draft: str, options: ChatOptions, params: GenerationParams) -> GenerationJob:
        """The model writes the user's next message, going on from `draft`; nothing is
        added to the chat (the face puts the text in the input box)."""
        with self._lock:
            request = impersonation(self._request(options), draft)
            return self.replies.chat_turn(request, provenance.with_seed(params))

    # --- group chats, the author's note (chat/group.py, chat/authors_note.py) -------------
    def start_group(self, group: Group, options: ChatOptions) -> None:
        """A new group chat, kept with its first member's chats and opened by its greeting."""
        with self._lock:
            check_members(self.characters, group, options.mode)
            self.new_chat(dataclasses.replace(options, character=group.members[0]))
            open_group(self.history, group)
            self.chosen_speaker = ""

    def choose_speaker(self, name: str) -> None:
        """The group member who speaks next, until changed ("": the group's rule decides)."""
        with self._lock:
            group = self.history.group
            if name and (group is None or name not in group.members):
                raise GroupError(f"{name} is not in this chat's group")
            self.chosen_speaker = name or ""

    def set_authors_note(self, note: AuthorsNote | None) -> None:
        with self._lock:
            self.history.authors_note = note
            self._save()

    def choose_lorebooks(self, names: list[str]) -> None:
        """The standalone lorebooks this chat uses (saved with it)."""
        with self._lock:
            self.history.lorebooks = list(names)
            self._save()

    # --- editing --------------------------------------------------------------------
    def remove_last(self) -> str:
        """Remove the last exchange (the reply and the message it answered); return
        the user's text so it can be edited and sent again."""
        with self._lock:
            self.stop()
            self.reply = None
            msgs = self.history.messages
            first = 1 if msgs and msgs[0]["role"] == "assistant" else 0  # keep the greeting
            if len(msgs) <= first:
                raise HistoryError("nothing to remove")
            text = ""
            if msgs[-1]["role"] == "assistant":
                msgs.pop()
            if len(msgs) > first and msgs[-1]["role"] == "user":
                text = msgs.pop()["content"]
            self._save()
            return text

    def edit(self, index: int, text: str) -> None:
        with self._lock:
            msgs = self.history.messages
            if not 0 <= index < len(msgs):
                raise HistoryError(f"there is no message {index}")
            msgs[index]["content"] = text
            self._save()
