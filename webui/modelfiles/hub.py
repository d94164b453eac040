"""A Hugging Face repo as users think of it: every file with its size, grouped into GGUF
quantizations, safetensors weights, GPTQ/EXL2/AWQ folders and the rest, each model
group with what it needs to estimate its memory before download.

Everything goes through `huggingface_hub` (its endpoint, token, session and errors).
Repo ids, revisions and file names come from users and from the server: all are
untrusted, and nothing here lets one name a path outside the model's folder.
"""
from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from loaders.formats import CheckpointFormat, classify
from loaders.gguf import GGUFError, read_metadata_prefix
from webui.errors import ErrorKind, UserError
from webui.modelfiles.fit import ModelShape, shape_from_config, shape_from_gguf

DEFAULT_ENDPOINT = "https://huggingface.co"
# Enough for every GGUF writer's architecture keys and file type, which come before
# the tokenizer's arrays; see loaders.gguf.read_metadata_prefix.
GGUF_PREFIX_BYTES = 512 * 1024
CONFIG_MAX_BYTES = 1 << 20
PARTIAL_DIR = ".partial"       # inside models/ORG_REPO/: downloads in progress
RECORD_FILE = ".hearth-download.json"  # inside models/ORG_REPO/: what was verified


class HubError(UserError):
    """A problem the user can act on, in one line."""

    kind = ErrorKind.FAILED


class UnsafeName(HubError):
    """A repo id, revision or file name that could reach outside models/."""

    kind = ErrorKind.INVALID


def hub_endpoint() -> str:
    # Read at call time (huggingface_hub reads HF_ENDPOINT once, at import).
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def resolve_token(token: str | None) -> str | None:
    """The token field if filled, else HF_TOKEN, else `hf auth login`'s stored token."""
    token = (token or "").strip()
    if token:
        return token
    from huggingface_hub import get_token

    return get_token()


# --- untrusted names ------------------------------------------------------------------
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
_REPO_ID = re.compile(rf"^(?:{_NAME}/)?{_NAME}$")
_REVISION = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._/-]{0,199}$")
_RESERVED = {PARTIAL_DIR, RECORD_FILE, ".cache"}


def check_repo_id(repo_id: str) -> str:
    repo_id = (repo_id or "").strip()
    for prefix in (hub_endpoint() + "/", DEFAULT_ENDPOINT + "/"):
        if repo_id.startswith(prefix):  # a pasted URL
            repo_id = repo_id[len(prefix):].strip("/")
    if not repo_id:
        raise HubError("enter a repo id, like HuggingFaceTB/SmolLM2-135M-Instruct-GGUF")
    if not _REPO_ID.fullmatch(repo_id) or ".." in repo_id or "--" in repo_id or repo_id.endswith("."):
        raise UnsafeName(f"{repo_id[:100]!r} is not a repo id (ORG/NAME: letters, digits, '-', '_', '.')")
    return repo_id


def check_revision(revision: str | None) -> str:
    revision = (revision or "").strip() or "main"
    if not _REVISION.fullmatch(revision) or ".." in revision or "//" in revision or revision.endswith("/"):
        raise UnsafeName(f"{revision[:100]!r} is not a branch, tag or commit")
    return revision


def check_filename(name: str) -> str:
    """A path inside the repo that stays inside the folder it is downloaded to."""
    bad = (not name or len(name) > 1000 or "\\" in name or ":" in name
           or any(ord(c) < 32 for c in name) or name.startswith("/"))
    parts = name.split("/")
    if bad or any(p in ("", ".", "..") for p in parts) or parts[0] in _RESERVED:
        raise UnsafeName(f"refusing the file name {name[:200]!r}: it could land outside models/")
    return name


def local_dir_for(models_dir: Path, repo_id: str) -> Path:
    """models/ORG_REPO, and only that. Two repos can share a name (a_b/c and a/b_c): the
    download record names the one a folder holds, and downloads refuse any other."""
    repo_id = check_repo_id(repo_id)
    root = Path(models_dir).resolve()
    target = (root / repo_id.replace("/", "_")).resolve()
    if target.parent != root:
        raise UnsafeName(f"refusing {repo_id!r}: its folder would not be inside {root}")
    return target


def target_path(dest_dir: Path, name: str) -> Path:
    check_filename(name)
    dest = Path(dest_dir).resolve()
    target = (dest / name).resolve()
    if not target.is_relative_to(dest) or target == dest:
        raise UnsafeName(f"refusing the file name {name[:200]!r}: it resolves outside {dest}")
    return target


