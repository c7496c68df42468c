"""LiteLLM's management API: the same paths, fields and response shapes."""
