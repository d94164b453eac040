"""The Quant advisor tab in a real Chromium: Run with nothing ticked is one line; with
the built-in model ticked, the progress line names the file and step, and Stop ends
the run (no file finished, so no row)."""
from __future__ import annotations

import pytest

from tests.browser.conftest import wait_text

pytestmark = pytest.mark.browser


def test_run_refuses_nothing_then_shows_progress_and_stops(page):
    page.get_by_role("tab", name="Quant advisor").click()
    page.click("#advisor-run")
    wait_text(page, "#advisor-status", "choose at least one GGUF file to measure")

    page.locator("#advisor-files").get_by_label("(built-in)", exact=False).check()
    page.get_by_text("Measuring").click()
    ctx = page.locator("#advisor-n_ctx input[type=number]")
    ctx.fill("64")  # short chunks: Stop is honoured between two of them
    ctx.blur()
    page.click("#advisor-run")
    # The step, not the chunk count: the context box's new value may reach the server
    # after the click (chunks of 64 make 26, the default 512 make 4), and Stop is
    # honoured between chunks either way.
    wait_text(page, "#advisor-progress", "(built-in): perplexity, chunk")
    page.click("#advisor-stop")
    wait_text(page, "#advisor-status", "Stopped: the rows measured so far are kept.")
    assert "stopped" in page.inner_text("#advisor-progress")
