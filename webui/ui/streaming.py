"""Drive a generation job for a Gradio generator handler: text as it comes, then a
one-line status (speed, or the error)."""
from __future__ import annotations

import time
from typing import Iterator

from webui.runtime.generation import Failed, Finished, GenerationJob


# Why: every UI update costs a Gradio diff on the server and a markdown re-render in
# the browser. Per token that is ~100 updates/s, which on a small machine steals the
# CPU the model needs. 20 updates/s reads as smooth; tokens that arrive in between
# are sent together with the next update.
UPDATE_INTERVAL_S = 0.05


def stream_job(job: GenerationJob, interval: float = UPDATE_INTERVAL_S) -> Iterator[tuple[str, str | None]]:
    """Yield (text so far, status): status is None while streaming, then the final
    line. If the consumer goes away (browser closed), the job is cancelled."""
    text = ""
    done = False
    try:
        for item in job.stream_batches():
            if isinstance(item, str):
                text += item
                yield text, None
                time.sleep(interval)  # let the next pieces gather
            elif isinstance(item, Failed):
                done = True
                yield text, f"⚠️ {item.message}"
            elif isinstance(item, Finished):
                done = True
                s = item.stats
                note = " (stopped)" if s.finish_reason == "cancelled" else ""
                yield text, f"{s.summary()}{note}"
    finally:
        if not done:
            job.stop()
