"""`hearth`: the command line. Gradio, FastAPI and the model libraries are imported
only after the arguments parse, so `hearth --help` answers at once."""
from __future__ import annotations

import logging
import sys

from loaders.fields import SettingError
from webui.app import advise_cli, chats_cli, download_cli, server, users_cli
from webui.app.flags import apply_chat_flags, build_parser, check_network_safety, settings_from_args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["download"]:
        return download_cli.main(argv[1:])
    if argv[:1] == ["advise"]:
        return advise_cli.main(argv[1:])
    if argv[:1] == ["chats"]:
        return chats_cli.main(argv[1:])
    if argv[:1] == ["users"]:
        return users_cli.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except SettingError as e:
        problem = str(e)
    else:
        problem = check_network_safety(settings)
    if problem:
        print(f"hearth: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    apply_chat_flags(args, server.chat_settings_folder(settings))
    return server.serve(settings, args)
