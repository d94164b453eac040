"""Real Chromium (Debian's package) driven by Playwright against a real server.

What every browser test shares: the browser, the session's server (`app_url`, `page`),
`hearth_server` (a module's own server with its own user data folder), `open_page`
(a new page that has taken the saved settings: the preset, the chat mode, the
character), and the chat's selectors."""
from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from tests.support import ARTIFACTS, running_server

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1200, "height": 900}
# How long a page waits for anything by default: an 8-token reply took over 30 s while
# other test runs and benchmarks shared the 2 cores (load average 10).
PAGE_TIMEOUT_MS = 60_000

BOT = "#chat [data-testid='bot']"
USER = "#chat [data-testid='user']"
STATUS_HAS = "s => document.querySelector('#chat-status').innerText.includes(s)"


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Debian's chromium is not installed (./test.sh installs it)"
    return path


class Server(NamedTuple):
    url: str
    user_data: Path


def write_user_data(folder: Path, settings: dict | None = None, presets: dict[str, str] | None = None,
                    files: dict[str, str | bytes] | None = None) -> Path:
    """Fill a user data folder: settings.yaml, presets/NAME.yaml (their YAML text) and
    any other files by their path in the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    texts: dict[str, str | bytes] = {f"presets/{name}.yaml": text for name, text in (presets or {}).items()}
    if settings is not None:
        texts["settings.yaml"] = yaml.safe_dump(settings, sort_keys=False)
    for relative, content in {**texts, **(files or {})}.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return folder


def saved_settings(server: Server) -> dict:
    """The settings the server's user data folder holds now (a test may change them)."""
    path = server.user_data / "settings.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def settle(page, preset: str | None = None, mode: str | None = None, character: str | None = None) -> None:
    """Wait until the page-load events have put the saved settings into the controls, so
    what the test does next runs with them (a reply sent earlier would use the defaults,
    not the greedy preset). Tabs are drawn when first shown: the preset is read in the
    Parameters tab, then the page goes back to the Chat tab."""
    if character:
        page.wait_for_function("c => document.querySelector('#chat-character input')?.value === c", arg=character)
    if preset:
        page.get_by_role("tab", name="Parameters").click()
        page.wait_for_function("p => document.querySelector('#preset-choice input')?.value === p", arg=preset)
        page.get_by_role("tab", name="Chat").click()
    if mode:
        page.wait_for_function("m => document.querySelector('#chat-mode input:checked')?.value === m", arg=mode)


def reply_bubbles(page):
    """The bot's replies in the chat, less the folded context-budget block under a reply."""
    return page.locator(BOT).filter(has_not_text="Context: ")


def send(page, text: str) -> None:
    page.fill("#chat-input textarea", text)
    page.press("#chat-input textarea", "Enter")


def complete_in_notebook(page, prompt: str) -> str:
    """Generate in the Notebook tab from `prompt`; the notebook's text once it is done."""
    page.get_by_role("tab", name="Notebook").click()
    page.fill("#notebook-text textarea", prompt)
    page.click("#notebook-generate")
    page.wait_for_function("() => document.querySelector('#notebook-status').innerText.includes('tok/s')")
    return page.input_value("#notebook-text textarea")


def wait_text(page, selector: str, needle: str, timeout: float = 60_000) -> None:
    """Wait until the element's text includes `needle`."""
    page.wait_for_function("([s, n]) => (document.querySelector(s)?.innerText || '').includes(n)",
                           arg=[selector, needle], timeout=timeout)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def app_url():
    """A Hearth server with the built-in model, shared by the browser tests."""
    with running_server("--n-ctx", "2048") as url:
        yield url


@pytest.fixture(scope="module")
def hearth_server(tmp_path_factory) -> Iterator[Callable[..., Server]]:
    """Start this module's own server: `hearth_server(*flags, settings=..., presets=...,
    files=..., user_data=..., env=..., n_ctx=...)` fills a fresh user data folder (or
    `user_data`, which the caller may have prepared), starts `python -m webui --n-ctx
    2048 *flags` on it and returns a Server; the servers it started stop when the
    module's tests are done."""
    with ExitStack() as servers:
        def start(*flags: str, settings: dict | None = None, presets: dict[str, str] | None = None,
                  files: dict[str, str | bytes] | None = None, user_data: Path | None = None,
                  env: dict | None = None, n_ctx: int = 2048) -> Server:
            folder = write_user_data(user_data or tmp_path_factory.mktemp("user_data"), settings, presets, files)
            size = () if "--no-model" in flags else ("--n-ctx", str(n_ctx))
            url = servers.enter_context(
                running_server(*size, *flags, env={**(env or {}), "HEARTH_USER_DATA": str(folder)}))
            return Server(url, folder)

        yield start


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test, so a fixture's teardown knows it failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


def keep_failed_pages(test_name: str, contexts) -> None:
    """A failed test's pages as they were: a screenshot and the HTML of each, in
    test-artifacts/ (a timeout says what was not there, not what was)."""
    ARTIFACTS.mkdir(exist_ok=True)
    for i, context in enumerate(contexts):
        for j, pg in enumerate(context.pages):
            stem = ARTIFACTS / f"{test_name}-page{i}.{j}"
            try:
                pg.screenshot(path=f"{stem}.png", full_page=True)
                Path(f"{stem}.html").write_text(pg.content())
            except Exception as e:  # a page that crashed: keep what can be kept
                Path(f"{stem}.txt").write_text(f"could not keep the page: {e}")


@pytest.fixture
def open_page(browser, request) -> Iterator[Callable[..., object]]:
    """Open a page on a server in a browser context of its own and wait until it is
    ready: the chat's input is there and (for a Server) the saved preset, chat mode and
    character are in the controls. `preset`/`mode`/`character` wait for those instead;
    `ready=False` waits for nothing (a login page). Every context it opened closes when
    the test ends."""
    contexts = []

    def open_(server: Server | str, *, preset: str | None = None, mode: str | None = None,
              character: str | None = None, ready: bool = True, timeout_ms: float = PAGE_TIMEOUT_MS,
              viewport: dict | None = None, **context_options):
        context = browser.new_context(viewport=viewport or VIEWPORT, **context_options)
        contexts.append(context)
        pg = context.new_page()
        pg.set_default_timeout(timeout_ms)
        pg.goto(server.url if isinstance(server, Server) else server)
        if ready:
            pg.wait_for_selector("#chat-input textarea")
            saved = saved_settings(server) if isinstance(server, Server) else {}
            settle(pg, preset or saved.get("preset"), mode or saved.get("mode"),
                   character or saved.get("character"))
        return pg

    yield open_
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        keep_failed_pages(request.node.name, contexts)
    for context in contexts:
        context.close()


@pytest.fixture
def page(open_page, app_url):
    """A page on the session's shared server."""
    return open_page(app_url)
