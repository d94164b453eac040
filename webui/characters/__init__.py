"""Characters (YAML files with an optional avatar) and V2 character cards."""
