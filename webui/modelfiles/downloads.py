"""Downloads from the Hugging Face Hub into models/ORG_REPO/: resumable, verified, and
never a half file under the final name.

Each file streams into models/ORG_REPO/.partial/NAME.<checksum>.part (through
huggingface_hub's session, auth headers and errors), resuming with an HTTP range from
whatever is already there; then its sha256 (LFS files) or git blob id (small files) is
checked against the Hub's metadata, and only then is it renamed to its final name. We
stream ourselves rather than call `hf_hub_download` because that one deletes its
partial file when interrupted, so a stopped or broken download would start over.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from webui.errors import ErrorKind
from webui.modelfiles.fit import human_bytes
from webui.modelfiles.hub import (
    PARTIAL_DIR,
    RECORD_FILE,
    HubError,
    RemoteFile,
    RepoListing,
    check_filename,
    hub_endpoint,
    hub_errors,
    list_repo,
    local_dir_for,
    resolve_token,
    target_path,
)

log = logging.getLogger(__name__)

MAX_STALLED_RETRIES = 5       # consecutive attempts that brought no new byte
RETRY_WAIT = 0.5              # seconds before the first of those retries; doubles each time
PROGRESS_INTERVAL = 0.1       # seconds between progress reports
HASH_CHUNK = 8 << 20


class DownloadCancelled(HubError):
    pass


class ChecksumMismatch(HubError):
    pass


class FolderTaken(HubError):
    """models/ORG_REPO is not one-to-one (a_b/c and a/b_c both map to a_b_c): the
    folder's record names the repo it holds, and another repo is refused."""

    kind = ErrorKind.CONFLICT


@dataclass(frozen=True)
class Progress:
    file: str
    file_index: int            # 1-based
    file_count: int
    done_bytes: int            # over all files of this download
    total_bytes: int
    speed: float = 0.0         # bytes per second, smoothed
    phase: str = "downloading"  # downloading | verifying | done

    @property
    def fraction(self) -> float:
        return min(self.done_bytes / self.total_bytes, 1.0) if self.total_bytes else 1.0

    @property
    def eta_seconds(self) -> float | None:
        if self.phase == "done":
            return 0.0
        return (self.total_bytes - self.done_bytes) / self.speed if self.speed > 0 else None

    def line(self) -> str:
        eta = self.eta_seconds
        eta_text = "?" if eta is None else f"{int(eta) // 60}:{int(eta) % 60:02d}"
        where = f"file {self.file_index}/{self.file_count}" if self.file_count > 1 else ""
        return " · ".join(p for p in (
            f"{self.fraction:.0%}", f"{human_bytes(self.done_bytes)} of {human_bytes(self.total_bytes)}",
            f"{human_bytes(self.speed)}/s", f"ETA {eta_text}", self.phase, where, self.file) if p)


