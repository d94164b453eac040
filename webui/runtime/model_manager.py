"""Holds the one loaded model. Loading a new one never leaves the app without a
usable state: if the new model fails to load, the previous one is loaded again."""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import loaders
from loaders.base import LoadError, Model
from loaders.errors import describe_exception
from loaders.fields import SettingError, build, to_dict
from loaders.lora import AdapterError, AdapterSpec, takes_adapters
from webui.errors import ErrorKind
from webui.runtime.default_model import DEFAULT_MODEL_NAME, default_model_path
from webui.runtime.load_progress import LoadListener, LoadReport, LoadTracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    name: str
    path: Path | str  # a string for the URL of a remote engine
    loader: str
    options: Any  # the loader's Options dataclass
    model: Model
    load_seconds: float

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "loader": self.loader,
            "options": to_dict(self.options),
            "context_length": self.model.context_length,
            "load_seconds": round(self.load_seconds, 2),
        }


class NoModelLoaded(LoadError):
    kind = ErrorKind.UNAVAILABLE


@dataclass(frozen=True)
class ParkedModel:
    """A model unloaded because it sat idle (--idle-unload), and what loads it again
    exactly as it was: its path, loader and options (LoRA adapters included)."""
    name: str
    path: Path | str
    loader: str
    options: Any
    idle_seconds: float  # how long nothing had used it when it was unloaded

    @property
    def idle_text(self) -> str:
        minutes = self.idle_seconds / 60
        if minutes >= 1:
            return f"{minutes:.0f} minute{'s' if round(minutes) != 1 else ''}"
        return f"{self.idle_seconds:.0f} second{'s' if round(self.idle_seconds) != 1 else ''}"

    @property
    def notice(self) -> str:
        """What a face says while a request waits for the reload."""
        return f"Loading {self.name} again after {self.idle_text} idle…"


def model_display_name(path: Path | str) -> str:
    if loaders.is_url(path):
        return path
    default = default_model_path()
    if default is not None and Path(path) == default:
        return DEFAULT_MODEL_NAME
    return Path(path).name


def load_failure(error: Exception, path: Path | str) -> LoadError:
    """Any exception raised while loading, as the one-line LoadError a user sees."""
    if isinstance(error, LoadError):
        return error
    name = model_display_name(path)
    if isinstance(error, MemoryError):
        return LoadError(f"not enough memory to load {name}")
    log.error("loading %s failed", name, exc_info=error)
    return LoadError(f"could not load {name}: {describe_exception(error)}")


