"""`hearth advise FILE... [--reference FILE]`: the quant advisor on the command line.
Measures each GGUF file (perplexity on the built-in text, KL divergence against the
reference, pp512/tg128 speed, memory) and prints one Markdown table; progress goes to
stderr. Ctrl-C stops and still prints the rows measured so far."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from loaders.fields import SettingError, setting
from webui.app.flags import add_settings, build_from_args
from webui.errors import UserError
from webui.modelfiles.advisor import AdvisorRun, AdvisorSettings, Progress, prepare
from webui.modelfiles.local import model_entries
from webui.runtime.default_model import DEFAULT_MODEL_NAME, default_model_path


@dataclass(frozen=True)
class AdviseCommand:
    reference: str = setting("", "the file the others are compared with (KL divergence), usually the largest "
                                 "of the same model; measured first", metavar="FILE")
    models_dir: str = setting("models", "where your models live (FILE may be a label from there)", metavar="DIR")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hearth advise",
        description="Measure GGUF files of a model on this machine: perplexity on a built-in text, KL "
                    "divergence against a reference file, prompt and generation speed, memory; one table.")
    parser.add_argument("files", nargs="*", metavar="FILE",
                        help="a GGUF file: a path, a label from the models folder, or 'built-in'")
    add_settings(parser, AdviseCommand)
    add_settings(parser, AdvisorSettings, "measuring")
    return parser


def resolve(name: str, models_dir: Path) -> Path:
    """A name as the Model tab lists it (the built-in model, a label in the models
    folder) or a path."""
    builtin = default_model_path()
    if name in (DEFAULT_MODEL_NAME, "built-in") and builtin is not None:
        return builtin
    return dict(model_entries(models_dir)).get(name) or Path(name).expanduser()


def markdown_table(run: AdvisorRun) -> str:
    rows = [run.headers(), *run.cells()]
    lines = ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("---" for _ in rows[0]) + "|")
    return "\n".join(lines)


class ProgressLines:
    """A line on stderr each time the step changes (one redrawn line on a terminal)."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.tty = stream.isatty()

    def __call__(self, p: Progress) -> None:
        if p.step == "queued":
            return
        if self.tty:
            self.stream.write("\r\033[K" + p.line() + ("\n" if p.step in ("done", "stopped", "failed") else ""))
        else:
            self.stream.write(p.line() + "\n")
        self.stream.flush()


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        command = build_from_args(AdviseCommand, args)
        settings = build_from_args(AdvisorSettings, args)
    except SettingError as e:
        print(f"hearth advise: {e}", file=sys.stderr)
        return 2
    models_dir = Path(command.models_dir)
    if not args.files:
        names = [DEFAULT_MODEL_NAME] + [label for label, path in model_entries(models_dir)
                                        if path.suffix.lower() == ".gguf"]
        print(f"hearth advise: name one or more GGUF files: a path, or one of {', '.join(names)}", file=sys.stderr)
        return 2
    files = [(name, resolve(name, models_dir)) for name in args.files]
    reference = (command.reference, resolve(command.reference, models_dir)) if command.reference else None
    try:
        run = prepare(files, reference, settings, on_progress=ProgressLines())
    except UserError as e:
        print(f"hearth advise: {e.message}", file=sys.stderr)
        return 2
    try:
        run.execute()
    except KeyboardInterrupt:
        print("\nhearth advise: stopped; the rows measured so far:", file=sys.stderr)
        print(markdown_table(run))
        return 130
    print(markdown_table(run))
    if run.error:
        print(f"hearth advise: {run.error}", file=sys.stderr)
        return 1
    return 0