# --- errors ---------------------------------------------------------------------------
@contextlib.contextmanager
def hub_errors(repo_id: str, revision: str = "main", token: str | None = None) -> Iterator[None]:
    """Turn huggingface_hub's and the network's exceptions into one line."""
    import httpx2
    from huggingface_hub import errors

    endpoint = hub_endpoint()
    try:
        yield
    except HubError:
        raise
    except errors.GatedRepoError:
        if token:
            raise HubError(f"{repo_id} is gated and this token has no access: accept its terms at "
                           f"{endpoint}/{repo_id}, then try again") from None
        raise HubError(f"{repo_id} is gated: accept its terms at {endpoint}/{repo_id} and give a "
                       "token (the token field, or HF_TOKEN)") from None
    except errors.RepositoryNotFoundError:
        hint = "" if token else " (if it is private, give a token)"
        raise HubError(f"no repo {repo_id} on the Hub{hint}") from None
    except errors.RevisionNotFoundError:
        raise HubError(f"{repo_id} has no branch, tag or commit {revision!r}") from None
    except errors.RemoteEntryNotFoundError as e:
        raise HubError(f"{repo_id} has no such file ({_url_tail(e)})") from None
    except errors.OfflineModeIsEnabled:
        raise HubError("HF_HUB_OFFLINE is set: unset it to reach the Hugging Face Hub") from None
    except errors.HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else "?"
        if status == 401:
            raise HubError(f"the Hub refused the token for {repo_id} (401): check it") from None
        later = "; try again later" if isinstance(status, int) and status >= 500 else ""
        raise HubError(f"the Hub answered {status} for {repo_id}{later}") from None
    except (httpx2.TransportError, errors.LocalEntryNotFoundError) as e:
        raise HubError(f"cannot reach the Hugging Face Hub at {endpoint} ({_reason(e)}): "
                       "check your network") from None


def _reason(e: BaseException) -> str:
    while e.__cause__ is not None or e.__context__ is not None:
        e = e.__cause__ or e.__context__
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:120]


def _url_tail(e) -> str:
    url = str(getattr(e.response, "url", "")) if getattr(e, "response", None) is not None else ""
    return url.rsplit("/resolve/", 1)[-1][:200] or "unknown"


# --- listing --------------------------------------------------------------------------
@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None = None   # LFS files: the Hub's checksum of the content
    blob_id: str | None = None  # git blob id (sha1 of "blob <size>\0" + content)


@dataclass
class FileGroup:
    kind: str                  # a CheckpointFormat's kind (gguf, safetensors, gptq, exl2, awq) or "other"
    label: str                 # unique within a listing
    files: list[RemoteFile]
    quant_from_name: str | None = None
    quant_from_header: str | None = None
    shape: ModelShape | None = None
    note: str = ""

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def quantization(self) -> str | None:
        return self.quant_from_header or self.quant_from_name


@dataclass
class RepoListing:
    repo_id: str
    revision: str
    commit: str
    gated: bool
    files: list[RemoteFile]
    groups: list[FileGroup]
    refused: list[str] = field(default_factory=list)  # names that would escape models/

    def group(self, label: str) -> FileGroup:
        for g in self.groups:
            if g.label == label:
                return g
        raise HubError(f"{self.repo_id} has no group {label!r}")

    def matching(self, patterns: list[str]) -> list[RemoteFile]:
        return [f for f in self.files if any(fnmatch.fnmatch(f.path, p) for p in patterns)]


_QUANT = re.compile(
    r"(?<![A-Za-z0-9])(I?Q[1-8]_(?:K_XL|K_[SML]|K|XXS|XS|NL|[SML]|[01])|TQ[12]_0|MXFP4(?:_MOE)?"
    r"|BF16|F16|FP16|F32|FP32|Q8_K|[0-9](?:\.[0-9]+)?bpw)(?![A-Za-z0-9])", re.IGNORECASE)
