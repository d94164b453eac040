"""The Download tab in a real Chromium, against the Hub stand-in (tests/hub_standin.py:
the real Hub cannot be reached here): list a repo, download a file with a progress bar,
find it in the Model tab's model list and the Models view, and delete it.

Uses its own server (no model loaded, its own models folder)."""
from __future__ import annotations

import pytest

from tests.browser.conftest import wait_text
from tests.hub_standin import SMOLLM_FILE, SMOLLM_REPO, hub  # noqa: F401 (fixture)

LABEL = f"{SMOLLM_REPO.replace('/', '_')}/{SMOLLM_FILE}"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def download_url(hearth_server, hub, models_dir):
    return hearth_server("--no-model", "--models-dir", str(models_dir), env={"HF_ENDPOINT": hub.url}).url


@pytest.fixture
def download_page(open_page, download_url):
    page = open_page(download_url, ready=False, viewport={"width": 1280, "height": 1000})
    page.get_by_role("tab", name="Download").click()
    page.wait_for_selector("#download-list")
    return page


def text_of(page, selector: str) -> str:
    return page.inner_text(selector)


def test_list_download_and_find_it_in_the_model_tab(download_page, models_dir):
    page = download_page
    page.locator("#download-repo").locator("textarea, input").first.fill(SMOLLM_REPO)
    page.click("#download-list")
    wait_text(page, "#download-status", "2 files")
    groups = text_of(page, "#download-groups")
    assert SMOLLM_FILE in groups and "Q4_1" in groups and "fits in RAM" in groups
    assert "other files" in groups  # the README is listed too: nothing is narrowed away

    page.locator("#download-choose").get_by_label(SMOLLM_FILE, exact=False).check()
    page.click("#download-start")
    wait_text(page, "#download-status", "Downloaded and verified 1 file(s)")
    assert "100%" in text_of(page, "#download-progress")
    assert (models_dir / LABEL).is_file()
    assert LABEL in text_of(page, "#local-models")  # the Models view
    assert "GGUF" in text_of(page, "#local-models")

    page.get_by_role("tab", name="Model").click()
    box = page.locator("#model-choice input")
    box.click()
    option = page.get_by_role("option", name=LABEL)
    option.wait_for()
    option.click()
    wait_text(page, "#model-fit", "fits in RAM")  # the estimate for the chosen model


def test_delete_from_the_models_view(download_page, models_dir):
    page = download_page
    assert (models_dir / LABEL).is_file(), "the download test runs first"
    wait_text(page, "#local-models", LABEL)
    choice = page.locator("#local-choice input")
    choice.click()
    page.get_by_role("option", name=LABEL).click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#local-delete")
    wait_text(page, "#local-status", f"deleted {LABEL}")
    assert not (models_dir / LABEL).exists()
    assert LABEL not in text_of(page, "#local-models")
