"""`hearth chats import|export|list|search`: a user's chats on the command line, on the
same files and with the same checks as the Chat tab (webui/chat/transfer.py, search.py).

    hearth chats import FILE [--character NAME]     Hearth .json, text-generation-webui .json,
                                                    SillyTavern .jsonl: a new chat
    hearth chats export CHAT_ID [--format markdown] [--output FILE]
    hearth chats list [CHARACTER]
    hearth chats search WORDS...

Every command takes --user-data DIR (default: $HEARTH_USER_DATA, else user_data) and,
when Hearth has accounts, --user NAME: whose chats."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from loaders.fields import describe
from webui.accounts.users import UserBook
from webui.characters.store import CharacterStore
from webui.chat.histories import HistoryError, HistoryStore
from webui.chat.search import search_chats
from webui.chat.transfer import FORMATS, TransferError, export_text, import_file
from webui.config import ServerSettings, default_user_data
from webui.errors import ErrorKind, UserError
from webui.userdata.atomic import write_text_atomic
from webui.userdata.folders import SHIPPED_CHARACTERS, UserData


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hearth chats",
        description="Import, export, list and search your chats (the files the Chat tab keeps).")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--user-data", default=None, metavar="DIR",
                        help=f"{_user_data_help()} (default: $HEARTH_USER_DATA, else user_data)")
    common.add_argument("--user", default=None, metavar="NAME",
                        help="whose chats, when Hearth has accounts (hearth users list)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = commands.add_parser("import", parents=[common], help="import a chat file as a new chat")
    add.add_argument("file", metavar="FILE", help="Hearth .json, text-generation-webui .json or SillyTavern .jsonl")
    add.add_argument("--character", default=None, metavar="NAME",
                     help="whose chat it becomes (default: the character the file names, if it exists here, "
                          "else the first character)")
    out = commands.add_parser("export", parents=[common], help="write one chat as JSON or Markdown")
    out.add_argument("chat_id", metavar="CHAT_ID", help="as 'hearth chats list' shows it")
    out.add_argument("--format", choices=FORMATS, default="json", help="json: Hearth's own file (imports back); "
                     "markdown: to read")
    out.add_argument("--output", "-o", default=None, metavar="FILE", help="write here (default: stdout)")
    out.add_argument("--user-name", default="You", metavar="NAME", help="what Markdown calls you")
    listing = commands.add_parser("list", parents=[common], help="the chats, newest first")
    listing.add_argument("character", nargs="?", default=None, metavar="CHARACTER", help="only this character's")
    find = commands.add_parser("search", parents=[common], help="chats whose title or text hold every word")
    find.add_argument("words", nargs="+", metavar="WORD")
    return parser


def _user_data_help() -> str:
    """The server's own --user-data help (declared once, in ServerSettings)."""
    return next(s.help for s in describe(ServerSettings) if s.name == "user_data")


def user_folder(root: str | None, user: str | None) -> UserData:
    """The folder whose chats the command reads and writes: the data folder itself, or
    with accounts the named user's own (as the server's Hearth.space gives it)."""
    data = UserData.at(root or default_user_data())
    book = UserBook(data.users_file)
    if not book:
        if user:
            raise UserError("Hearth has no accounts here: leave out --user", kind=ErrorKind.INVALID)
        return data
    if not user:
        raise UserError(f"Hearth has accounts: say whose chats with --user NAME ({', '.join(book.names())})",
                        kind=ErrorKind.INVALID)
    if book.get(user) is None:
        raise UserError(f"no user {user[:40]!r}: one of {', '.join(book.names())}", kind=ErrorKind.NOT_FOUND)
    return data.for_user(user)


def find_chat(data: UserData, chat_id: str) -> tuple[str, str]:
    """(character, chat id) of a chat id in any character's folder."""
    matches = sorted(data.histories.glob(f"*/{chat_id}.json")) if "/" not in chat_id else []
    if not matches:
        raise HistoryError(f"no chat {chat_id[:40]}: 'hearth chats list' shows the ids")
    return matches[0].parent.name, chat_id


def main(argv: list[str] | None = None, out=None) -> int:
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    try:
        data = user_folder(args.user_data, args.user)
        store = HistoryStore(data.histories)
        if args.command == "import":
            names = CharacterStore(SHIPPED_CHARACTERS, data.characters).names()
            saved, imported = import_file(store, Path(args.file), names, args.character)
            left = f"; {imported.left_out} hidden messages left out" if imported.left_out else ""
            print(f"imported {saved.id} ({imported.format}, {len(saved.messages)} messages{left}): "
                  f"“{saved.title}”, a chat with {saved.character}", file=out)
        elif args.command == "export":
            character, chat_id = find_chat(data, args.chat_id)
            text = export_text(store.load(character, chat_id), args.format, args.user_name)
            if args.output:
                write_text_atomic(args.output, text)
                print(f"wrote {args.output}", file=sys.stderr)
            else:
                out.write(text if text.endswith("\n") else text + "\n")
        elif args.command == "list":
            characters = [args.character] if args.character else sorted(
                p.name for p in data.histories.glob("*") if p.is_dir())
            for character in characters:
                for chat in store.list(character):
                    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(chat.updated))
                    print(f"{chat.id}\t{character}\t{when}\t{chat.messages} messages\t{chat.title}", file=out)
        elif args.command == "search":
            for hit in search_chats(data, " ".join(args.words)):
                print(f"{hit.chat_id}\t{hit.character}\t{hit.title}\t{hit.snippet}", file=out)
    except (UserError, TransferError) as e:
        print(f"hearth chats: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"hearth chats: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    return 0
