"""The extensions registry: discovers extensions, switches them on and off, and
calls their hooks. Core: no Gradio, no FastAPI (the UI and the server ask it for
tabs and routers and mount them themselves).

Fault isolation: every call into an extension (its import, setup and every hook)
runs with a time limit and inside try/except. An extension that fails to import
cannot be switched on; one that raises, returns the wrong type or hangs is
switched off for this run, logged, and reported to the UI through the fault
listeners; the request it was part of goes on without it. The user's own choice
(extensions.json) is not changed by a fault, so a fixed extension comes back on
at the next start.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from loaders.errors import describe_exception
from loaders.params import GenerationParams
from webui.accounts.current import current_user
from webui.errors import ErrorKind, UserError
from webui.extensions.api import HOOKS, ExtensionContext, Message, ModelInfo, Prompt
from webui.extensions.loading import (
    Extension,
    check_module,
    find_extensions,
    import_script,
)
from webui.extensions.runner import HookTimeout, call_with_timeout
from webui.extensions.store import FILE_NAME, ExtensionStore
from webui.runtime.embeddings import Embeddings
from webui.runtime.generation import GenerationEngine
from webui.runtime.model_manager import ModelManager, NoModelLoaded
from webui.userdata.folders import SHIPPED_ROOT

log = logging.getLogger(__name__)

SHIPPED_EXTENSIONS = SHIPPED_ROOT / "extensions"  # the checkout's, or the installed wheel's
HOOK_TIMEOUT_S = 10.0  # a text hook that takes longer is taken for hung
SETUP_TIMEOUT_S = 120.0  # importing and setting up may load a model


class ExtensionError(UserError):
    """An extension cannot be switched on (one line, for the UI and the log)."""

    kind = ErrorKind.FAILED


class _Skipped(Exception):
    """A hook faulted; its extension is off now and the call goes on without it."""


class ExtensionManager:
    def __init__(self, models: ModelManager | None = None, engine: GenerationEngine | None = None, *,
                 user_root: Path | None = None, roots: Sequence[Path] | None = None,
                 store: ExtensionStore | None = None, data_root: Path | None = None,
                 timeout: float = HOOK_TIMEOUT_S, setup_timeout: float = SETUP_TIMEOUT_S,
                 embeddings: Embeddings | None = None,
                 user_data_root: Callable[[str], Path] | None = None,
                 user_settings_file: Callable[[str], Path] | None = None):
        self._app = _App(models, engine, embeddings)
        # A user's extension_data folder (each extension's data is per user unless it
        # declares SHARED_DATA = True); None: everyone shares data_root.
        self.user_data_root = user_data_root
        self.roots = [Path(r) for r in (roots if roots is not None else [SHIPPED_EXTENSIONS])]
        self.store = store if store is not None else ExtensionStore(
            Path(user_root) / FILE_NAME if user_root is not None else None)
        self.data_root = Path(data_root or (Path(user_root) / "extension_data" if user_root else "user_data/extension_data"))
        # A user's own extension settings file (ctx.get_setting/set_setting of an extension
        # whose data is per user); None: everyone shares the store's settings.
        self._user_settings = _UserSettings(self.store, user_settings_file) if user_settings_file else None
        self.timeout = timeout
        self.setup_timeout = setup_timeout
        self._lock = threading.RLock()  # the registry and the order; held only briefly
        self._switching = threading.Lock()  # held while an extension is switched on or off
        self._extensions: dict[str, Extension] = {}
        self._order: list[str] = []  # enabled extensions, in the order their hooks run
        self._contexts: dict[str, ExtensionContext] = {}
        self._fault_listeners: list[Callable[[str, str], None]] = []
        self.discovered = False

    # --- discovery ----------------------------------------------------------------------
    def discover(self, extra_roots: Iterable[Path] = ()) -> list[Extension]:
        """Import every extension found (once each); a broken one is listed with its error."""
        with self._lock:
            for root in extra_roots:
                if Path(root) not in self.roots:
                    self.roots.append(Path(root))
            for name, folder in find_extensions(self.roots):
                if name not in self._extensions:
                    self._extensions[name] = self._import(name, folder)
            self.discovered = True
            return self.list()

    def _import(self, name: str, folder: Path) -> Extension:
        ext = Extension(name, folder)
        try:
            module = call_with_timeout(import_script, (name, folder), self.setup_timeout, f"{name}.import")
        except HookTimeout as e:
            ext.error = f"importing script.py {e}"
        except Exception as e:
            ext.error = f"importing script.py failed: {describe_exception(e)}"
            log.error("extension %s: %s", name, ext.error, exc_info=e)
        else:
            problem = check_module(ext, module)
            if problem:
                ext.error = problem
            else:
                ext.module = module
        if ext.error:
            log.error("extension %s cannot be loaded: %s", name, ext.error)
        return ext

    def start(self, names: Sequence[str] = (), extra_roots: Iterable[Path] = ()) -> list[str]:
        """At server start: discover, then switch on the extensions named on the command
        line (for this run) and those the user switched on before. Returns one line per
        extension that could not be switched on (also logged)."""
        self.discover(extra_roots)
        problems = []
        wanted = list(dict.fromkeys([*names, *self.store.enabled()]))
        for name in wanted:
            try:
                self.enable(name, persist=False)
            except ExtensionError as e:
                problems.append(str(e))
                log.error("%s", e)
        return problems

    # --- state ----------------------------------------------------------------------------
    def list(self) -> list[Extension]:
        with self._lock:
            return sorted(self._extensions.values(), key=lambda e: e.name)

    def get(self, name: str) -> Extension:
        with self._lock:
            ext = self._extensions.get(name)
        if ext is None:
            known = ", ".join(sorted(self._extensions)) or "none found"
            raise ExtensionError(f"no extension named {name!r} (found: {known})")
        return ext

    def enabled(self) -> list[Extension]:
        with self._lock:
            return [self._extensions[n] for n in self._order]

    def is_enabled(self, name: str) -> bool:
        ext = self._extensions.get(name)
        return ext is not None and ext.enabled

    def context(self, name: str) -> ExtensionContext:
        with self._lock:
            ctx = self._contexts.get(name)
            if ctx is None:
                ext = self._extensions.get(name)
                shared = self.user_data_root is None or bool(getattr(ext and ext.module, "SHARED_DATA", False))
                settings = self.store if shared or self._user_settings is None else self._user_settings
                ctx = ExtensionContext(name, self.data_root / name, settings, self._app,
                                       user_dirs=None if shared else self._user_dirs(name))
                self._contexts[name] = ctx
            return ctx

    def _user_dirs(self, name: str) -> Callable[[str], Path]:
        root_of = self.user_data_root
        assert root_of is not None
        return lambda user: root_of(user) / name

    def enable(self, name: str, persist: bool = True) -> Extension:
        ext = self.get(name)
        if not ext.loadable:
            raise ExtensionError(f"extension {name} cannot be switched on: {ext.error}")
        # One switch at a time; hooks never wait on this lock, so a slow setup()
        # does not hold up anyone's chat.
        with self._switching:
            if not ext.enabled:
                ext.error = None
                if not ext.ready and "setup" in ext.hooks:
                    try:
                        self._call(ext, "setup", self.context(name), timeout=self.setup_timeout)
                    except _Skipped:
                        raise ExtensionError(f"extension {name} could not be switched on: {ext.error}") from None
                ext.ready = True
                with self._lock:
                    ext.enabled = True
                    self._order.append(name)
                log.info("extension %s is on", name)
            if persist:
                self.store.set_enabled(name, True)
        return ext

    def disable(self, name: str, persist: bool = True) -> Extension:
        ext = self.get(name)
        with self._switching:
            was_on = ext.enabled
            self._switch_off(ext)
            if persist:
                self.store.set_enabled(name, False)
            if was_on and ext.ready and "teardown" in ext.hooks:
                try:
                    self._call(ext, "teardown", self.context(name))
                except _Skipped:
                    pass
            ext.ready = False
        log.info("extension %s is off", name)
        return ext

    def _switch_off(self, ext: Extension) -> None:
        with self._lock:
            ext.enabled = False
            if ext.name in self._order:
                self._order.remove(ext.name)

    # --- faults -----------------------------------------------------------------------------
    def add_fault_listener(self, listener: Callable[[str, str], None]) -> None:
        """listener(extension name, one-line message), called in the thread whose
        request met the fault (so a UI can tell that user)."""
        with self._lock:
            if listener not in self._fault_listeners:
                self._fault_listeners.append(listener)

    def _fault(self, ext: Extension, message: str, error: BaseException | None = None) -> None:
        ext.error = message
        self._switch_off(ext)
        ext.ready = False  # a hung or broken setup must run again before the next use
        log.error("extension %s was switched off: %s", ext.name, message, exc_info=error)
        for listener in list(self._fault_listeners):
            try:
                listener(ext.name, message)
            except Exception:  # a listener's failure is no reason to fail the request
                log.exception("fault listener failed")

    def _call(self, ext: Extension, hook: str, *args: Any, timeout: float | None = None) -> Any:
        fn = ext.hooks[hook]
        try:
            value = call_with_timeout(fn, args, timeout or self.timeout, f"{ext.name}.{hook}")
        except HookTimeout as e:
            self._fault(ext, f"{hook} {e}")
            raise _Skipped from None
        except Exception as e:
            self._fault(ext, f"{hook} raised {describe_exception(e)}", e)
            raise _Skipped from None
        spec = HOOKS[hook]
        if not spec.check(value):
            self._fault(ext, f"{hook} returned {type(value).__name__}; it must return {spec.returns}")
            raise _Skipped
        return value

    def _active(self, hook: str) -> list[Extension]:
        with self._lock:
            return [self._extensions[n] for n in self._order if hook in self._extensions[n].hooks]

    # --- hooks ------------------------------------------------------------------------------
    def modify_input(self, text: str) -> str:
        """The user's chat message, before it is saved to the history."""
        for ext in self._active("modify_input"):
            try:
                text = self._call(ext, "modify_input", text, self.context(ext.name))
            except _Skipped:
                pass
        return text

    def modify_prompt(self, prompt: Prompt) -> Prompt:
        """What the model will see. Each hook works on a copy, so one that fails half
        way leaves nothing half-done behind."""
        for ext in self._active("modify_prompt"):
            draft = _copy(prompt)
            try:
                result = self._call(ext, "modify_prompt", draft, self.context(ext.name))
            except _Skipped:
                continue
            prompt = result if result is not None else draft
        return prompt

    def chat_prompt(self, messages: Sequence[Message], system_prompt: str = "") -> Prompt:
        return self.modify_prompt(Prompt("chat", [dict(m) for m in messages], system_prompt or ""))

    def completion_prompt(self, text: str) -> Prompt:
        return self.modify_prompt(Prompt("completion", text=text))

    def modify_output(self, text: str, prompt: Prompt | None = None) -> str:
        """A finished reply, before it is shown for good and saved."""
        active = self._active("modify_output")
        if not active:
            return text
        prompt = prompt if prompt is not None else Prompt("chat")
        for ext in active:
            try:
                text = self._call(ext, "modify_output", text, _copy(prompt), self.context(ext.name))
            except _Skipped:
                pass
        return text

    def model_loaded(self, loaded: Any) -> None:
        """After a model loaded (Model tab, API, command line, again after idling)."""
        active = self._active("on_model_load")
        if not active:
            return
        info = ModelInfo(loaded.name, loaded.loader, str(loaded.path), loaded.model.context_length)
        for ext in active:
            try:
                self._call(ext, "on_model_load", info, self.context(ext.name))
            except _Skipped:
                pass

    def tools(self) -> list[tuple[str, Callable[..., Any]]]:
        """(extension, function) for each tool the switched-on extensions offer the chat
        (webui/tools/registry.py reads each function's schema as for a tool file)."""
        out = []
        for ext in self._active("tools"):
            try:
                out += [(ext.name, f) for f in self._call(ext, "tools", self.context(ext.name))]
            except _Skipped:
                pass
        return out

    # --- faces: the UI and the server call these ------------------------------------------
    def with_hook(self, hook: str) -> list[Extension]:
        """Every loadable extension that defines `hook`, on or off (tabs and routes are
        built once at start and shown only while their extension is on)."""
        return [e for e in self.list() if e.loadable and hook in e.hooks]

    def build_tab(self, ext: Extension, tab: Any) -> bool:
        """Call ui_tab inside the caller's open Gradio tab `tab`, in the caller's
        thread (Gradio collects components per thread). False if it failed."""
        ctx = self.context(ext.name)
        ctx.tab = tab
        try:
            ext.hooks["ui_tab"](ctx)
        except Exception as e:
            self._fault(ext, f"ui_tab raised {describe_exception(e)}", e)
            return False
        finally:
            ctx.tab = None
        return True

    def router(self, ext: Extension) -> Any | None:
        try:
            return self._call(ext, "api_router", self.context(ext.name))
        except _Skipped:
            return None

    def route_failed(self, name: str, error: BaseException, mounting: bool = False) -> None:
        """An extension's API route raised (or its routes cannot be served): switch it
        off like any other fault."""
        ext = self._extensions.get(name)
        if ext is not None:
            message = str(error) if mounting else f"an API route raised {describe_exception(error)}"
            self._fault(ext, message, None if mounting else error)


