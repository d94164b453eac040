"""Does the browser keep up with the model? A long reply (1,000 tokens) streamed
into a real Chromium (Debian's, driven by Playwright) against a real Hearth server.

In the page, a MutationObserver timestamps every change of the reply's length. We
compare the characters per second that reach the page with the characters per
second the model produced (from the server's own stats), and the page's rate in
the reply's first half with its second half (a UI that re-sends the whole
conversation on every update slows down as the reply grows).

    .venv/bin/python bench/browser_stream.py [--tokens 1000] [-- extra hearth flags]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.browser.conftest import CHROMIUM_ARGS, chromium_path  # noqa: E402
from tests.support import running_server  # noqa: E402

RECORD = """() => {
  window.__t = [];
  const chat = document.querySelector('#chat');
  new MutationObserver(() => {
    const bots = chat.querySelectorAll("[data-testid='bot']");
    if (!bots.length) return;
    const n = bots[bots.length - 1].innerText.length;
    const t = window.__t;
    if (!t.length || t[t.length - 1][1] !== n) t.push([performance.now(), n]);
  }).observe(chat, {childList: true, subtree: true, characterData: true});
}"""


def rate(points):
    (t0, n0), (t1, n1) = points[0], points[-1]
    return (n1 - n0) / ((t1 - t0) / 1000) if t1 > t0 else 0.0


def model_alone_halves(tokens: int) -> float:
    """The model's own second-half/first-half character rate on the same request,
    without a browser: how much of any slowdown is the model's, not the UI's."""
    import time

    from loaders.params import GenerationParams
    from webui.hearth import Hearth
    from webui.runtime.generation import Delta

    core = Hearth()
    core.load_model(None, "llama.cpp", {"n_ctx": 2048})
    job = core.chat([{"role": "user", "content": PROMPT}],
                    GenerationParams(max_new_tokens=tokens, ignore_eos=True))
    points, n = [], 0
    for event in job.events():
        if isinstance(event, Delta):
            n += len(event.text)
            points.append((time.perf_counter() * 1000, n))
    core.unload_model()
    half = next(i for i, (_, c) in enumerate(points) if c >= n / 2)
    return rate(points[half:]) / rate(points[: half + 1])


PROMPT = "Write a very long story about a lighthouse keeper and the sea."


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=1000)
    ap.add_argument("hearth_args", nargs="*")
    args = ap.parse_args()
    with running_server("--n-ctx", "2048", *args.hearth_args) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.set_default_timeout(120_000)
        page.goto(url)
        page.get_by_role("tab", name="Parameters").click()
        box = page.locator("#param-max_new_tokens input[type=number]")
        box.fill(str(args.tokens))
        box.press("Enter")
        ignore = page.locator("#param-ignore_eos input[type=checkbox]")
        page.get_by_text("Advanced samplers").click()
        ignore.check()
        page.get_by_role("tab", name="Chat").click()
        page.evaluate(RECORD)
        page.fill("#chat-input textarea", PROMPT)
        page.press("#chat-input textarea", "Enter")
        page.wait_for_function("() => document.querySelector('#chat-status').innerText.includes('tok/s')")
        status = page.inner_text("#chat-status")
        points = page.evaluate("window.__t")
        browser.close()
    tokens = int(status.split(" tokens")[0])
    model_tps = float(status.split(" tokens, ")[1].split(" tok/s")[0])
    chars = points[-1][1]
    model_cps = chars / ((tokens - 1) / model_tps)
    page_cps = rate(points)
    half = next(i for i, (_, n) in enumerate(points) if n >= chars / 2)
    first, second = rate(points[: half + 1]), rate(points[half:])
    print(f"status line: {status}")
    print(f"page updates: {len(points)}, final reply {chars} chars, {tokens} tokens")
    print(f"model produced {model_cps:.0f} chars/s; page received {page_cps:.0f} chars/s; "
          f"ratio {page_cps / model_cps:.3f}")
    print(f"page rate, first half {first:.0f} chars/s, second half {second:.0f} chars/s; "
          f"second/first {second / first:.3f}")
    print(f"the model alone on the same request: second/first {model_alone_halves(args.tokens):.3f}")


if __name__ == "__main__":
    main()
