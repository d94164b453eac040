"""Tools a chat may call: Python files in the user's tools/ folder and those shipped,
MCP servers listed in mcp.json, the registry of them all, and the bounded loop that
runs a model's calls (with the user's approval unless a tool is marked safe)."""