class _UserSettings:
    """Extension settings per user: each user's own file (their `extensions.json`, which
    holds settings only); a setting a user never set reads the shared store's, so what
    was set before accounts stays everyone's default. The single user's file is the
    shared store's own, so there is one writer per file."""

    _UNSET = object()

    def __init__(self, shared: ExtensionStore, file_of: Callable[[str], Path]):
        self.shared = shared
        self.file_of = file_of
        self._stores: dict[Path, ExtensionStore] = {}
        self._lock = threading.Lock()

    def _mine(self) -> ExtensionStore:
        path = Path(self.file_of(current_user()))
        if self.shared.path is not None and path == self.shared.path:
            return self.shared
        with self._lock:
            store = self._stores.get(path)
            if store is None:
                store = self._stores[path] = ExtensionStore(path)
            return store

    def get(self, extension: str, key: str, default: Any = None) -> Any:
        value = self._mine().get(extension, key, self._UNSET)
        return self.shared.get(extension, key, default) if value is self._UNSET else value

    def set(self, extension: str, key: str, value: Any) -> None:
        # A tab that shows the value in force (the user's, or the shared default) writes nothing.
        if self.get(extension, key, self._UNSET) != value:
            self._mine().set(extension, key, value)


class _App:
    """What ExtensionContext may ask of the app: the loaded model and the queue."""

    def __init__(self, models: ModelManager | None, engine: GenerationEngine | None,
                 embeddings: Embeddings | None = None):
        self.models = models
        self.engine = engine
        self.embeddings = embeddings

    def _need(self) -> tuple[ModelManager, GenerationEngine]:
        if self.models is None or self.engine is None:
            raise NoModelLoaded("no model is loaded: load one in the Model tab")
        return self.models, self.engine

    def model(self) -> ModelInfo | None:
        loaded = self.models.current if self.models is not None else None
        if loaded is None:
            return None
        return ModelInfo(loaded.name, loaded.loader, str(loaded.path), loaded.model.context_length)

    def tokenize(self, text: str) -> list[int]:
        models, _ = self._need()
        with models.borrow() as loaded:
            return list(loaded.model.encode(text))

    def generate(self, prompt, params=None):
        if params is None:
            params = GenerationParams()
        elif not isinstance(params, GenerationParams):
            params = GenerationParams.from_mapping(params)
        _, engine = self._need()
        return engine.submit(prompt if isinstance(prompt, str) else list(prompt), params)

    def embed(self, texts: list[str]) -> Any:
        if self.embeddings is None:  # a manager made without the core (some tests)
            raise UserError("embeddings are not available here", kind=ErrorKind.UNAVAILABLE)
        return self.embeddings.embed_texts(texts)

    def recent_replies(self) -> list[Any]:
        if self.engine is None:
            return []
        return list(self.engine.recent_stats)


def _copy(prompt: Prompt) -> Prompt:
    return Prompt(prompt.kind, [dict(m) for m in prompt.messages], prompt.system_prompt, prompt.text,
                  list(prompt.quotes), dict(prompt.notes))
