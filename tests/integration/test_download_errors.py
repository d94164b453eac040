"""What goes wrong with downloads, against the Hub stand-in (tests/hub_standin.py: the
real Hub cannot be reached here): each is one line for the user, and nothing bad is
left on disk or written outside models/."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.hub_standin import EVIL_REPO, GATED_REPO, GATED_TOKEN, MIXED_REPO, SMOLLM_REPO, hub, hub_env  # noqa: F401 (fixtures)
from tests.support import free_port
from webui.modelfiles.downloads import ChecksumMismatch, download
from webui.modelfiles.hub import HubError, UnsafeName, list_repo, local_dir_for


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert text and "\n" not in text and "Traceback" not in text
    return text


def test_a_wrong_sha256_is_detected_and_the_file_not_kept(hub_env, tmp_path):
    name = "model-00001-of-00002.safetensors"
    hub_env.fault(MIXED_REPO, name).corrupt = True
    with pytest.raises(ChecksumMismatch) as e:
        download(MIXED_REPO, models_dir=tmp_path, names=[name])
    assert "corrupt" in one_line(e) and "sha256" in str(e.value)
    assert [p for p in files_under(tmp_path) if p.name.startswith("model-")] == []  # no final, no part
    # The bytes that do match arrive fine once the fault is gone.
    hub_env.clear_faults()
    download(MIXED_REPO, models_dir=tmp_path, names=[name])
    assert (tmp_path / MIXED_REPO.replace("/", "_") / name).is_file()


def test_a_corrupt_small_file_fails_its_git_blob_id(hub_env, tmp_path):
    hub_env.fault(MIXED_REPO, "tokenizer.json").corrupt = True  # not an LFS file: no sha256
    with pytest.raises(ChecksumMismatch) as e:
        download(MIXED_REPO, models_dir=tmp_path, names=["config.json", "tokenizer.json"])
    assert "tokenizer.json is corrupt: its git blob id" in one_line(e)
    assert [p.name for p in files_under(tmp_path) if p.suffix == ".json" and not p.name.startswith(".")] \
        == ["config.json"]


@pytest.mark.parametrize("repo_id", ["../../etc", "org/../../x", "org/name/../../x", "..", "/abs/path",
                                     "org/na me", "org\\..\\x", "org/.."])
def test_traversal_in_a_repo_id_is_refused(hub_env, tmp_path, repo_id):
    with pytest.raises(HubError) as e:
        download(repo_id, models_dir=tmp_path / "models")
    one_line(e)
    with pytest.raises(HubError):
        local_dir_for(tmp_path / "models", repo_id)
    assert files_under(tmp_path) == []
    assert hub_env.requests == []  # refused before anything was asked of the Hub


@pytest.mark.parametrize("name", ["../../escape.txt", "../x", "/etc/passwd", "a/../../b", ".partial/x.part",
                                  "a//b", "C:\\x"])
def test_traversal_in_a_file_name_is_refused(hub_env, tmp_path, name):
    with pytest.raises(UnsafeName) as e:
        download(SMOLLM_REPO, models_dir=tmp_path / "models", names=[name])
    assert "refusing" in one_line(e)
    assert not any(p.name.endswith(".txt") for p in files_under(tmp_path))


def test_a_hub_listing_with_escaping_names_downloads_only_the_safe_ones(hub_env, tmp_path):
    models = tmp_path / "deep" / "models"
    listing = list_repo(EVIL_REPO)
    assert listing.refused == ["../../escape.txt"]
    assert [f.path for f in listing.files] == ["ok.txt"]
    download(EVIL_REPO, models_dir=models)
    assert [p.relative_to(tmp_path).as_posix() for p in files_under(tmp_path)] == [
        "deep/models/hearth-test_evil-names/.hearth-download.json", "deep/models/hearth-test_evil-names/ok.txt"]


def test_a_missing_repo_and_a_missing_revision(hub_env, tmp_path):
    with pytest.raises(HubError) as e:
        list_repo("hearth-test/no-such-repo")
    assert one_line(e).startswith("no repo hearth-test/no-such-repo on the Hub")
    with pytest.raises(HubError) as e:
        download(SMOLLM_REPO, models_dir=tmp_path, revision="no-such-branch")
    assert "no branch, tag or commit 'no-such-branch'" in one_line(e)
    with pytest.raises(HubError) as e:
        download(SMOLLM_REPO, models_dir=tmp_path, names=["missing.gguf"])
    assert "has no file 'missing.gguf'" in one_line(e)
    assert files_under(tmp_path) == []


def test_a_gated_repo_needs_a_token(hub_env, tmp_path, monkeypatch):
    listing = list_repo(GATED_REPO)  # the listing is public, as on the Hub
    assert listing.gated
    with pytest.raises(HubError) as e:
        download(GATED_REPO, models_dir=tmp_path)
    assert one_line(e).startswith(f"{GATED_REPO} is gated: accept its terms at {hub_env.url}/{GATED_REPO}")
    assert "token" in str(e.value)
    assert not any(p.suffix == ".safetensors" for p in files_under(tmp_path))
    with pytest.raises(HubError) as e:
        download(GATED_REPO, models_dir=tmp_path, token="hf_wrong")
    assert "this token has no access" in one_line(e)

    download(GATED_REPO, models_dir=tmp_path, token=GATED_TOKEN)  # the token field
    assert (tmp_path / "hearth-test_gated-model" / "model.safetensors").is_file()
    monkeypatch.setenv("HF_TOKEN", GATED_TOKEN)  # or HF_TOKEN
    result = download(GATED_REPO, models_dir=tmp_path / "again")
    assert len(result.paths) == 2
    assert f"Bearer {GATED_TOKEN}" in {r["auth"] for r in hub_env.requests if "/resolve/" in r["path"]}
    # The LFS bytes come from the CDN (another origin), which never sees the token.
    cdn = [r for r in hub_env.served if r["path"] == "model.safetensors"]
    assert cdn and all(r["host"] == "localhost" and r["auth"] is None for r in cdn)


def test_the_hub_being_unreachable_is_one_line(hub_env, tmp_path, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("HF_ENDPOINT", dead)
    with pytest.raises(HubError) as e:
        list_repo(SMOLLM_REPO)
    assert one_line(e).startswith(f"cannot reach the Hugging Face Hub at {dead}")
    with pytest.raises(HubError):
        download(SMOLLM_REPO, models_dir=tmp_path)
    assert files_under(tmp_path) == []
