"""What a user makes, in plain files: the user data folders, atomic writes, presets."""