class ModelManager:
    def __init__(self) -> None:
        # Held while loading and while a generation runs, so a model is never
        # unloaded under a generation that is using it.
        self._lock = threading.RLock()
        # Quick reads that do not drive the model (tokenizing) hold it through this
        # count instead, so they never wait behind a running reply; an unload waits
        # for them to end, so a tokenizer is never freed under one.
        self._borrowed = threading.Condition()
        self._borrowers = 0
        self._current: LoadedModel | None = None
        self._loading: LoadTracker | None = None
        # Set while the model is unloaded for being idle: the next use loads it again.
        self._parked: ParkedModel | None = None
        self._last_used = time.monotonic()  # when a request last came or a use ended
        self._requests = 0  # requests being served that may use the model (serving())
        self._requests_lock = threading.Lock()
        self._load_listeners: list[Callable[[LoadedModel], None]] = []
        self._untold: collections.deque[LoadedModel] = collections.deque()  # loads not yet told

    def on_load(self, listener: Callable[[LoadedModel], None]) -> None:
        """Call `listener(loaded)` each time a model has been loaded: chosen, restored
        after a failed load, or loaded again after idling (before the request that woke
        it uses it). It runs on the loading thread once the model is no longer held, so
        it may use the model itself; it must not raise."""
        self._load_listeners.append(listener)

    def _loaded(self, loaded: LoadedModel | None) -> None:
        self._current = loaded
        if loaded is not None:
            # Idle from the load: a model loaded after an hour without requests is not
            # an hour idle.
            self._last_used = time.monotonic()
            self._untold.append(loaded)

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        """The model's lock, for what may load a model: the listeners hear of a load
        once the lock is let go (so they may use the model themselves)."""
        try:
            with self._lock:
                yield
        finally:
            self._tell_listeners()

    def _tell_listeners(self) -> None:
        """Tell the listeners of the loads made under the lock, once it is let go."""
        while True:
            try:
                loaded = self._untold.popleft()
            except IndexError:
                return
            for listener in self._load_listeners:
                listener(loaded)

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    @property
    def loading(self) -> LoadReport | None:
        """How far the load under way has got; None when none is."""
        tracker = self._loading
        return tracker.latest if tracker is not None else None

    @property
    def parked(self) -> ParkedModel | None:
        """The model unloaded for being idle, which the next use loads again; else None."""
        return self._parked

    @property
    def idle_seconds(self) -> float:
        """How long since a request last came (touch) or a use of the model ended."""
        return time.monotonic() - self._last_used

    def touch(self) -> None:
        """A request came: the idle clock starts again."""
        self._last_used = time.monotonic()

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """A request is being served that may use the model: it is not idle before the
        request ends, however long the request takes to reach it (a first request that
        imports what it needs can take seconds before it asks for the model)."""
        with self._requests_lock:
            self._requests += 1
        self.touch()
        try:
            yield
        finally:
            with self._requests_lock:
                self._requests -= 1
            self.touch()

    @contextlib.contextmanager
    def use(self) -> Iterator[LoadedModel]:
        # An idle-unloaded model is loaded again first, outside the lock, so the load's
        # listeners (extensions' on_model_load hooks) hear of it before this use.
        self.resume()
        with self._held():
            self._last_used = time.monotonic()
            if self._current is None and self._parked is not None:
                self._resume_locked()  # unloaded for idling again since resume(): rare
            if self._current is None:
                raise NoModelLoaded("no model is loaded: load one in the Model tab")
            try:
                yield self._current
            finally:
                self._last_used = time.monotonic()

    def resume(self, progress: LoadListener | None = None) -> LoadedModel | None:
        """The loaded model, loaded again first if it was unloaded for being idle (with
        the same path, loader and options); None when no model is loaded. A reload
        that fails raises its one-line LoadError, and the next request tries again."""
        self._last_used = time.monotonic()
        if self._parked is None:
            return self._current
        with self._held():
            if self._current is None and self._parked is not None:
                self._resume_locked(progress)
            return self._current

    def _resume_locked(self, progress: LoadListener | None = None) -> None:
        parked = self._parked
        try:
            loaded = self._load_locked(parked.path, parked.loader, parked.options, progress)
        except Exception as e:
            error = load_failure(e, parked.path)
            raise LoadError(f"{error} (loading it again after {parked.idle_text} idle)") from None
        self._parked = None
        self._loaded(loaded)
        log.info("loaded %s again after %s idle, in %.1fs", loaded.name, parked.idle_text, loaded.load_seconds)

    def unload_if_idle(self, idle_seconds: float, busy: Callable[[], bool] = lambda: False) -> ParkedModel | None:
        """Unload the model if nothing has used it for `idle_seconds`, no use is running
        (the lock is free, nobody borrows it, no request is being served) and `busy()`
        is false (nothing queued),
        remembering it for the next use; returns what was unloaded, or None."""
        if not self._lock.acquire(blocking=False):
            return None  # a reply (or a load) is running
        try:
            loaded, idle = self._current, self.idle_seconds
            if loaded is None or idle < idle_seconds or self._borrowers or self._requests or busy():
                return None
            parked = ParkedModel(loaded.name, loaded.path, loaded.loader, loaded.options, idle)
            self._unload_locked()
            self._parked = parked
            log.info("unloaded %s after %s idle; the next request loads it again", parked.name, parked.idle_text)
            return parked
        finally:
            self._lock.release()

    def resolve_loader(self, path: Path | str, loader_name: str | None) -> str:
        if loader_name:
            loaders.get(loader_name)  # raises with the list of names
            return loader_name
        detected = loaders.detect(path)
        if detected is None:
            if loaders.is_url(path):
                raise LoadError(f"no loader opens the URL {path}")
            if not path.exists():
                raise LoadError(f"no such file or folder: {path}")
            raise LoadError(f"cannot tell what kind of model {path.name} is (not GGUF, "
                            "and no loader recognises it)")
        return detected

    def load(self, path: str | Path, loader_name: str | None = None,
             options: Mapping[str, Any] | Any | None = None,
             progress: LoadListener | None = None) -> LoadedModel:
        """Load a model in place of the current one; `progress` hears how far the load
        (and, if it fails, the reload of the previous model) has got."""
        # A URL (a remote engine) stays a string: Path() would fold its "//".
        path = path if loaders.is_url(path) else Path(path).expanduser()
        try:
            name = self.resolve_loader(path, loader_name)
        except Exception as e:  # detection reads the file's header, which may be crafted
            raise load_failure(e, path) from None
        loader = loaders.get(name)
        if options is None or isinstance(options, Mapping):
            try:
                opts = build(loader.Options, options or {})
            except SettingError as e:
                raise LoadError(str(e)) from None
        else:
            opts = options
        with self._held():
            previous = self._current
            self._unload_locked()
            try:
                loaded = self._load_locked(path, name, opts, progress)
                self._parked = None  # a model chosen now replaces the one unloaded for being idle
            except Exception as e:
                # Whatever failed (a crafted file can raise RecursionError or TypeError
                # deep inside a library), the app keeps the model it had.
                error = load_failure(e, path)
                if previous is not None:
                    self._restore(previous, progress)
                    if self._current is not None:
                        raise LoadError(f"{error} (kept {previous.name} loaded)") from None
                raise error from None
            self._loaded(loaded)
            log.info("loaded %s with %s in %.1fs", loaded.name, name, loaded.load_seconds)
            return loaded

    def _load_locked(self, path: Path, loader_name: str, options: Any,
                     progress: LoadListener | None = None) -> LoadedModel:
        start = time.perf_counter()
        tracker = LoadTracker(model_display_name(path), progress)
        self._loading = tracker
        try:
            tracker.start()
            model = loaders.get(loader_name).load(path, options, tracker)
            tracker.finish()
        finally:
            self._loading = None
        return LoadedModel(model_display_name(path), path, loader_name, options, model,
                           time.perf_counter() - start)

    def _restore(self, previous: LoadedModel, progress: LoadListener | None = None) -> None:
        try:
            self._loaded(self._load_locked(previous.path, previous.loader, previous.options, progress))
        except Exception as e:  # the file vanished meanwhile: nothing else we can do
            log.error("could not reload %s: %s", previous.name, load_failure(e, previous.path))
            self._current = None

    def unload(self) -> None:
        """Unload the model; one unloaded for being idle is forgotten too (an explicit
        unload is never undone by the next request)."""
        with self._lock:
            self._unload_locked()
            self._parked = None

    def set_adapters(self, adapters: Sequence[AdapterSpec]) -> LoadedModel:
        """Apply exactly these LoRA adapters to the loaded model without reloading it
        (after the reply being generated, if any); one that cannot be applied changes
        nothing. The model's `lora` option then lists them, so a failed load that
        restores this model restores its adapters too."""
        with self._held():
            if self._current is None and self._parked is not None:
                self._resume_locked()
            loaded = self._current
            if loaded is None:
                raise NoModelLoaded("no model is loaded: load one in the Model tab")
            if not takes_adapters(loaded.options):
                raise AdapterError(f"the {loaded.loader} loader applies no LoRA adapters; llama.cpp (GGUF LoRA "
                                   f"files) and Transformers (PEFT adapter folders) do")
            loaded.model.set_adapters(adapters)
            options = dataclasses.replace(loaded.options, lora=tuple(a.entry for a in adapters))
            self._current = dataclasses.replace(loaded, options=options)
            return self._current

    @contextlib.contextmanager
    def borrow(self) -> Iterator[LoadedModel]:
        """The loaded model for a read that does not drive it, such as tokenizing: it
        does not wait for the reply being generated; the model is not unloaded until
        the read ends."""
        self.resume()
        with self._borrowed:
            loaded = self._current
            if loaded is None:
                raise NoModelLoaded("no model is loaded: load one in the Model tab")
            self._borrowers += 1
        try:
            yield loaded
        finally:
            with self._borrowed:
                self._borrowers -= 1
                self._last_used = time.monotonic()
                self._borrowed.notify_all()

    def _unload_locked(self) -> None:
        with self._borrowed:
            while self._borrowers:
                self._borrowed.wait()
            current, self._current = self._current, None
        if current is not None:
            current.model.unload()
            gc.collect()
