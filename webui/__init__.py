"""Hearth: a local web UI for large language models. The core modules here import
neither Gradio nor FastAPI; `webui.ui` and `webui.api` are the two faces over them."""
__version__ = "0.1.0"
