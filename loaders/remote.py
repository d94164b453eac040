"""A model served by another engine (llama.cpp's server, llama-cpp-python's, vLLM,
TGI, ...) through its OpenAI-compatible API: Hearth keeps its UI, its queue and its
API, and the heavy lifting happens on a bigger machine.

The "path" is the engine's URL. Hearth renders chat templates and counts tokens
itself, so this backend drives the engine's /v1/completions with a text prompt and
streams it back one chunk (one token, for these engines) at a time. Samplers the
engine does not understand are not sent, and `supported_params` says so.

`httpx` is imported inside the functions that need it.
"""
from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from loaders.base import GenerationError, LoadError
from loaders.context_limit import check_fits
from loaders.fields import setting
from loaders.params import GenerationParams
from loaders.registry import is_url, register
from loaders.samplers import SamplerSupport

API_KEY_ENV = "HEARTH_REMOTE_API_KEY"
FALLBACK_CONTEXT = 4096

# The name each kind of engine takes a field by in /v1/completions; None: it has none.
_ENGINES = ("openai", "llama.cpp", "llama-cpp-python", "vllm")
_WIRE_NAMES: dict[str, tuple[str | None, str | None, str | None, str | None]] = {
    #                             OpenAI               llama.cpp server      llama-cpp-python     vLLM
    "max_new_tokens":           ("max_tokens",        "max_tokens",         "max_tokens",        "max_tokens"),
    "stop":                     ("stop",              "stop",               "stop",              "stop"),
    "temperature":              ("temperature",       "temperature",        "temperature",       "temperature"),
    "top_p":                    ("top_p",             "top_p",              "top_p",             "top_p"),
    "presence_penalty":         ("presence_penalty",  "presence_penalty",   "presence_penalty",  "presence_penalty"),
    "frequency_penalty":        ("frequency_penalty", "frequency_penalty",  "frequency_penalty", "frequency_penalty"),
    "seed":                     ("seed",              "seed",               "seed",              "seed"),
    "top_k":                    (None,                "top_k",              "top_k",             "top_k"),
    "min_p":                    (None,                "min_p",              "min_p",             "min_p"),
    "repetition_penalty":       (None,                "repeat_penalty",     "repeat_penalty",    "repetition_penalty"),
    "ignore_eos":               (None,                "ignore_eos",         None,                "ignore_eos"),
    "mirostat_mode":            (None,                "mirostat",           "mirostat_mode",     None),
    "mirostat_tau":             (None,                "mirostat_tau",       "mirostat_tau",      None),
    "mirostat_eta":             (None,                "mirostat_eta",       "mirostat_eta",      None),
    "grammar":                  (None,                "grammar",            "grammar",           None),
    "typical_p":                (None,                "typical_p",          None,                None),
    "top_n_sigma":              (None,                "top_n_sigma",        None,                None),
    "dynatemp_range":           (None,                "dynatemp_range",     None,                None),
    "dynatemp_exponent":        (None,                "dynatemp_exponent",  None,                None),
    "repetition_penalty_range": (None,                "repeat_last_n",      None,                None),
    "dry_multiplier":           (None,                "dry_multiplier",     None,                None),
    "dry_base":                 (None,                "dry_base",           None,                None),
    "dry_allowed_length":       (None,                "dry_allowed_length", None,                None),
    "dry_penalty_last_n":       (None,                "dry_penalty_last_n", None,                None),
    "xtc_probability":          (None,                "xtc_probability",    None,                None),
    "xtc_threshold":            (None,                "xtc_threshold",      None,                None),
}

DIALECTS = {engine: SamplerSupport(
    f"remote ({engine})",
    {field: names[i] for field, names in _WIRE_NAMES.items() if names[i] is not None},
    unsupported=frozenset(field for field, names in _WIRE_NAMES.items() if names[i] is None),
) for i, engine in enumerate(_ENGINES)}


@dataclass(frozen=True)
class RemoteOptions:
    remote_model: str = setting("", "Model to ask the engine for (empty = the first one it lists).")
    remote_api_key: str = setting("", f"API key of the engine (empty = none, or the {API_KEY_ENV} environment variable).")
    remote_dialect: str = setting("auto", "Which sampler fields the engine understands beyond OpenAI's (auto = ask it).",
                                  choices=("auto", *DIALECTS))
    remote_context_length: int = setting(0, "The remote model's context in tokens (0 = ask the engine).", minimum=0, ui_maximum=131072, step=256)
    remote_timeout: float = setting(600.0, "Seconds to wait for the engine's next token before giving up.", minimum=1.0, ui_maximum=3600.0, step=1.0, advanced=True)


