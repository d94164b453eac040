"""JSON mode in the Parameters tab, in a real Chromium against a real server (the
built-in model, greedy): a JSON schema typed there constrains the Chat's and the
Notebook's replies; a schema that is not JSON gets a one-line notice."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from tests.support import running_server

SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                           "population": {"type": "integer"}},
          "required": ["city", "population"], "additionalProperties": False}
BOT = "#chat [data-testid='bot']"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder: Path = tmp_path_factory.mktemp("user_data")
    (folder / "presets").mkdir()
    (folder / "presets" / "greedy.yaml").write_text("temperature: 0.0\nmax_new_tokens: 60\n")
    (folder / "settings.yaml").write_text("preset: greedy\nmode: instruct\n")
    with running_server("--n-ctx", "2048", env={"HEARTH_USER_DATA": str(folder)}) as url:
        yield url


def test_a_json_schema_constrains_chat_and_notebook_replies(browser, server):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(server)
        page.wait_for_selector("#chat-input textarea")
        page.get_by_role("tab", name="Parameters").click()
        page.wait_for_function("() => document.querySelector('#preset-choice input')?.value === 'greedy'")

        page.get_by_label("JSON schema", exact=True).first.check()  # the radio choice
        page.fill("#json-schema textarea", "{not json")
        page.wait_for_function("() => document.querySelector('#json-mode-status').innerText.includes('not valid JSON')")
        status = page.inner_text("#json-mode-status").strip()
        assert status.startswith("⚠️") and "\n" not in status
        page.fill("#json-schema textarea", json.dumps(SCHEMA))
        page.wait_for_function("() => document.querySelector('#json-mode-status').innerText.includes('Replies follow')")

        page.get_by_role("tab", name="Chat").click()
        page.fill("#chat-input textarea", "Name a large city and its population.")
        page.press("#chat-input textarea", "Enter")
        page.wait_for_function("() => document.querySelector('#chat-status').innerText.includes('tok/s')")
        jsonschema.validate(json.loads(page.locator(BOT).filter(has_not_text="Context: ").last.inner_text()), SCHEMA)

        page.get_by_role("tab", name="Notebook").click()
        prompt = "The largest city of France, as JSON:\n"
        page.fill("#notebook-text textarea", prompt)
        page.click("#notebook-generate")
        page.wait_for_function("() => document.querySelector('#notebook-status').innerText.includes('tok/s')")
        text = page.input_value("#notebook-text textarea")
        assert text.startswith(prompt)
        jsonschema.validate(json.loads(text[len(prompt):]), SCHEMA)
    finally:
        context.close()
