"""A model served by another engine (llama.cpp's server, llama-cpp-python's, vLLM,
TGI, ...) through its OpenAI-compatible API: Hearth keeps its UI, its queue and its
API, and the heavy lifting happens on a bigger machine.

The "path" is the engine's URL. Hearth renders chat templates and counts tokens
itself, so this backend drives the engine's /v1/completions with a text prompt and
streams it back one chunk (one token, for these engines) at a time. Samplers the
engine does not understand are not sent, and `supported_params` says so.

`httpx` is imported inside the functions that need it; remote_http.py holds what is
checked about the engine's URL and replies.
"""
from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from loaders.base import GenerationError, LoadError
from loaders.context_limit import check_fits
from loaders.fields import setting
from loaders.load_progress import LoadProgress, no_progress
from loaders.option_limits import MAX_CONTEXT_TOKENS
from loaders.params import GenerationParams
from loaders.registry import is_url, register
from loaders.remote_http import (
    bounded_lines,
    endpoint,
    engine_base,
    engine_reason,
    post_for_generation,
    printable,
    read_reply,
    request_json,
    same_engine,
    unreachable,
)
from loaders.samplers import SamplerSupport

API_KEY_ENV = "HEARTH_REMOTE_API_KEY"
# The engine that key belongs to. A load request names any URL, so the key from the
# environment goes only to this engine, never to whatever URL a request gives.
API_KEY_URL_ENV = "HEARTH_REMOTE_API_KEY_URL"
FALLBACK_CONTEXT = 4096
# A day: the longest an engine may take for its next token before Hearth gives up.
MAX_TIMEOUT = 86400.0
_MAX_MODEL_ID = 512

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

# Samplers whose -1 means "the whole context" in GenerationParams.
_WHOLE_CONTEXT_AT_MINUS_ONE = frozenset({"dry_penalty_last_n", "repetition_penalty_range"})

# Where each engine's /v1/completions takes OpenAI's response_format as it came.
# llama-cpp-python's takes only a GBNF grammar (Hearth's, through "grammar" above), and
# plain OpenAI's /v1/completions none at all: a response_format then gets the core's
# one-line refusal (webui/chat/structured.require_grammar).
_RESPONSE_FORMAT_FIELDS = {"llama.cpp": "json_schema", "vllm": "response_format"}

DIALECTS = {engine: SamplerSupport(
    f"remote ({engine})",
    {field: names[i] for field, names in _WIRE_NAMES.items() if names[i] is not None},
    unsupported=frozenset(field for field, names in _WIRE_NAMES.items() if names[i] is None),
) for i, engine in enumerate(_ENGINES)}


@dataclass(frozen=True)
class RemoteOptions:
    remote_model: str = setting("", "Model to ask the engine for (empty = the first one it lists).")
    remote_api_key: str = setting("", f"API key of the engine (empty = none; {API_KEY_ENV} is sent only to the "
                                  f"engine at {API_KEY_URL_ENV}).", env=API_KEY_ENV)
    remote_dialect: str = setting("auto", "Which sampler fields the engine understands beyond OpenAI's (auto = ask it).",
                                  choices=("auto", *DIALECTS))
    remote_context_length: int = setting(0, "The remote model's context in tokens (0 = ask the engine).", minimum=0, maximum=MAX_CONTEXT_TOKENS, ui_maximum=131072, step=256)
    # Engines batch the requests they serve at once (llama-server --parallel N, vLLM):
    # one at a time would leave that batching unused.
    remote_concurrency: int = setting(1, "Requests forwarded to the engine at once, each its own stream (match "
                                      "llama-server's --parallel); local models always serve one at a time.",
                                      minimum=1, maximum=256, ui_maximum=64, step=1)
    remote_timeout: float = setting(600.0, "Seconds to wait for the engine's next token before giving up.", minimum=1.0, maximum=MAX_TIMEOUT, ui_maximum=3600.0, step=1.0, advanced=True)


def api_key_for(base: str, options: RemoteOptions) -> str:
    """The key to send to the engine at `base`: the one given with the load, else the
    environment's, if that names this engine as the one it belongs to."""
    if options.remote_api_key:
        return options.remote_api_key
    key = os.environ.get(API_KEY_ENV, "")
    owner = os.environ.get(API_KEY_URL_ENV, "")
    if not key or not owner:
        return ""
    try:
        return key if same_engine(engine_base(owner), base) else ""
    except LoadError:  # a malformed HEARTH_REMOTE_API_KEY_URL names no engine
        return ""


