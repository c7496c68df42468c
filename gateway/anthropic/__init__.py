"""Anthropic's Messages API: the /v1/messages routes' bodies and errors, and native `anthropic/` answers' usage."""
