"""`hearth download ORG/REPO [--include PATTERN] [--revision REV]`: the Download tab on
the command line, with a progress bar (speed and ETA) on stderr. Its flags are generated
from `DownloadSettings`, like `hearth`'s own from ServerSettings."""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass

from loaders.fields import SettingError, setting
from webui.app.flags import add_settings, build_from_args
from webui.modelfiles import fit
from webui.modelfiles.downloads import Progress, download, select_files
from webui.modelfiles.hub import HubError, RepoListing, list_repo


@dataclass(frozen=True)
class DownloadSettings:
    repo: str = setting("", "the repo id, e.g. HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", positional=True,
                        metavar="ORG/REPO")
    include: tuple[str, ...] = setting((), "only files matching this glob (repeatable), e.g. '*Q4_K_M*'",
                                       metavar="PATTERN")
    revision: str = setting("main", "branch, tag or commit", metavar="REV")
    token: str | None = setting(None, "Hugging Face token for gated or private repos (default: HF_TOKEN)")
    models_dir: str = setting("models", "where your models live", metavar="DIR")
    n_ctx: int = setting(4096, "context length for the memory estimates", minimum=1)
    list_only: bool = setting(False, "list the repo's files and estimates; download nothing", flag="--list")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hearth download",
        description="Download a model from the Hugging Face Hub into MODELS_DIR/ORG_REPO/, resumably; "
                    "every file is verified against the Hub's sha256.")
    add_settings(parser, DownloadSettings)
    return parser


def print_listing(listing: RepoListing, n_ctx: int, out=sys.stdout) -> None:
    machine = fit.detect_machine()
    print(f"{listing.repo_id} @ {listing.revision} ({listing.commit[:10]})"
          + (" · gated: needs a token" if listing.gated else ""), file=out)
    for g in listing.groups:
        quant = g.quantization or ""
        line = f"  [{g.kind}] {g.label}  {quant}  {fit.human_bytes(g.size)}"
        if g.shape is not None:
            est = fit.estimate(g.shape, n_ctx)
            line += f"  ≈{fit.human_bytes(est.total_bytes)} at {est.n_ctx} tokens: {fit.verdict(est, machine).text}"
        print(line, file=out)
        for f in g.files:
            print(f"      {f.path}  {fit.human_bytes(f.size)}", file=out)
    for name in listing.refused:
        print(f"  refused (would leave the models folder): {name!r}", file=out)


class ProgressBar:
    """One redrawn line on a terminal; a line every few seconds otherwise (logs, CI)."""

    def __init__(self, stream=sys.stderr, width: int = 24):
        self.stream, self.width = stream, width
        self.tty = stream.isatty()
        self._last = 0.0

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if not self.tty and p.phase != "done" and now - self._last < 2.0:
            return
        self._last = now
        filled = int(p.fraction * self.width)
        bar = "█" * filled + "░" * (self.width - filled)
        text = f"[{bar}] {p.line()}"
        if self.tty:
            cols = max(shutil.get_terminal_size((100, 24)).columns - 1, 40)
            self.stream.write("\r" + text[:cols].ljust(cols))
            if p.phase == "done":
                self.stream.write("\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def main(argv: list[str]) -> int:
    try:
        settings = build_from_args(DownloadSettings, build_parser().parse_args(argv))
    except SettingError as e:
        print(f"hearth download: {e}", file=sys.stderr)
        return 2
    include = list(settings.include) or None
    try:
        listing = list_repo(settings.repo, settings.revision, settings.token)
        print_listing(listing, settings.n_ctx)
        if settings.list_only:
            return 0
        ggufs = [g for g in listing.groups if g.kind == "gguf"]
        if not include and len(ggufs) > 1:
            total = fit.human_bytes(sum(g.size for g in ggufs))
            example = next((g.quantization for g in ggufs if g.quantization), "Q4_K_M")
            print(f"hearth download: {listing.repo_id} holds {len(ggufs)} GGUF files ({total} in all); "
                  f"choose with --include, e.g. --include '*{example}*' (or --include '*' for every file)",
                  file=sys.stderr)
            return 2
        files = select_files(listing, None, include)
        print(f"downloading {len(files)} file(s), {fit.human_bytes(sum(f.size for f in files))}", file=sys.stderr)
        result = download(listing.repo_id, models_dir=settings.models_dir, include=include, token=settings.token,
                          listing=listing, on_progress=ProgressBar())
    except HubError as e:
        print(f"hearth download: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nhearth download: stopped; run the same command again to resume", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"hearth download: could not write the download: {e}", file=sys.stderr)
        return 1
    if result.already_there:
        print(f"{len(result.already_there)} file(s) were already downloaded and verified", file=sys.stderr)
    print(f"verified {len(result.paths)} file(s) in {result.folder}")
    for path in result.paths:
        if path.suffix == ".gguf":
            rel = path.relative_to(result.folder.parent).as_posix()
            elsewhere = f" --models-dir {settings.models_dir}" if settings.models_dir != "models" else ""
            print(f"  hearth --model {rel}{elsewhere}")
    return 0