def _base_url(url: str) -> str:
    """"http://host:8000/v1/" and "http://host:8000" both mean the engine at its root."""
    url = url.strip().rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _error_message(response) -> str:
    """The engine's own one-line reason, whatever shape its error body has."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip().splitlines()
        return text[0][:200] if text else response.reason_phrase
    err = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(err, dict):
        err = err.get("message") or err.get("detail") or err
    return " ".join(str(err).split())[:200]


def _unreachable(url: str, e: Exception) -> str:
    import httpx

    if isinstance(e, httpx.ConnectError):
        reason = "connection refused" if "refused" in str(e).lower() else (str(e) or "cannot connect")
    elif isinstance(e, httpx.TimeoutException):
        reason = "timed out"
    else:
        reason = str(e) or type(e).__name__
    return f"cannot reach the engine at {url}: {' '.join(reason.split())}"


@register
class RemoteLoader:
    name = "remote"
    Options = RemoteOptions
    description = "An OpenAI-compatible engine (llama.cpp server, vLLM, TGI, ...) at a URL: the model path is its address."
    takes_url = True
    samplers = tuple(DIALECTS.values())

    def can_load(self, path) -> bool:
        return is_url(path) and str(path).lower().startswith(("http://", "https://"))

    def load(self, path, options: RemoteOptions) -> "RemoteModel":
        if not self.can_load(path):
            raise LoadError(f"the remote loader needs the engine's URL, like http://127.0.0.1:8080 (got {path})")
        import httpx

        base = _base_url(str(path))
        key = options.remote_api_key or os.environ.get(API_KEY_ENV, "")
        client = httpx.Client(
            headers={"Authorization": f"Bearer {key}"} if key else {},
            timeout=httpx.Timeout(options.remote_timeout, connect=5.0),
        )
        try:
            return _connect(client, base, options)
        except BaseException:
            client.close()
            raise


def _connect(client, base: str, options: RemoteOptions) -> "RemoteModel":
    import httpx

    try:
        response = client.get(f"{base}/v1/models", timeout=10.0)
    except httpx.HTTPError as e:
        raise LoadError(_unreachable(base, e)) from None
    if response.status_code in (401, 403):
        raise LoadError(f"the engine at {base} refused the API key (HTTP {response.status_code}): "
                        "set remote_api_key")
    if response.status_code != 200:
        raise LoadError(f"the engine at {base} answered HTTP {response.status_code} to /v1/models: "
                        f"{_error_message(response)}")
    try:
        listed = [m for m in response.json()["data"] if isinstance(m, dict) and "id" in m]
    except (ValueError, KeyError, TypeError):
        raise LoadError(f"{base} is not an OpenAI-compatible engine (/v1/models gave no model list)") from None
    if options.remote_model:
        chosen = next((m for m in listed if m["id"] == options.remote_model), None)
        if chosen is None:
            offered = ", ".join(m["id"] for m in listed) or "none"
            raise LoadError(f"the engine at {base} has no model {options.remote_model!r} (it offers: {offered})")
    elif listed:
        chosen = listed[0]
    else:
        raise LoadError(f"the engine at {base} lists no models")
    probe = _Probe(client, base)
    dialect = options.remote_dialect if options.remote_dialect != "auto" else probe.dialect()
    context = (options.remote_context_length or chosen.get("max_model_len") or probe.context_length()
               or FALLBACK_CONTEXT)
    return RemoteModel(client, base, chosen["id"], DIALECTS[dialect], int(context),
                       probe.chat_template(), probe.tokenizer())


class _Probe:
    """Feature detection: engines differ in what they expose beside /v1."""

    def __init__(self, client, base: str):
        self.client, self.base = client, base
        self._props: dict | None = None

    def _get_json(self, path: str) -> Any:
        import httpx

        try:
            r = self.client.get(self.base + path, timeout=10.0)
            return r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def props(self) -> dict:
        if self._props is None:  # llama.cpp's own server
            props = self._get_json("/props")
            self._props = props if isinstance(props, dict) else {}
        return self._props

    def dialect(self) -> str:
        if "default_generation_settings" in self.props():
            return "llama.cpp"
        if self.tokenizer() == "/extras/tokenize":
            return "llama-cpp-python"
        if isinstance(self._get_json("/version"), dict):
            return "vllm"
        return "openai"

    def context_length(self) -> int | None:
        settings = self.props().get("default_generation_settings") or {}
        return settings.get("n_ctx") or self.props().get("n_ctx")

    def chat_template(self) -> str | None:
        return self.props().get("chat_template") or None

    def tokenizer(self) -> str | None:
        """The engine's tokenize endpoint: llama-cpp-python's, or llama.cpp's and vLLM's."""
        import httpx

        for path in ("/extras/tokenize", "/tokenize"):
            try:
                r = self.client.post(self.base + path, json=_tokenize_body("Hi"), timeout=10.0)
                if r.status_code == 200 and isinstance(r.json().get("tokens"), list):
                    return path
            except (httpx.HTTPError, ValueError, AttributeError):
                continue
        return None


def _tokenize_body(text: str, model: str | None = None) -> dict:
    # llama-cpp-python reads "input", llama.cpp "content", vLLM "prompt"; each ignores the rest.
    body = {"input": text, "content": text, "prompt": text, "add_special": True}
    if model:
        body["model"] = model
    return body


class RemoteModel:
    def __init__(self, client, base: str, model_id: str, samplers: SamplerSupport, context_length: int,
                 chat_template: str | None, tokenize_path: str | None):
        self._client = client
        self.base = base
        self.model_id = model_id
        self._names = samplers.applied
        self.context_length = context_length
        self.chat_template = chat_template
        self.supported_params = samplers.supported_params
        self.last_prompt_eval_tokens = 0
        self._tokenize_path = tokenize_path
        # The engine takes text, and core hands generate() token ids: remember the
        # text behind the ids that encode() made so nothing is lost in a round trip.
        self._texts: OrderedDict[tuple[int, ...], str] = OrderedDict()
        self._texts_lock = threading.Lock()

    # --- tokens ------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        if self._tokenize_path:
            ids = self._post_json(self._tokenize_path, _tokenize_body(text, self.model_id))["tokens"]
        else:
            # No tokenize endpoint (plain OpenAI): about 4 bytes a token, placeholder ids.
            ids = list(range((len(text.encode("utf-8")) + 3) // 4))
        with self._texts_lock:
            self._texts[tuple(ids)] = text
            while len(self._texts) > 32:
                self._texts.popitem(last=False)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        with self._texts_lock:
            known = self._texts.get(tuple(ids))
        if known is not None:
            return known
        if self._tokenize_path is None:
            raise GenerationError("this engine cannot turn token ids back into text")
        path = "/extras/detokenize" if self._tokenize_path == "/extras/tokenize" else "/detokenize"
        body = self._post_json(path, {"tokens": list(ids), "model": self.model_id})
        return body.get("text") or body.get("content") or body.get("prompt") or ""

    def _post_json(self, path: str, body: dict) -> dict:
        import httpx

        try:
            r = self._client.post(self.base + path, json=body)
        except httpx.HTTPError as e:
            raise GenerationError(_unreachable(self.base, e)) from None
        if r.status_code != 200:
            raise GenerationError(f"the engine answered HTTP {r.status_code}: {_error_message(r)}")
        return r.json()

    # --- generation --------------------------------------------------------------
    def request_body(self, prompt: str, params: GenerationParams, max_tokens: int) -> dict:
        body: dict[str, Any] = {"model": self.model_id, "prompt": prompt, "stream": True}
        for name, wire in self._names.items():
            value = getattr(params, name)
            if name == "max_new_tokens":
                value = max_tokens
            elif name == "seed" and value < 0:
                continue
            elif name == "stop":
                if not value:
                    continue
                value = list(value)
            elif name == "grammar" and not value:
                continue
            body[wire] = value
        return body

    def generate(self, prompt_ids: Sequence[int], params: GenerationParams,
                 cancel: threading.Event) -> Iterator[str]:
        import httpx

        room = check_fits(len(prompt_ids), self.context_length)
        prompt = self.decode(prompt_ids)
        self.last_prompt_eval_tokens = len(prompt_ids)  # the engine does not say what it reused
        body = self.request_body(prompt, params, min(params.max_new_tokens, room))
        try:
            with self._client.stream("POST", f"{self.base}/v1/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise GenerationError(f"the engine answered HTTP {response.status_code}: "
                                          f"{_error_message(response)}")
                # Leaving this block closes the connection, which is how an engine
                # learns that a reply was cancelled.
                for text in _sse_texts(response.iter_lines()):
                    yield text
                    if cancel.is_set():
                        return
        except httpx.HTTPError as e:
            if cancel.is_set():
                return
            if isinstance(e, (httpx.RemoteProtocolError, httpx.ReadError)):
                raise GenerationError(f"the engine at {self.base} dropped the connection mid-reply") from None
            raise GenerationError(_unreachable(self.base, e)) from None

    def unload(self) -> None:
        self._client.close()


def _sse_texts(lines: Iterator[str]) -> Iterator[str]:
    """The text of each streamed completion chunk; an error the engine streams
    instead of a chunk becomes a GenerationError."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            raise GenerationError(f"the engine sent a chunk that is not JSON: {data[:80]}") from None
        if not isinstance(chunk, dict):
            continue
        if "error" in chunk:
            err = chunk["error"]
            message = err.get("message", err) if isinstance(err, dict) else err
            raise GenerationError(f"the engine failed: {' '.join(str(message).split())[:200]}")
        choices = chunk.get("choices") or []
        if not choices:
            continue  # a usage-only chunk
        choice = choices[0]
        text = choice.get("text") or ""
        # The closing chunk carries finish_reason and usually no text: not a token.
        if text or choice.get("finish_reason") is None:
            yield text
