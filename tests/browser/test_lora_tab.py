"""The Model tab's Apply LoRA in a real Chromium: the llama.cpp `lora` field (generated
from its declaration) applied to the loaded model without reloading it, a bad entry
refused in one line with the adapter kept, and an empty field removing it.

Uses the shared server and leaves it without adapters."""
from tests import model_factory


def apply(page, text: str, expect: str, present: bool = True) -> str:
    """Apply `text`; wait until the status line shows `expect` (or, not `present`, no longer does)."""
    field = page.locator("#opt-llamacpp-lora textarea")
    field.fill(text)
    page.click("#model-apply-lora")
    page.wait_for_function("([words, present]) => "
                           "document.querySelector('#model-status').innerText.includes(words) === present",
                           arg=[expect, present])
    return page.inner_text("#model-status")


def test_apply_lora_changes_the_adapters_of_the_loaded_model(page):
    banana = model_factory.ensure_lora() / "banana.gguf"
    page.get_by_role("tab", name="Model").click()
    page.wait_for_selector("#model-status")
    loaded_in = page.inner_text("#model-status").split("loaded in")[1].split("\n")[0]
    try:
        status = apply(page, f'"{banana}:0.5"', "LoRA: banana.gguf ×0.5")
        assert loaded_in in status  # the same load: nothing was reloaded
        status = apply(page, f'"{banana}:7"', "⚠️")
        assert "scale of banana.gguf must be from -4 to 4" in status and "LoRA: banana.gguf ×0.5" in status
    finally:
        status = apply(page, "", "LoRA:", present=False)
    assert "Loaded:" in status and "⚠️" not in status
