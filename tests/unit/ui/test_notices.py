"""The UI face: a failed reply is known by its event (not by how its status line
begins), and every error becomes one notice line."""
from __future__ import annotations

import pytest

pytest.importorskip("gradio")

from loaders.base import GenerationError  # noqa: E402
from loaders.errors import ErrorKind, UserError  # noqa: E402
from loaders.params import GenerationParams  # noqa: E402
from webui.runtime.generation import Delta, Failed, GenerationJob  # noqa: E402
from webui.ui.notices import notice  # noqa: E402
from webui.ui.streaming import end_status, stream_job  # noqa: E402


def test_a_notice_is_one_line():
    assert notice(GenerationError("the engine at http://x\nanswered 500")) == "⚠️ the engine at http://x answered 500"
    assert notice(OSError("disk full"), "Not imported: ") == "⚠️ Not imported: disk full"


def test_a_bug_says_where_its_details_are():
    text = notice(UserError("generation failed: KeyError: 'x'", kind=ErrorKind.INTERNAL))
    assert text.startswith("⚠️ generation failed: KeyError: 'x'") and "log" in text


def test_a_failed_job_ends_with_its_event_and_error():
    job = GenerationJob("hi", GenerationParams())
    error = GenerationError("the prompt is empty")
    job.emit(Delta("so far"))
    job.emit(Failed(error))
    updates = list(stream_job(job, interval=0))
    text, end = updates[-1]
    assert text == "so far" and isinstance(end, Failed) and end.error is error
    assert end_status(end) == "⚠️ the prompt is empty"
