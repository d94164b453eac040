"""Accounts: who may log in (the users file), with which role, by password or API key;
UI sessions that expire; whose request is running now; and moving a single-user data
folder to the first admin. No web framework: the faces call these."""
