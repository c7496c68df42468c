"""An OpenAI-compatible LLM gateway that reads LiteLLM's config.yaml."""

__version__ = "0.1.0"
