"""The Download tab's estimates follow the KV-cache type chosen beside the context."""
from webui.ui.download_tab import local_rows


def test_the_download_tab_rows_follow_the_kv_type(tmp_path, default_model):
    (tmp_path / "smol.gguf").symlink_to(default_model)
    f16 = local_rows(tmp_path, 16384, "f16")[0][0][4]
    q4 = local_rows(tmp_path, 16384, "q4_0")[0][0][4]
    assert float(f16.split()[0]) - float(q4.split()[0]) > 200  # MB: 377 MB of KV against 106 MB
