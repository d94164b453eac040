"""Drive a generation job for a Gradio generator handler: text as it comes, then the
event that ended it (Finished or Failed), which `end_status` turns into one line."""
from __future__ import annotations

import time
from collections.abc import Iterator

from webui.runtime.generation import Failed, Finished, GenerationJob
from webui.ui.notices import notice

# Why: every UI update costs a Gradio diff on the server and a markdown re-render in
# the browser. Per token that is ~100 updates/s, which on a small machine steals the
# CPU the model needs. 20 updates/s reads as smooth; tokens that arrive in between
# are sent together with the next update.
UPDATE_INTERVAL_S = 0.05


def stream_job(job: GenerationJob,
               interval: float = UPDATE_INTERVAL_S) -> Iterator[tuple[str, Finished | Failed | None]]:
    """Yield (text so far, end): end is None while streaming, then the Finished or
    Failed event. If the consumer goes away (browser closed), the job is cancelled."""
    text = ""
    done = False
    try:
        for item in job.stream_batches():
            if isinstance(item, str):
                text += item
                yield text, None
                time.sleep(interval)  # let the next pieces gather
            else:
                done = True
                yield text, item
    finally:
        if not done:
            job.stop()


def end_status(end: Finished | Failed) -> str:
    """The status line under a finished reply: its speed, or why it failed."""
    if isinstance(end, Failed):
        return notice(end.error)
    note = " (stopped)" if end.stats.finish_reason == "cancelled" else ""
    return f"{end.stats.summary()}{note}"
