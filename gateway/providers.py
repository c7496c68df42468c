"""Provider prefixes LiteLLM configs use, where each one's API lives, and which API it speaks."""

from __future__ import annotations

import msgspec

from gateway.protocols import Api


class Provider(msgspec.Struct, frozen=True):
    name: str
    default_api_base: str | None
    api_key_env: str | None = None
    api_base_env: str | None = None
    append_v1: bool = False
    is_mock: bool = False
    protocol: Api = Api.OPENAI


def _table(*providers: Provider) -> dict[str, Provider]:
    return {p.name: p for p in providers}


PROVIDERS = _table(
    # As in LiteLLM, an api_base of an OpenAI-style provider already ends in its
    # version path (`http://vllm:8000/v1`): requests go to `{api_base}/chat/completions`.
    Provider("openai", "https://api.openai.com/v1", "OPENAI_API_KEY", "OPENAI_API_BASE"),
    Provider("text-completion-openai", "https://api.openai.com/v1", "OPENAI_API_KEY", "OPENAI_API_BASE"),
    Provider("openai_like", None),
    Provider("custom_openai", None),
    Provider("hosted_vllm", None, "HOSTED_VLLM_API_KEY", "HOSTED_VLLM_API_BASE"),
    Provider("lm_studio", None, "LM_STUDIO_API_KEY", "LM_STUDIO_API_BASE"),
    Provider("llamafile", "http://127.0.0.1:8080/v1", None, "LLAMAFILE_API_BASE"),
    Provider("litellm_proxy", None, "LITELLM_PROXY_API_KEY", "LITELLM_PROXY_API_BASE"),
    Provider("nvidia_nim", "https://integrate.api.nvidia.com/v1", "NVIDIA_NIM_API_KEY", "NVIDIA_NIM_API_BASE"),
    Provider("cerebras", "https://api.cerebras.ai/v1", "CEREBRAS_API_KEY"),
    Provider("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY", "DEEPSEEK_API_BASE"),
    Provider("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY", "GROQ_API_BASE"),
    Provider("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", "OPENROUTER_API_BASE"),
    Provider("together_ai", "https://api.together.xyz/v1", "TOGETHERAI_API_KEY", "TOGETHER_AI_API_BASE"),
    Provider("fireworks_ai", "https://api.fireworks.ai/inference/v1", "FIREWORKS_AI_API_KEY", "FIREWORKS_API_BASE"),
    Provider("xai", "https://api.x.ai/v1", "XAI_API_KEY", "XAI_API_BASE"),
    Provider("perplexity", "https://api.perplexity.ai", "PERPLEXITYAI_API_KEY", "PERPLEXITY_API_BASE"),
    Provider("zai", "https://api.z.ai/api/paas/v4", "ZAI_API_KEY", "ZAI_API_BASE"),
    Provider("gemini", "https://generativelanguage.googleapis.com/v1beta/openai", "GEMINI_API_KEY"),
    # These are configured by their root URL; their OpenAI-compatible API is under /v1.
    Provider("ollama", "http://localhost:11434", "OLLAMA_API_KEY", "OLLAMA_API_BASE", append_v1=True),
    Provider("ollama_chat", "http://localhost:11434", "OLLAMA_API_KEY", "OLLAMA_API_BASE", append_v1=True),
    # Anthropic's own Messages API (`{api_base}/v1/messages`), as LiteLLM's `anthropic/` speaks it; its
    # OpenAI-compatible API is `anthropic_openai/`.
    Provider("anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY", "ANTHROPIC_API_BASE", append_v1=True,
             protocol=Api.ANTHROPIC),
    Provider("anthropic_openai", "https://api.anthropic.com", "ANTHROPIC_API_KEY", "ANTHROPIC_API_BASE",
             append_v1=True),
    # AWS Bedrock: its endpoint derives from the region, and each request is signed (gateway/bedrock/).
    Provider("bedrock", None, protocol=Api.BEDROCK),
    Provider("mistral", "https://api.mistral.ai", "MISTRAL_API_KEY", "MISTRAL_API_BASE", append_v1=True),
    # Their URLs, keys and tokens are built by gateway/azure.py and gateway/vertex.py (router.SHAPES).
    Provider("azure", None),
    Provider("azure_ai", None),
    Provider("vertex_ai", None),
    # Rerank only (gateway/media.py): Cohere's own API, `/v1/rerank` or `/v2/rerank` under the root
    # URL; Jina's `/v1/rerank`.
    Provider("cohere", "https://api.cohere.com", "COHERE_API_KEY", "COHERE_API_BASE"),
    Provider("jina_ai", "https://api.jina.ai", "JINA_AI_API_KEY", "JINA_AI_API_BASE", append_v1=True),
    Provider("mock", None, is_mock=True),
)


def split_model(model: str, custom_llm_provider: str | None) -> tuple[str, str]:
    """`hosted_vllm/Qwen/Qwen3-8B` -> ("hosted_vllm", "Qwen/Qwen3-8B").

    A name without a known prefix belongs to `custom_llm_provider`, else to
    OpenAI, as LiteLLM treats bare names such as `gpt-4o`.
    """
    head, sep, rest = model.partition("/")
    if custom_llm_provider:
        if sep and head == custom_llm_provider:
            return head, rest
        return custom_llm_provider, model
    if sep:
        return head, rest
    return "openai", model


def upstream_base(provider: Provider, api_base: str) -> str:
    base = api_base.rstrip("/")
    if provider.protocol is Api.ANTHROPIC and base.endswith("/v1/messages"):
        base = base[:-len("/messages")]  # LiteLLM takes the full URL of the Messages API too
    if provider.append_v1 and not base.endswith("/v1"):
        base += "/v1"
    return base
