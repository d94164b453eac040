"""The loaded model and the generation queue: model manager, engine, stop strings,
the built-in default model. Knows nothing of chats, screens or HTTP."""
