"""The Download tab's list of models on disk: one broken file is shown with its
problem, and the others are listed as usual."""
from tests.unit.modelfiles.test_fit_bounds import llama_header
from webui.ui.download_tab import local_rows


def test_a_crafted_header_is_listed_with_its_problem_beside_a_good_one(tmp_path):
    (tmp_path / "many-layers.gguf").write_bytes(llama_header(block_count=1 << 26))
    (tmp_path / "plain.gguf").write_bytes(llama_header(block_count=30))
    rows, labels = local_rows(tmp_path, 4096)
    by_label = dict(zip(labels, rows, strict=True))
    assert set(by_label) == {"many-layers.gguf", "plain.gguf"}
    assert "⚠️" in by_label["many-layers.gguf"][1] and "block_count" in by_label["many-layers.gguf"][1]
    assert "⚠️" not in by_label["plain.gguf"][1]
