"""What one browser session owns: its conversation and its running reply."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from webui.runtime.generation import GenerationJob


@dataclass
class BrowserSession:
    messages: list[dict[str, Any]] = field(default_factory=list)
    job: GenerationJob | None = None
    notebook_job: GenerationJob | None = None

    def stop(self) -> None:
        for job in (self.job, self.notebook_job):
            if job is not None:
                job.stop()

    def __deepcopy__(self, memo):
        # Gradio deep-copies a State's initial value per session; a running job
        # (threads, queues) must never be copied, and a new session starts empty.
        return BrowserSession(messages=[dict(m) for m in self.messages])
