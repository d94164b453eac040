"""models/ORG_REPO folder names: kept as they are (downloaded folders and tests name
them), but not one-to-one (a_b/c and a/b_c share a_b_c), so a folder's download
record names its repo before any file lands, and a download of another repo into it
is refused with one line.

The Hub cannot be reached here: `download_file` (one file's transfer) is replaced by a
stand-in that writes the file's bytes, so everything around it (the listing, the
folder, the record, the refusal) is the real code."""
from __future__ import annotations

import hashlib

import pytest

from webui.modelfiles import downloads
from webui.modelfiles.downloads import FolderTaken, claim_folder, download, read_record
from webui.modelfiles.hub import RemoteFile, RepoListing, local_dir_for, target_path

CONTENT = b"GGUF model bytes"


def listing(repo_id: str) -> RepoListing:
    f = RemoteFile("m.gguf", len(CONTENT), sha256=hashlib.sha256(CONTENT).hexdigest())
    return RepoListing(repo_id, "main", "0" * 40, False, [f], [])


@pytest.fixture
def transfers(monkeypatch):
    """The stand-in for the network transfer; records which repo the folder named then."""
    seen = []

    def download_file(listing, f, folder, token, meter, cancel):
        seen.append((listing.repo_id, read_record(folder).get("repo_id")))
        path = target_path(folder, f.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(CONTENT)
        return path

    monkeypatch.setattr(downloads, "download_file", download_file)
    return seen


def get(repo_id: str, models) -> downloads.DownloadResult:
    return download(repo_id, models_dir=models, token="hf_test", listing=listing(repo_id))


def test_existing_folder_names_are_kept(tmp_path):
    assert local_dir_for(tmp_path, "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF").name == \
        "HuggingFaceTB_SmolLM2-135M-Instruct-GGUF"
    assert local_dir_for(tmp_path, "a_b/c") == local_dir_for(tmp_path, "a/b_c")  # why the record says which


def test_a_second_repo_mapping_to_the_same_folder_is_refused(tmp_path, transfers):
    first = get("a_b/c", tmp_path)
    assert transfers == [("a_b/c", "a_b/c")]  # the record named the repo before the file landed
    with pytest.raises(FolderTaken, match="a_b_c already holds a_b/c, and a/b_c would be downloaded") as e:
        get("a/b_c", tmp_path)
    assert "\n" not in str(e.value)
    assert len(transfers) == 1 and read_record(first.folder)["repo_id"] == "a_b/c"
    assert sorted(p.name for p in first.folder.iterdir()) == [".hearth-download.json", "m.gguf"]


def test_the_same_repo_in_another_case_is_the_same_repo(tmp_path, transfers):
    get("Org/Model", tmp_path)
    folder = local_dir_for(tmp_path, "Org/Model")
    record = claim_folder(folder, "org/model")  # the Hub answers for either spelling
    assert record["repo_id"] == "Org/Model"
    assert get("Org/Model", tmp_path).already_there == ["m.gguf"]


def test_a_folder_without_a_record_is_claimed_and_a_broken_record_refused(tmp_path):
    folder = local_dir_for(tmp_path, "org/model")
    assert claim_folder(folder, "org/model")["repo_id"] == "org/model"
    assert read_record(folder)["repo_id"] == "org/model"
    (folder / ".hearth-download.json").write_text('{"repo_id": ["x"], "files": {}}')
    with pytest.raises(FolderTaken, match="already holds"):
        claim_folder(folder, "org/model")


def test_a_record_nested_deeply_reads_as_no_record(tmp_path):
    folder = tmp_path / "org_model"
    folder.mkdir()
    (folder / ".hearth-download.json").write_text("[" * 100_000 + "]" * 100_000)
    assert read_record(folder) == {"files": {}}