@register
class RemoteLoader:
    name = "remote"
    Options = RemoteOptions
    description = "An OpenAI-compatible engine (llama.cpp server, vLLM, TGI, ...) at a URL: the model path is its address."
    takes_url = True
    samplers = tuple(DIALECTS.values())

    def can_load(self, path) -> bool:
        return is_url(path) and str(path).lower().startswith(("http://", "https://"))

    def load(self, path, options: RemoteOptions, progress: LoadProgress = no_progress) -> RemoteModel:
        # One request to the engine: the caller reports start and end.
        if not self.can_load(path):
            raise LoadError("the remote loader needs the engine's URL, like http://127.0.0.1:8080")
        import httpx

        base = engine_base(str(path))
        key = api_key_for(base, options)
        client = httpx.Client(
            headers={"Authorization": f"Bearer {key}"} if key else {},
            timeout=httpx.Timeout(options.remote_timeout, connect=5.0),
            # A connection per concurrent reply, and a few for tokenizing beside them.
            limits=httpx.Limits(max_connections=options.remote_concurrency + 8,
                                max_keepalive_connections=options.remote_concurrency + 8),
        )
        try:
            return _connect(client, base, options, sent_key=bool(key))
        except BaseException:
            client.close()
            raise


def _listed_models(data: Any) -> list[dict] | None:
    """The entries of a /v1/models reply that have a usable id; None if it is no list."""
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return None
    return [m for m in items
            if isinstance(m, dict) and isinstance(m.get("id"), str) and 0 < len(m["id"]) <= _MAX_MODEL_ID]


