"""The Model tab in a real Chromium: a failed load says why in one line and keeps the
previous model; a good load applies the options generated from LlamaCppOptions.

Uses its own server: it changes which model is loaded."""
import pytest

from tests.support import running_server


@pytest.fixture(scope="module")
def own_url():
    with running_server("--n-ctx", "2048") as url:
        yield url


@pytest.fixture
def model_page(browser, own_url):
    context = browser.new_context(viewport={"width": 1200, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(own_url)
    page.get_by_role("tab", name="Model").click()
    page.wait_for_selector("#model-status")
    yield page
    context.close()


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
    page.fill("#chat-input textarea", "Hello!")
    page.press("#chat-input textarea", "Enter")
    page.wait_for_function("() => document.querySelector('#chat-status').innerText.includes('tok/s')")


def test_load_with_generated_options_and_show_speed(model_page):
    page = model_page
    choose_model(page, "SmolLM2-135M-Instruct-Q4_1 (built-in)")
    ctx = page.locator("#opt-llamacpp-n_ctx input[type=number]")
    ctx.fill("1024")
    ctx.press("Enter")
    page.click("#model-load")
    page.wait_for_function("() => document.querySelector('#model-status').innerText.includes('context 1024 tokens')")
    page.get_by_role("tab", name="Chat").click()
    page.fill("#chat-input textarea", "Hi")
    page.press("#chat-input textarea", "Enter")
    page.wait_for_function("() => document.querySelector('#chat-status').innerText.includes('tok/s')")
    page.get_by_role("tab", name="Model").click()
    page.wait_for_function("() => document.querySelector('#model-status').innerText.includes('Last reply')")
