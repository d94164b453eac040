"""Extensions: folders `extensions/NAME/` with a `script.py` that may define hooks.

`webui.extensions.api` is the versioned contract extensions are written against
(documented in docs/EXTENSIONS.md); `manager` discovers, switches and calls them;
`routes` (FastAPI) and `webui/ui/extensions_tab.py` (Gradio) are the two faces.
"""
from webui.extensions.api import EXTENSION_API_VERSION, HOOKS, ExtensionContext, ModelInfo, Prompt, Quote
from webui.extensions.loading import Extension
from webui.extensions.manager import SHIPPED_EXTENSIONS, ExtensionError, ExtensionManager

__all__ = ["EXTENSION_API_VERSION", "HOOKS", "Extension", "ExtensionContext", "ExtensionError",
           "ExtensionManager", "ModelInfo", "Prompt", "Quote", "SHIPPED_EXTENSIONS"]