_SPLIT = re.compile(r"^(.*)-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_WEIGHTS = (".safetensors",)


def quant_from_name(path: str) -> str | None:
    found = _QUANT.findall(path.replace("/", " "))
    if not found:
        return None
    q = found[-1]
    return q if q.lower().endswith("bpw") else q.upper().replace("FP16", "F16").replace("FP32", "F32")


def _folder_kind(names: list[str], config: dict | None, hint: str) -> str:
    """A weights folder's kind by loaders.formats' rule, the one the loaders and the
    local model list use; `config` is None until config.json has been read."""
    fmt = classify(names, config, name=hint)
    return (fmt or CheckpointFormat.SAFETENSORS).kind


def group_files(files: list[RemoteFile], repo_id: str = "") -> list[FileGroup]:
    """GGUF quantizations (split parts together), one group per folder of safetensors
    weights (with its config and tokenizer files), and the rest. Pure: names only."""
    groups: list[FileGroup] = []
    ggufs: dict[str, list[RemoteFile]] = {}
    for f in files:
        if f.path.lower().endswith(".gguf"):
            m = _SPLIT.match(f.path)
            ggufs.setdefault(m.group(1) if m else f.path, []).append(f)
    for key, parts in sorted(ggufs.items()):
        parts.sort(key=lambda f: f.path)
        name = PurePosixPath(key).name
        label = key if len(parts) == 1 else f"{key} ({len(parts)} parts)"
        note = "vision projector" if "mmproj" in name.lower() else ""
        groups.append(FileGroup("gguf", label, parts, quant_from_name(key), note=note))
    taken = {f.path for g in groups for f in g.files}
    folders: dict[str, list[RemoteFile]] = {}
    for f in files:
        if f.path not in taken:
            folders.setdefault(f.path.rsplit("/", 1)[0] if "/" in f.path else "", []).append(f)
    for folder, members in sorted(folders.items()):
        if not any(f.path.endswith(_WEIGHTS) for f in members):
            continue
        kind = _folder_kind([f.path for f in members], None, folder or repo_id)
        keep = [f for f in members if f.path.endswith(_WEIGHTS) or _is_companion(f.path)]
        shards = sum(f.path.endswith(_WEIGHTS) for f in keep)
        label = f"{folder or '(top level)'}: {kind} ({shards} weight file{'s' * (shards != 1)})"
        groups.append(FileGroup(kind, label, keep, quant_from_name(folder) if folder else None))
        taken.update(f.path for f in keep)
    rest = [f for f in files if f.path not in taken]
    if rest:
        groups.append(FileGroup("other", "other files", rest))
    return groups


def _is_companion(path: str) -> bool:
    """Files a Transformers-style loader needs beside the weights."""
    name = PurePosixPath(path).name
    return name.endswith((".json", ".model", ".tiktoken", ".txt", ".jinja")) and name != "README.md"


def list_repo(repo_id: str, revision: str | None = None, token: str | None = None,
              *, read_headers: bool = True) -> RepoListing:
    from huggingface_hub import HfApi

    repo_id, revision = check_repo_id(repo_id), check_revision(revision)
    token = resolve_token(token)
    with hub_errors(repo_id, revision, token):
        info = HfApi(endpoint=hub_endpoint(), token=token or False).model_info(
            repo_id, revision=revision, files_metadata=True)
    files, refused = [], []
    for s in info.siblings or []:
        try:
            check_filename(s.rfilename)
        except UnsafeName:
            refused.append(s.rfilename)
            continue
        files.append(RemoteFile(s.rfilename, int(s.size or 0), s.lfs.sha256 if s.lfs else None, s.blob_id))
    listing = RepoListing(repo_id, revision, info.sha or revision, bool(info.gated), files,
                          group_files(files, repo_id), refused)
    if read_headers:
        read_group_headers(listing, token)
    return listing


def read_group_headers(listing: RepoListing, token: str | None) -> None:
    """GGUF type and shape from each file's first bytes; config.json for the others.
    Best effort: a gated repo without a token, say, still lists by name."""
    def read(group: FileGroup) -> None:
        try:
            if group.kind == "gguf":
                data = fetch_bytes(listing, group.files[0].path, token, GGUF_PREFIX_BYTES)
                try:
                    header = read_metadata_prefix(data)
                except GGUFError as e:
                    group.note = str(e)
                    return
                group.quant_from_header = header.quantization
                group.shape = shape_from_gguf(header, group.size)
            else:
                folder = str(PurePosixPath(group.files[0].path).parent)
                cfg_path = "config.json" if folder == "." else f"{folder}/config.json"
                if any(f.path == cfg_path for f in group.files):
                    config = json.loads(fetch_bytes(listing, cfg_path, token, CONFIG_MAX_BYTES))
                    if not isinstance(config, dict):
                        raise ValueError("config.json is not a JSON object")
                    apply_config(group, config)
        except (HubError, ValueError) as e:
            group.note = group.note or f"not read: {e}"

    todo = [g for g in listing.groups if g.kind != "other"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(read, todo))


def apply_config(group: FileGroup, config: dict) -> None:
    """What a weights group's config.json tells before download: the model's shape, and
    its kind, now by the evidence the loaders and the local model list go by."""
    weights = sum(f.size for f in group.files if f.path.endswith(_WEIGHTS))
    group.shape = shape_from_config(config, weights)
    group.kind = _folder_kind([f.path for f in group.files], config, "")


def fetch_bytes(listing: RepoListing, path: str, token: str | None, limit: int) -> bytes:
    """The first `limit` bytes of a file, by an HTTP range request."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    check_filename(path)
    url = hf_hub_url(listing.repo_id, path, revision=listing.commit, endpoint=hub_endpoint())
    headers = build_hf_headers(token=token or False)
    headers["Range"] = f"bytes=0-{limit - 1}"
    with hub_errors(listing.repo_id, listing.revision, token):
        # httpx drops the Authorization header itself when a redirect leaves the host.
        with get_session().stream("GET", url, headers=headers, follow_redirects=True, timeout=30) as r:
            hf_raise_for_status(r)
            out = bytearray()
            for chunk in r.iter_bytes():
                out += chunk
                if len(out) >= limit:  # a server that ignores Range: stop reading
                    break
    return bytes(out[:limit])
