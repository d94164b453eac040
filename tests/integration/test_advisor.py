"""The quant advisor on real GGUF files through real llama.cpp: the built-in Q4_1
model and its Q8_0 / Q2_K requantizations (tests.model_factory). A short slice of the
built-in text, short chunks and short speed tests keep each file to a second or two."""
from __future__ import annotations

import math
import time

import pytest

from loaders import quant_quality
from loaders.params import GenerationParams
from tests.model_factory import requantized_gguf
from webui.app import advise_cli
from webui.errors import ErrorKind, UserError
from webui.modelfiles.advisor import AdvisorSettings, prepare
from webui.modelfiles.advisor_text import ADVISOR_TEXT
from webui.runtime.default_model import DEFAULT_MODEL_NAME

TEXT = ADVISOR_TEXT[:700]  # about 150 tokens: two chunks of 64
SMALL = AdvisorSettings(n_ctx=64, threads=1, prompt_tokens=32, generation_tokens=4)
TIMEOUT = 240


@pytest.fixture(scope="module")
def q8():
    return requantized_gguf("q8_0")


@pytest.fixture(scope="module")
def q2():
    return requantized_gguf("q2_k")


def test_table_waits_behind_a_reply_and_replies_wait_behind_it(hearth, default_model, q8, q2):
    before = hearth.complete("Once upon a time", GenerationParams(temperature=0, max_new_tokens=24, ignore_eos=True))
    run = hearth.advise([DEFAULT_MODEL_NAME, str(q2)], reference=str(q8), settings=SMALL, text=TEXT)
    after = hearth.complete("Once upon a time", GenerationParams(temperature=0, max_new_tokens=4, ignore_eos=True))
    with pytest.raises(UserError) as busy:  # one run at a time
        hearth.advise([DEFAULT_MODEL_NAME], settings=SMALL, text=TEXT)
    assert busy.value.kind is ErrorKind.CONFLICT

    _, first = before.result()
    _, last = after.result()
    assert run.wait(TIMEOUT) and run.state == "done", run.error
    first_ended = before.submitted_at + first.queued_seconds + first.prompt_seconds + first.generation_seconds
    last_started = after.submitted_at + last.queued_seconds
    assert run.started_at >= first_ended - 1e-6, "the advisor ran beside the reply before it"
    assert last_started >= run.finished_at - 1e-6, "the reply after it ran beside the advisor"

    ref, q4, low = run.rows
    assert [r.label for r in run.rows] == [str(q8), DEFAULT_MODEL_NAME, str(q2)]
    assert ref.is_reference and ref.quantization == "Q8_0" and q4.quantization == "Q4_1"
    assert 8 < ref.bits_per_weight < 9 and 4 < q4.bits_per_weight < ref.bits_per_weight
    for row in run.rows:
        m = row.measured
        assert m is not None, row.note
        assert 1 < m.perplexity < 1000 and math.isfinite(m.perplexity)
        assert m.scored_tokens == 2 * 31
        assert m.prompt_tokens_per_second > 0 and m.generation_tokens_per_second > 0
        assert m.kv_bytes and m.kv_bytes > 0
    # Q4_1 -> Q8_0 changed almost nothing; Q2_K moved the distributions far more.
    assert q4.measured.mean_kl < 0.05 and q4.measured.top1_agreement > 0.8
    assert low.measured.mean_kl > 5 * q4.measured.mean_kl
    assert low.measured.top1_agreement < q4.measured.top1_agreement
    cells = run.cells()
    assert cells[0][5] == "0 (reference)" and cells[1][0] == DEFAULT_MODEL_NAME
    assert run.headers()[7:9] == ["pp32 t/s", "tg4 t/s"]


def test_a_file_against_itself_has_no_divergence(default_model):
    kw = dict(n_ctx=32, threads=1, prompt_tokens=8, generation_tokens=2)
    ref = quant_quality.measure_file(default_model, TEXT[:200], keep_reference=True, **kw)
    again = quant_quality.measure_file(default_model, TEXT[:200], reference=ref.reference, **kw)
    assert again.mean_kl == pytest.approx(0.0, abs=1e-6) and again.top1_agreement == 1.0
    assert again.perplexity == pytest.approx(ref.perplexity, rel=1e-5)


def test_stop_ends_the_run_and_keeps_finished_rows(default_model, q8):
    stopped = []

    def on_progress(p):
        if p.label and p.index == 1 and not stopped:  # the second file has begun
            stopped.append(p.step)
            run.stop()

    run = prepare([(DEFAULT_MODEL_NAME, default_model), ("q8", q8)], settings=SMALL, text=TEXT,
                  on_progress=on_progress)
    start = time.perf_counter()
    run.execute()
    assert run.state == "stopped" and stopped == ["loading"]
    assert [r.label for r in run.rows] == [DEFAULT_MODEL_NAME]
    assert run.rows[0].measured is not None
    assert run.progress.line() == "stopped; the rows measured so far are kept"
    assert time.perf_counter() - start < TIMEOUT


def test_stop_while_queued_runs_nothing(hearth):
    run = prepare([(DEFAULT_MODEL_NAME, hearth.resolve_model(DEFAULT_MODEL_NAME))], settings=SMALL, text=TEXT)
    run.stop()
    hearth.engine.submit_task(run.execute, run.cancel)
    assert run.wait(TIMEOUT) and run.state == "stopped" and run.rows == []


def _other_model(path):
    """A tiny GGUF file of another model: 10 tokens, 2 layers of width 8."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(path, arch="llama")
    writer.add_block_count(2)
    writer.add_embedding_length(8)
    writer.add_token_list([f"t{i}" for i in range(10)])
    writer.add_tensor("token_embd.weight", np.zeros((10, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_bad_choices_get_one_line_each(tmp_path, default_model, q8):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    other = _other_model(tmp_path / "other.gguf")

    def refused(files, reference=None):
        with pytest.raises(UserError) as e:
            prepare(files, reference, SMALL, TEXT)
        assert "\n" not in e.value.message
        return e.value.message

    assert refused([]) == "choose at least one GGUF file to measure"
    assert refused([("gone.gguf", tmp_path / "gone.gguf")]) == "no such model: gone.gguf"
    assert refused([("q8", q8)], ("notes.txt", notes)).startswith("the reference notes.txt cannot be measured: "
                                                                     "not a GGUF file")
    message = refused([("other.gguf", other)], (DEFAULT_MODEL_NAME, default_model))
    assert message.startswith("other.gguf is another model than the reference") and "10 tokens" in message
    # A file that is not GGUF is a row that says so; the others are still measured.
    run = prepare([("notes.txt", notes)], None, SMALL, TEXT)
    run.execute()
    assert run.state == "done" and run.rows[0].note.startswith("not measured: not a GGUF file")


def test_the_command_line_says_what_is_wrong_in_one_line(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    assert advise_cli.main(["--models-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("hearth advise: name one or more GGUF files")
    assert advise_cli.main(["built-in", "--reference", str(notes)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hearth advise: the reference") and err.count("\n") == 1
    assert advise_cli.main(["built-in", "--ctx", "1"]) == 2  # below the declared minimum
    assert "--ctx" in capsys.readouterr().err