class _Meter:
    """Turns byte counts into rate-limited Progress reports with a smoothed speed."""

    def __init__(self, total: int, count: int, report: Callable[[Progress], None] | None):
        self.total, self.count, self.report = total, count, report
        self.done = 0
        self.speed = 0.0
        self._last_t = time.monotonic()
        self._last_done = 0
        self._last_report = 0.0
        self.current = Progress("", 0, count, 0, total)

    def start(self, index: int, name: str, phase: str = "downloading") -> None:
        self.current = Progress(name, index, self.count, self.done, self.total, self.speed, phase)
        self._emit(force=True)

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last_t >= 0.5:
            rate = (self.done - self._last_done) / (now - self._last_t)
            self.speed = rate if self.speed == 0 else 0.7 * self.speed + 0.3 * rate
            self._last_t, self._last_done = now, self.done
        self.current = replace(self.current, done_bytes=self.done, speed=self.speed)
        self._emit()

    def skip_to(self, done: int) -> None:
        """Bytes already on disk (a resumed part) count as done but not towards speed."""
        self.done = self._last_done = done
        self.current = replace(self.current, done_bytes=done)

    def finish(self) -> None:
        self.current = replace(self.current, done_bytes=self.total, phase="done")
        self._emit(force=True)

    def _emit(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.report and (force or now - self._last_report >= PROGRESS_INTERVAL):
            self._last_report = now
            self.report(self.current)


@dataclass
class DownloadResult:
    repo_id: str
    folder: Path
    paths: list[Path] = field(default_factory=list)
    already_there: list[str] = field(default_factory=list)


def select_files(listing: RepoListing, names: list[str] | None, include: list[str] | None) -> list[RemoteFile]:
    """The named files, or those matching any --include pattern, or all of them."""
    if names:
        by_path = {f.path: f for f in listing.files}
        chosen = []
        for name in names:
            check_filename(name)
            if name not in by_path:
                raise HubError(f"{listing.repo_id} has no file {name!r}")
            chosen.append(by_path[name])
        return chosen
    if include:
        chosen = [f for f in listing.files if any(fnmatch.fnmatch(f.path, p) for p in include)]
        if not chosen:
            raise HubError(f"no file of {listing.repo_id} matches {', '.join(include)}")
        return chosen
    return list(listing.files)


def download(repo_id: str, *, models_dir: str | Path, names: list[str] | None = None,
             include: list[str] | None = None, revision: str | None = None,
             token: str | None = None, on_progress: Callable[[Progress], None] | None = None,
             cancel: threading.Event | None = None, listing: RepoListing | None = None) -> DownloadResult:
    token = resolve_token(token)
    if listing is None:
        listing = list_repo(repo_id, revision, token, read_headers=False)
    files = select_files(listing, names, include)
    folder = local_dir_for(Path(models_dir), listing.repo_id)
    record = read_record(folder)
    _refuse_another_repo(folder, record, listing.repo_id)
    todo = [f for f in files if not _already_verified(folder, f, record)]
    result = DownloadResult(listing.repo_id, folder,
                            already_there=[f.path for f in files if f not in todo])
    _check_disk_space(folder, todo)
    if todo:
        record = claim_folder(folder, listing.repo_id)
    meter = _Meter(sum(f.size for f in todo), len(todo), on_progress)
    cancel = cancel or threading.Event()
    for i, f in enumerate(todo, 1):
        meter.start(i, f.path)
        result.paths.append(download_file(listing, f, folder, token, meter, cancel))
        record["files"][f.path] = {"size": f.size, "sha256": f.sha256, "blob_id": f.blob_id}
        record.update(repo_id=listing.repo_id, revision=listing.revision, commit=listing.commit)
        write_record(folder, record)
    meter.finish()
    result.paths += [target_path(folder, p) for p in result.already_there]
    return result


def download_file(listing: RepoListing, f: RemoteFile, folder: Path, token: str | None,
                  meter: _Meter, cancel: threading.Event) -> Path:
    final = target_path(folder, f.path)
    tag = (f.sha256 or f.blob_id or "nochecksum")[:16]
    part = target_path(folder / PARTIAL_DIR, f"{f.path}.{tag}.part")
    part.parent.mkdir(parents=True, exist_ok=True)
    for stale in part.parent.glob(f"{glob_escape(final.name)}.*.part"):
        if stale != part:  # a part of an older revision of this file
            stale.unlink(missing_ok=True)
    base = meter.done
    _stream_into(listing, f, part, token, meter, cancel, base)
    meter.start(meter.current.file_index, f.path, "verifying")
    _verify(part, f, listing.repo_id)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, final)
    _prune_empty(part.parent, folder / PARTIAL_DIR)
    return final


def glob_escape(name: str) -> str:
    import glob

    return glob.escape(name)


def _stream_into(listing: RepoListing, f: RemoteFile, part: Path, token: str | None,
                 meter: _Meter, cancel: threading.Event, base: int) -> None:
    import httpx2
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = hf_hub_url(listing.repo_id, f.path, revision=listing.commit, endpoint=hub_endpoint())
    stalled = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if have > f.size:
            part.unlink()
            have = 0
        meter.skip_to(base + have)
        if have == f.size:
            return
        headers = build_hf_headers(token=token or False)
        headers["Accept-Encoding"] = "identity"  # byte offsets must be offsets in the file
        if have:
            headers["Range"] = f"bytes={have}-"
        got = 0
        try:
            # httpx drops Authorization when a redirect leaves the Hub's host (the CDN).
            with get_session().stream("GET", url, headers=headers, follow_redirects=True,
                                      timeout=httpx2.Timeout(30.0, connect=10.0)) as r:
                if r.status_code == 416:  # nothing left past `have`: the part is whole
                    return
                with hub_errors(listing.repo_id, listing.revision, token):
                    hf_raise_for_status(r)
                resumed = r.status_code == 206
                if have and not resumed:
                    log.info("%s: the server ignored the range; starting over", f.path)
                    meter.skip_to(base)
                with open(part, "ab" if resumed else "wb") as out:
                    for chunk in r.iter_bytes():
                        if cancel.is_set():
                            raise DownloadCancelled(f"stopped; {f.path} will resume from "
                                                    f"{out.tell():,} bytes next time")
                        out.write(chunk)
                        got += len(chunk)
                        meter.add(len(chunk))
            if part.stat().st_size >= f.size:
                return
            raise httpx2.RemoteProtocolError("the server closed the connection early")
        except httpx2.TransportError as e:  # dropped mid-file, a timeout, no route
            stalled = 0 if got else stalled + 1
            if stalled > MAX_STALLED_RETRIES:
                done = part.stat().st_size if part.exists() else 0
                raise HubError(f"the download of {f.path} broke off at {done:,} of {f.size:,} bytes "
                               f"({e or type(e).__name__}); run it again to resume") from None
            log.warning("%s: %s; resuming", f.path, e or type(e).__name__)
            time.sleep(0 if got else min(RETRY_WAIT * 2 ** (stalled - 1), 8))