def _context_number(value: Any) -> int | None:
    """A context length an engine reports, if it is a plausible one."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_CONTEXT_TOKENS:
        return value
    return None


def _connect(client, base: str, options: RemoteOptions, sent_key: bool = False) -> RemoteModel:
    import httpx

    try:
        status, data, raw = request_json(client, "GET", endpoint(base, "/v1/models"), timeout=10.0)
    except httpx.HTTPError as e:
        raise LoadError(unreachable(base, e)) from None
    if status in (401, 403):
        how = ("set remote_api_key" if sent_key or not os.environ.get(API_KEY_ENV) else
               f"set remote_api_key, or {API_KEY_URL_ENV} to this engine's URL to send it {API_KEY_ENV}")
        raise LoadError(f"the engine at {base} refused the API key (HTTP {status}): {how}")
    if status != 200:
        raise LoadError(f"the engine at {base} answered HTTP {status} to /v1/models{engine_reason(raw)}")
    listed = _listed_models(data)
    if listed is None:
        raise LoadError(f"{base} is not an OpenAI-compatible engine (/v1/models gave no model list)")
    if options.remote_model:
        chosen = next((m for m in listed if m["id"] == options.remote_model), None)
        if chosen is None:
            offered = ", ".join(printable(m["id"], 200) for m in listed[:4]) or "none"
            more = f" and {len(listed) - 4} more" if len(listed) > 4 else ""
            raise LoadError(f"the engine at {base} has no model {printable(options.remote_model, 80)!r} "
                            f"(it offers: {offered}{more})")
    elif listed:
        chosen = listed[0]
    else:
        raise LoadError(f"the engine at {base} lists no models")
    probe = _Probe(client, base)
    dialect = options.remote_dialect if options.remote_dialect != "auto" else probe.dialect()
    context = (options.remote_context_length or _context_number(chosen.get("max_model_len"))
               or probe.context_length() or FALLBACK_CONTEXT)
    model = RemoteModel(client, base, chosen["id"], DIALECTS[dialect], int(context),
                        probe.chat_template(), probe.tokenizer())
    model.concurrency = options.remote_concurrency
    model.response_format_field = _RESPONSE_FORMAT_FIELDS.get(dialect)
    return model


class _Probe:
    """Feature detection: engines differ in what they expose beside /v1. Every answer
    is optional, so a reply that is missing, too long or of the wrong shape counts
    as "not offered"."""

    def __init__(self, client, base: str):
        self.client, self.base = client, base
        self._props: dict | None = None

    def _json(self, method: str, path: str, **kwargs) -> Any:
        import httpx

        try:
            status, data, _ = request_json(self.client, method, endpoint(self.base, path), timeout=10.0, **kwargs)
        except httpx.HTTPError:
            return None
        return data if status == 200 else None

    def props(self) -> dict:
        if self._props is None:  # llama.cpp's own server
            props = self._json("GET", "/props")
            self._props = props if isinstance(props, dict) else {}
        return self._props

    def dialect(self) -> str:
        if isinstance(self.props().get("default_generation_settings"), dict):
            return "llama.cpp"
        if self.tokenizer() == "/extras/tokenize":
            return "llama-cpp-python"
        if isinstance(self._json("GET", "/version"), dict):
            return "vllm"
        return "openai"

    def context_length(self) -> int | None:
        settings = self.props().get("default_generation_settings")
        from_settings = _context_number(settings.get("n_ctx")) if isinstance(settings, dict) else None
        return from_settings or _context_number(self.props().get("n_ctx"))

    def chat_template(self) -> str | None:
        template = self.props().get("chat_template")
        return template if isinstance(template, str) and template else None

    def tokenizer(self) -> str | None:
        """The engine's tokenize endpoint: llama-cpp-python's, or llama.cpp's and vLLM's."""
        for path in ("/extras/tokenize", "/tokenize"):
            reply = self._json("POST", path, json=_tokenize_body("Hi"))
            if isinstance(reply, dict) and isinstance(reply.get("tokens"), list):
                return path
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
        # How many replies the generation queue runs at once on this model.
        self.concurrency = 1
        self._per_reply = threading.local()  # concurrent replies each read their own count
        self._tokenize_path = tokenize_path
        # The request field this engine takes a response_format in (None: it takes none).
        self.response_format_field: str | None = None
        # The engine takes text, and core hands generate() token ids: remember the
        # text behind the ids that encode() made so nothing is lost in a round trip.
        self._texts: OrderedDict[tuple[int, ...], str] = OrderedDict()
        self._texts_lock = threading.Lock()

    @property
    def last_prompt_eval_tokens(self) -> int:
        """The prompt tokens of the latest reply started in this thread."""
        return getattr(self._per_reply, "prompt_eval_tokens", 0)

    # --- tokens ------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        if self._tokenize_path:
            ids = post_for_generation(self._client, self.base, self._tokenize_path,
                                      _tokenize_body(text, self.model_id)).get("tokens")
            if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
                raise GenerationError(f"the engine's reply to {self._tokenize_path} has no list of token ids")
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
        body = post_for_generation(self._client, self.base, path, {"tokens": list(ids), "model": self.model_id})
        text = body.get("text") or body.get("content") or body.get("prompt") or ""
        if not isinstance(text, str):
            raise GenerationError(f"the engine's reply to {path} has no text")
        return text

    @property
    def takes_response_format(self) -> bool:
        return self.response_format_field is not None

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
            elif name in _WHOLE_CONTEXT_AT_MINUS_ONE and value < 0:
                # llama-server (since its request schema) refuses -1 for "the whole context"
                # with a 400; the context's length in tokens says the same to every engine.
                value = self.context_length
            body[wire] = value
        if params.response_format:
            body.update(self._response_format_body(json.loads(params.response_format)))
        return body

    def _response_format_body(self, response_format: dict) -> dict:
        if self.response_format_field is None:
            raise GenerationError("this engine takes no response_format")
        if self.response_format_field == "json_schema":
            # llama.cpp's server turns a schema into its grammar itself; json_object is any object.
            spec = response_format.get("json_schema") if response_format.get("type") == "json_schema" else None
            return {"json_schema": spec["schema"] if spec else {"type": "object"}}
        return {"response_format": response_format}

    def generate(self, prompt_ids: Sequence[int], params: GenerationParams,
                 cancel: threading.Event) -> Iterator[str]:
        import httpx

        room = check_fits(len(prompt_ids), self.context_length)
        prompt = self.decode(prompt_ids)
        self._per_reply.prompt_eval_tokens = len(prompt_ids)  # the engine does not say what it reused
        body = self.request_body(prompt, params, min(params.max_new_tokens, room))
        try:
            with self._client.stream("POST", endpoint(self.base, "/v1/completions"), json=body) as response:
                if response.status_code != 200:
                    raise GenerationError(f"the engine answered HTTP {response.status_code} to /v1/completions"
                                          f"{engine_reason(read_reply(response))}")
                # Leaving this block closes the connection, which is how an engine
                # learns that a reply was cancelled.
                for text in _sse_texts(bounded_lines(response)):
                    yield text
                    if cancel.is_set():
                        return
        except httpx.HTTPError as e:
            if cancel.is_set():
                return
            if isinstance(e, (httpx.RemoteProtocolError, httpx.ReadError)):
                raise GenerationError(f"the engine at {self.base} dropped the connection mid-reply") from None
            raise GenerationError(unreachable(self.base, e)) from None

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
        except (ValueError, RecursionError):
            raise GenerationError("the engine sent a chunk that is not JSON") from None
        if not isinstance(chunk, dict):
            continue
        if "error" in chunk:
            reason = engine_reason(data.encode("utf-8"))
            raise GenerationError(f"the engine failed{reason or ' (no reason given)'}")
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            continue  # a usage-only chunk
        choice = choices[0]
        if not isinstance(choice, dict):
            continue
        text = choice.get("text") or ""
        if not isinstance(text, str):
            raise GenerationError("the engine sent a chunk whose text is not a string")
        # The closing chunk carries finish_reason and usually no text: not a token.
        if text or choice.get("finish_reason") is None:
            yield text
