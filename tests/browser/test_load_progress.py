"""The Model tab's progress bar in a real Chromium: while a model loads, the status
line shows how far the load has got and the time left, then the loaded model.

Loads the built-in model again in the shared server with the context it started
with (2048), so the browser tests after this one find the model they expect. With
use_mmap off llama.cpp reads the whole file instead of mapping it."""
from __future__ import annotations

import re

# Records every text the status line shows while Gradio's tracker over it is busy,
# however briefly (the 135M model loads in well under a second on a free machine),
# and when the tracker is hidden again: the load's event has ended.
WATCH_STATUS = """() => {
  window.__loadTexts = [];
  window.__loadEnded = false;
  const status = document.querySelector('#model-status');
  let busy = false;
  new MutationObserver(() => {
    const tracker = status.querySelector('[data-testid=status-tracker]');
    const hidden = !tracker || tracker.classList.contains('hide');
    if (!hidden) { busy = true; window.__loadTexts.push(status.innerText); }
    else if (busy) { window.__loadEnded = true; }
  }).observe(status, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def test_load_shows_progress_and_time_left_then_the_loaded_model(page):
    page.get_by_role("tab", name="Model").click()
    page.wait_for_selector("#model-status")
    box = page.locator("#model-choice input")
    box.fill("SmolLM2-135M-Instruct-Q4_1 (built-in)")
    box.press("Enter")
    ctx = page.locator("#opt-llamacpp-n_ctx input[type=number]")
    ctx.fill("2048")
    ctx.press("Enter")
    page.locator("#opt-llamacpp-use_mmap input").uncheck()
    page.evaluate(WATCH_STATUS)
    page.click("#model-load")
    page.wait_for_function("() => window.__loadEnded", timeout=60_000)

    shown = [m for t in page.evaluate("window.__loadTexts")
             for m in re.findall(r"Loading SmolLM2\S* \(built-in\): (\d+)% \(([^)]+)\), ([^\n]+?) - ", t)]
    percents = [int(p) for p, _, _ in shown]
    assert any(phase == "reading weights" and 0 < int(p) < 100 for p, phase, _ in shown), shown
    assert percents == sorted(percents), shown  # never goes back
    assert any(re.fullmatch(r"about [\d.]+ s left", left) for _, _, left in shown), shown
    status = page.inner_text("#model-status")
    assert "Loaded:" in status and "context 2048 tokens" in status and "Loading" not in status
