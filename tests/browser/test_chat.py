"""The Chat tab in a real Chromium: streaming, Stop, and the Model tab's status."""
from tests.browser.conftest import BOT, STATUS_HAS, USER, reply_bubbles, send
from tests.support import ARTIFACTS

# Records, in the page, every length the last reply has had: proof that the reply
# arrived in pieces (streamed), not at once. The context-budget block folded under a
# finished reply is a bot message too, and is left out (as reply_bubbles does).
RECORD_LENGTHS = """() => {
  window.__lengths = [];
  const chat = document.querySelector('#chat');
  new MutationObserver(() => {
    const bots = [...chat.querySelectorAll("[data-testid='bot']")].filter(b => !b.innerText.includes('Context: '));
    if (!bots.length) return;
    const n = bots[bots.length - 1].innerText.length;
    const seen = window.__lengths;
    if (!seen.length || seen[seen.length - 1] !== n) seen.push(n);
  }).observe(chat, {childList: true, subtree: true, characterData: true});
}"""


def test_reply_streams_into_the_page(page):
    page.evaluate(RECORD_LENGTHS)
    send(page, "Write a short poem about the sea.")
    # Up to the default 512 tokens: minutes at worst on a machine shared with other runs.
    page.wait_for_function(STATUS_HAS, arg="tok/s", timeout=180_000)
    lengths = page.evaluate("window.__lengths")
    final = reply_bubbles(page).last.inner_text()
    assert final.strip()
    growing = [n for n in lengths if 0 < n < len(final)]
    assert len(growing) >= 3, f"the reply did not stream: lengths seen {lengths}"
    assert page.locator(USER).last.inner_text().strip() == "Write a short poem about the sea."
    assert page.input_value("#chat-input textarea") == ""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat-streamed.png"), full_page=True)


def test_stop_during_a_long_reply(page):
    send(page, "Write a very long story about a dragon and a knight, in many chapters.")
    page.wait_for_function(f"() => {{ const b = document.querySelectorAll(\"{BOT}\"); "
                           "return b.length && b[b.length-1].innerText.length > 40; }")
    page.click("#chat-stop")
    page.wait_for_function(STATUS_HAS, arg="(stopped)")
    status = page.inner_text("#chat-status")
    tokens = int(status.split(" tokens")[0])
    assert tokens < 400, status  # far short of the 512-token limit
    stopped_text = reply_bubbles(page).last.inner_text()
    page.wait_for_timeout(700)
    assert reply_bubbles(page).last.inner_text() == stopped_text  # nothing more arrives
    page.screenshot(path=str(ARTIFACTS / "chat-stopped.png"), full_page=True)


def test_regenerate_and_clear(page):
    send(page, "Say hello.")
    page.wait_for_function(STATUS_HAS, arg="tok/s")
    before = page.inner_text("#chat-status")
    page.click("#chat-regenerate")
    page.wait_for_function("s => { const t = document.querySelector('#chat-status').innerText; "
                           "return t !== s && t.includes('tok/s'); }", arg=before)
    assert reply_bubbles(page).count() == 1
    assert page.locator(USER).count() == 1
    page.click("#chat-clear")
    page.wait_for_function("() => !document.querySelector(\"#chat [data-testid='user']\")")


def test_model_tab_shows_the_loaded_model(page):
    page.get_by_role("tab", name="Model").click()
    page.wait_for_selector("#model-status")
    assert "SmolLM2-135M-Instruct" in page.inner_text("#model-status")
    assert "llama.cpp" in page.inner_text("#model-status")