def _verify(part: Path, f: RemoteFile, repo_id: str) -> None:
    size = part.stat().st_size
    if size != f.size:
        part.unlink(missing_ok=True)
        raise ChecksumMismatch(f"{f.path} has {size:,} bytes, the Hub says {f.size:,}; "
                               "the file was deleted, try again")
    if f.sha256:
        h, want, what = hashlib.sha256(), f.sha256, "sha256"
    elif f.blob_id:
        h, want, what = hashlib.sha1(b"blob %d\0" % size), f.blob_id, "git blob id"
    else:
        log.warning("%s/%s: the Hub gave no checksum; only its size was checked", repo_id, f.path)
        return
    with open(part, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
    if h.hexdigest() != want.lower():
        part.unlink(missing_ok=True)
        raise ChecksumMismatch(f"{f.path} is corrupt: its {what} is {h.hexdigest()[:16]}…, the Hub "
                               f"says {want[:16]}…; the file was deleted, download it again")


def _already_verified(folder: Path, f: RemoteFile, record: dict) -> bool:
    entry = record["files"].get(f.path)
    try:
        final = target_path(folder, f.path)
    except HubError:
        return False
    return (entry is not None and final.is_file() and final.stat().st_size == f.size
            and entry.get("sha256") == f.sha256 and entry.get("blob_id") == f.blob_id)


def _check_disk_space(folder: Path, files: list[RemoteFile]) -> None:
    need = sum(f.size for f in files)
    probe = folder if folder.exists() else folder.parent
    probe.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(probe).free
    if need > free:
        raise HubError(f"not enough disk space in {folder.parent}: the download needs "
                       f"{human_bytes(need)}, {human_bytes(free)} is free")


def _prune_empty(directory: Path, stop: Path) -> None:
    while directory != stop.parent and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent


# --- the record of verified files -----------------------------------------------------
MAX_RECORD_BYTES = 16 << 20  # ~150 bytes a file: room for 100k files


def read_record(folder: Path) -> dict:
    try:
        path = folder / RECORD_FILE
        if path.stat().st_size <= MAX_RECORD_BYTES:
            data = json.loads(path.read_text())
            if isinstance(data, dict) and isinstance(data.get("files"), dict):
                return data
    except (OSError, ValueError, RecursionError):  # RecursionError: a record nested 100k deep
        pass
    return {"files": {}}


_claims = threading.Lock()


def claim_folder(folder: Path, repo_id: str) -> dict:
    """The folder's record, naming repo_id before any file of it lands there; a folder
    whose record names another repo is refused."""
    with _claims:  # two downloads starting at once cannot both claim one folder
        record = read_record(folder)
        _refuse_another_repo(folder, record, repo_id)
        if record.get("repo_id") is None:
            record["repo_id"] = repo_id
            write_record(folder, record)
        return record


def _refuse_another_repo(folder: Path, record: dict, repo_id: str) -> None:
    # The Hub answers for a repo id in any case, so case alone is not another repo.
    held = record.get("repo_id")
    if held is not None and (not isinstance(held, str) or held.lower() != repo_id.lower()):
        raise FolderTaken(f"{folder.name} already holds {str(held)[:100]}, and {repo_id} would be downloaded "
                          "into the same folder: move or rename that folder first")


def write_record(folder: Path, record: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{RECORD_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    os.replace(tmp, folder / RECORD_FILE)


# --- a download in the background, for the UI -----------------------------------------
class DownloadJob:
    """Runs `download` in a thread so it goes on if the browser tab closes."""

    def __init__(self, repo_id: str, **kwargs):
        self.repo_id = repo_id
        self.progress: Progress | None = None
        self.result: DownloadResult | None = None
        self.error: str | None = None
        self._cancel = threading.Event()
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(kwargs,), daemon=True,
                                        name=f"download {repo_id}")
        self._thread.start()

    def _run(self, kwargs: dict) -> None:
        try:
            self.result = download(self.repo_id, on_progress=self._set, cancel=self._cancel, **kwargs)
        except HubError as e:
            self.error = str(e)
        except OSError as e:  # a full disk, a permission: still one line
            self.error = f"could not write the download: {e}"
        except Exception as e:  # keep the app serving whatever happens
            log.exception("download of %s failed", self.repo_id)
            self.error = f"the download failed: {type(e).__name__}: {e}"
        finally:
            self.finished.set()

    def _set(self, p: Progress) -> None:
        self.progress = p

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def running(self) -> bool:
        return not self.finished.is_set()
