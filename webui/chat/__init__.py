"""Chats: prompts, templates, history fitting, conversations, saved histories and
the chat settings. Takes the runtime and the stores it needs as arguments."""
