"""With --auth the UI asks for a login before showing anything (real Chromium).

The server stays on 127.0.0.1: --auth alone turns the login on, so nothing needs to
listen beyond loopback to test it."""
from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.browser
USER, PASSWORD = "alice", "wonder land"


@pytest.fixture(scope="module")
def guarded_url(hearth_server):
    return hearth_server("--no-model", "--auth", f"{USER}:{PASSWORD}").url


@pytest.fixture
def fresh_page(open_page, guarded_url):
    return open_page(guarded_url, ready=False)  # the login form, not the chat


def log_in(page, user: str, password: str) -> None:
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()


def test_the_ui_asks_for_a_login_first(fresh_page, guarded_url):
    page = fresh_page
    page.get_by_role("button", name="Login").wait_for()
    assert page.locator("#chat-input").count() == 0
    # Gradio's own endpoints are closed too, not only the page.
    assert httpx.get(guarded_url + "/config", timeout=30).status_code == 401


def test_a_wrong_password_is_refused(fresh_page):
    page = fresh_page
    log_in(page, USER, "not it")
    page.get_by_text("Incorrect Credentials").wait_for()
    assert page.locator("#chat-input").count() == 0


def test_the_right_login_opens_the_ui(fresh_page):
    page = fresh_page
    log_in(page, USER, PASSWORD)
    page.wait_for_selector("#chat-input textarea")
    page.get_by_role("tab", name="Model").wait_for()
