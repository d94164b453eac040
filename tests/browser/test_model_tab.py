"""The Model tab in a real Chromium: a failed load says why in one line and keeps the
previous model; a good load applies the options generated from LlamaCppOptions.

Uses its own server: it changes which model is loaded."""
import pytest

from tests.browser.conftest import STATUS_HAS, send


@pytest.fixture(scope="module")
def own_url(hearth_server):
    return hearth_server().url


@pytest.fixture
def model_page(open_page, own_url):
    page = open_page(own_url, viewport={"width": 1200, "height": 1000})
    page.get_by_role("tab", name="Model").click()
    page.wait_for_selector("#model-status")
    return page


def choose_model(page, text):
    box = page.locator("#model-choice input")
    box.fill(text)
    box.press("Enter")


def test_failed_load_keeps_the_previous_model(model_page):
    page = model_page
    choose_model(page, "/nowhere/missing.gguf")
    page.click("#model-load")
    page.wait_for_function("() => document.querySelector('#model-status').innerText.includes('⚠️')")
    status = page.inner_text("#model-status")
    assert "no such file" in status and "SmolLM2" in status  # the error, and what stays loaded
    page.get_by_role("tab", name="Chat").click()
    send(page, "Hello!")
    page.wait_for_function(STATUS_HAS, arg="tok/s")


def test_load_with_generated_options_and_show_speed(model_page):
    page = model_page
    choose_model(page, "SmolLM2-135M-Instruct-Q4_1 (built-in)")
    ctx = page.locator("#opt-llamacpp-n_ctx input[type=number]")
    ctx.fill("1024")
    ctx.press("Enter")
    page.click("#model-load")
    page.wait_for_function("() => document.querySelector('#model-status').innerText.includes('context 1024 tokens')")
    page.get_by_role("tab", name="Chat").click()
    send(page, "Hi")
    page.wait_for_function(STATUS_HAS, arg="tok/s")
    page.get_by_role("tab", name="Model").click()
    page.wait_for_function("() => document.querySelector('#model-status').innerText.includes('Last reply')")
