"""`hearth users add|remove|passwd|role|list|key`: the accounts in `<user data>/users.json`.

Passwords are asked twice on a terminal (never an argument: it would sit in the shell's
history and in `ps`); from a pipe, the first line of stdin is the password. An API key
is shown once, when it is made; only its hash is kept."""
from __future__ import annotations

import argparse
import getpass
import sys

from webui.accounts.users import ADMIN, ROLES, USER, AccountError, UserBook
from webui.config import default_user_data
from webui.errors import UserError
from webui.userdata.folders import UserData


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hearth users",
        description="Who may log in to Hearth. With users here, each has their own chats, characters, presets, "
                    "settings and documents in USER_DATA/users/NAME/; the first user is an admin and gets the "
                    "data Hearth had before.")
    parser.add_argument("--user-data", default=None, metavar="DIR",
                        help="the user data folder (default: $HEARTH_USER_DATA, else user_data)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = commands.add_parser("add", help="add a user (asks for the password)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_const", const=ADMIN, dest="role", default=USER,
                     help="may load models, download and delete model files, switch extensions")
    commands.add_parser("remove", help="remove a user (their data folder is kept)").add_argument("name")
    commands.add_parser("passwd", help="set a user's password").add_argument("name")
    role = commands.add_parser("role", help="make a user an admin or a plain user")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)
    commands.add_parser("list", help="the users and their roles")
    commands.add_parser("key", help="make a new API key for a user (the old one stops working)").add_argument("name")
    return parser


def read_password(stdin=None) -> str:
    stdin = stdin or sys.stdin
    if not stdin.isatty():
        return stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise AccountError("the two passwords differ: nothing changed")
    return first


def main(argv: list[str] | None = None, stdin=None, out=None) -> int:
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    data = UserData.at(args.user_data or default_user_data())
    book = UserBook(data.users_file)
    try:
        if args.command == "add":
            user = book.add(args.name, read_password(stdin), args.role)
            print(f"added {user.name} ({user.role})", file=out)
        elif args.command == "remove":
            book.remove(args.name)
            print(f"removed {args.name}; their files stay in {data.for_user(args.name).root}", file=out)
        elif args.command == "passwd":
            book.set_password(args.name, read_password(stdin))
            print(f"changed {args.name}'s password", file=out)
        elif args.command == "role":
            book.set_role(args.name, args.role)
            print(f"{args.name} is now {'an admin' if args.role == ADMIN else 'a user'}", file=out)
        elif args.command == "list":
            for user in book.users():
                print(f"{user.name}\t{user.role}\t{'API key' if user.key_hash else 'no API key'}", file=out)
        elif args.command == "key":
            key = book.new_key(args.name)
            print(f"{args.name}'s new API key (shown only now; send it as 'Authorization: Bearer KEY'):", file=out)
            print(key, file=out)
    except UserError as e:
        print(f"hearth users: {e}", file=sys.stderr)
        return 1
    return 0
