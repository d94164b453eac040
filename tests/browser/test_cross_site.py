"""Web pages on other origins cannot drive Hearth (real Chromium, a real server).

An attacker's page is served by a tiny http.server on another local port, the
set-up in which a page open in the same browser is most dangerous: same machine,
same site, another origin. It submits a form to unload the model, fetch()es the API
and the UI's own endpoints to load a model and read the saved chats; all of it fails,
while the real UI on its own origin keeps working. A DNS-rebinding page (a name the
attacker owns, resolved to 127.0.0.1) is refused by the Host check."""
from __future__ import annotations

import functools
import threading
import uuid
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.browser.conftest import BOT, CHROMIUM_ARGS, STATUS_HAS, USER, VIEWPORT, chromium_path, send

pytestmark = pytest.mark.browser
BUILT_IN = "SmolLM2-135M-Instruct-Q4_1 (built-in)"

ATTACK_PAGE = """<!doctype html>
<html><body>
<form id="unload" method="post" action="{hearth}/v1/internal/model/unload" enctype="text/plain">
  <input type="hidden" name="x" value="y"><button type="submit">Win a prize</button>
</form>
<script>
async function attack(marker) {{
  const base = "{hearth}";
  const out = {{join: [], leaked: false}};
  const timeout = () => AbortSignal.timeout(5000);
  try {{
    const r = await fetch(base + "/v1/internal/model/load", {{method: "POST", signal: timeout(),
      headers: {{"Content-Type": "application/json"}}, body: JSON.stringify({{model_name: "", args: {{n_ctx: 256}}}})}});
    out.load = "status " + r.status;
  }} catch (e) {{ out.load = "blocked"; }}
  try {{  // a "simple" request: no preflight, and its answer is opaque; only the server can refuse it
    await fetch(base + "/v1/internal/model/unload", {{method: "POST", mode: "no-cors", signal: timeout()}});
    out.unload = "sent";
  }} catch (e) {{ out.unload = "blocked"; }}
  let config = null;
  try {{
    config = await (await fetch(base + "/config", {{signal: timeout()}})).json();
    out.config = "read";
  }} catch (e) {{ out.config = "blocked"; }}
  // Call the UI's own handlers through Gradio's queue, and look for the saved chat.
  const fns = config ? config.dependencies.map((d, i) => [d.id ?? i, d.inputs.length]) : [[0, 0], [1, 0], [2, 0]];
  for (const [fn, n] of fns.slice(0, 60)) {{
    const hash = Math.random().toString(36).slice(2);
    try {{
      const r = await fetch(base + "/gradio_api/queue/join", {{method: "POST", signal: timeout(),
        headers: {{"Content-Type": "application/json"}},
        body: JSON.stringify({{fn_index: fn, data: Array(n).fill(null), session_hash: hash, trigger_id: null}})}});
      out.join.push("status " + r.status);
      const data = await (await fetch(base + "/gradio_api/queue/data?session_hash=" + hash,
                                      {{signal: timeout()}})).text();
      if (data.includes(marker)) out.leaked = true;
    }} catch (e) {{ out.join.push("blocked"); }}
  }}
  return out;
}}
</script>
</body></html>
"""


@pytest.fixture(scope="module")
def hearth_url(hearth_server):
    return hearth_server(n_ctx=1024).url


@pytest.fixture(scope="module")
def attacker_url(hearth_url, tmp_path_factory):
    """The attacker's site: another port of this machine."""
    folder = tmp_path_factory.mktemp("attacker")
    (folder / "attack.html").write_text(ATTACK_PAGE.format(hearth=hearth_url))

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    site = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=site.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{site.server_address[1]}"
    site.shutdown()
    site.server_close()


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport=VIEWPORT)
    yield ctx
    ctx.close()


def loaded_model(url: str) -> tuple[str | None, int | None]:
    info = httpx.get(url + "/v1/internal/model/info", timeout=30).json()
    return info["model_name"], info["context_length"]


def chat_in_the_real_ui(context, hearth_url: str, text: str) -> None:
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(hearth_url)
    send(page, text)
    page.wait_for_function(STATUS_HAS, arg="tok/s")
    assert page.locator(USER).last.inner_text().strip() == text
    assert page.locator(BOT).last.inner_text().strip()
    page.close()


def test_a_page_on_another_port_cannot_unload_the_model_or_read_chats(context, hearth_url, attacker_url):
    marker = f"My secret is {uuid.uuid4().hex[:8]}."
    chat_in_the_real_ui(context, hearth_url, marker)  # a saved chat worth stealing

    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(attacker_url + "/attack.html")
    result = page.evaluate("marker => attack(marker)", marker)
    # Not reloaded with another context (a refused preflight stops the request itself),
    # nor unloaded by the no-cors fetch.
    assert loaded_model(hearth_url) == (BUILT_IN, 1024)
    assert result["load"] == "blocked"
    assert result["config"] == "blocked"  # the UI's config is not readable from there
    assert result["join"] and set(result["join"]) == {"blocked"}
    assert result["leaked"] is False
    # The form navigates the tab to the server's answer: a refusal.
    with page.expect_navigation():
        page.click("#unload button")
    assert "cross_site_request" in page.inner_text("body")
    page.close()

    assert loaded_model(hearth_url) == (BUILT_IN, 1024)  # nor by the form
    chat_in_the_real_ui(context, hearth_url, "Say hello.")  # the real UI still works


def test_a_rebound_host_name_is_refused(browser, hearth_url):
    """DNS rebinding, with Chromium's resolver pointing a foreign name at 127.0.0.1."""
    port = hearth_url.rsplit(":", 1)[1]
    rebinding = browser.browser_type.launch(executable_path=chromium_path(), args=[
        *CHROMIUM_ARGS, "--host-resolver-rules=MAP rebind.test 127.0.0.1", "--disable-features=HttpsUpgrades"])
    try:
        page = rebinding.new_page()
        answer = page.goto(f"http://rebind.test:{port}/")
        assert answer.status == 400
        assert "unknown_host" in page.inner_text("body")
        assert page.locator("#chat-input").count() == 0
    finally:
        rebinding.close()
    assert loaded_model(hearth_url) == (BUILT_IN, 1024)
