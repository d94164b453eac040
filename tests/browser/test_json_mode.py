"""JSON mode in the Parameters tab, in a real Chromium against a real server (the
built-in model, greedy): a JSON schema typed there constrains the Chat's and the
Notebook's replies; a schema that is not JSON gets a one-line notice."""
from __future__ import annotations

import json

import jsonschema
import pytest

from tests.browser.conftest import STATUS_HAS, complete_in_notebook, reply_bubbles, send

SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                           "population": {"type": "integer"}},
          "required": ["city", "population"], "additionalProperties": False}


@pytest.fixture(scope="module")
def server(hearth_server):
    return hearth_server(presets={"greedy": "temperature: 0.0\nmax_new_tokens: 60\n"},
                         settings={"preset": "greedy", "mode": "instruct"})


def test_a_json_schema_constrains_chat_and_notebook_replies(open_page, server):
    page = open_page(server)
    page.get_by_role("tab", name="Parameters").click()
    page.get_by_label("JSON schema", exact=True).first.check()  # the radio choice
    page.fill("#json-schema textarea", "{not json")
    page.wait_for_function("() => document.querySelector('#json-mode-status').innerText.includes('not valid JSON')")
    status = page.inner_text("#json-mode-status").strip()
    assert status.startswith("⚠️") and "\n" not in status
    page.fill("#json-schema textarea", json.dumps(SCHEMA))
    page.wait_for_function("() => document.querySelector('#json-mode-status').innerText.includes('Replies follow')")

    page.get_by_role("tab", name="Chat").click()
    send(page, "Name a large city and its population.")
    page.wait_for_function(STATUS_HAS, arg="tok/s")
    jsonschema.validate(json.loads(reply_bubbles(page).last.inner_text()), SCHEMA)

    prompt = "The largest city of France, as JSON:\n"
    text = complete_in_notebook(page, prompt)
    assert text.startswith(prompt)
    jsonschema.validate(json.loads(text[len(prompt):]), SCHEMA)
