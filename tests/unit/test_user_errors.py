"""Every error class in loaders/ and webui/ is a UserError (so it has a kind, and
each face can show it), except the few that never reach a user, named below.

The classes are found by importing every module, so a new exception class that
forgets the base fails here."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import loaders
import webui
from extensions.documents.chunking import DocumentError
from loaders.errors import UserError

# Not errors a user sees: each is caught and turned into something else first.
NOT_USER_ERRORS = {
    "webui.api.errors.APIError",  # the API face's rendering of an answer, made from a UserError
    "webui.api.messages.MessageError",  # the same, in Anthropic's error shape for /v1/messages
    "webui.extensions.manager._Skipped",  # a faulty hook, skipped inside the extension manager
    "webui.extensions.runner.HookTimeout",  # a hung hook, reported as the extension's fault
    # The render pool's signals about its own child process; each becomes a ChatTemplateError.
    "webui.chat.render_pool._Stopped",
    "webui.chat.render_pool._TimedOut",
    "webui.chat.render_pool._Gone",
    "webui.chat.render_pool._GoneBefore",
}
WEB_FRAMEWORKS = {"gradio", "fastapi", "starlette", "uvicorn"}
NOT_IMPORTABLE = {"webui.__main__"}  # runs the app


def _modules():
    for package in (loaders, webui):
        yield package
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name in NOT_IMPORTABLE:
                continue
            try:
                yield importlib.import_module(info.name)
            except ModuleNotFoundError as e:  # a face, where its framework is not installed
                if (e.name or "").split(".")[0] not in WEB_FRAMEWORKS:
                    raise


def _exception_classes() -> dict[str, type]:
    found = {}
    for module in _modules():
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == module.__name__:
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return found


def test_every_error_class_is_a_user_error():
    classes = _exception_classes()
    assert "loaders.base.LoadError" in classes and "webui.chat.histories.HistoryError" in classes
    missing = sorted(name for name, cls in classes.items()
                     if name not in NOT_USER_ERRORS and not issubclass(cls, UserError))
    assert not missing, f"derive these from UserError (loaders.errors), with their kind: {missing}"


def test_the_exceptions_to_the_rule_still_exist():
    classes = _exception_classes()
    gone = sorted(n for n in NOT_USER_ERRORS if n not in classes and not n.startswith("webui.api."))
    assert not gone, f"remove from NOT_USER_ERRORS: {gone}"


def test_a_shipped_extensions_errors_are_user_errors_too():
    assert issubclass(DocumentError, UserError)
