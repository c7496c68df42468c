"""Translation between Anthropic's Messages API and OpenAI's chat completions API.

Messages in, OpenAI-compatible upstream: `decode_messages_request`, `messages_request_to_chat`
(with the upstream's `Dialect`), then `translate_chat_response` or a `ChatToMessagesStream`.
OpenAI chat in, Anthropic upstream: `decode_chat_request`, `chat_request_to_messages`, then
`translate_messages_response` or a `MessagesToChatStream`. Error answers: `to_anthropic_error`,
`to_openai_error`. Each module's docstring says what it maps; the README says what does not map.
"""

from gateway.translate.dialect import GENERIC, OLLAMA, OPENAI, VLLM, ZAI, Dialect, dialect_for
from gateway.translate.errors import anthropic_error, openai_error_of, to_anthropic_error, to_openai_error
from gateway.translate.from_chat_response import Translated, chat_response_to_messages, translate_chat_response
from gateway.translate.from_chat_stream import ChatToMessagesStream
from gateway.translate.from_messages_response import messages_response_to_chat, translate_messages_response
from gateway.translate.from_messages_stream import MessagesToChatStream
from gateway.translate.to_chat_request import decode_messages_request, messages_request_to_chat
from gateway.translate.to_messages_request import DEFAULT_MAX_TOKENS, chat_request_to_messages, decode_chat_request

__all__ = [
    "DEFAULT_MAX_TOKENS", "GENERIC", "OLLAMA", "OPENAI", "VLLM", "ZAI", "ChatToMessagesStream", "Dialect",
    "MessagesToChatStream", "Translated", "anthropic_error", "chat_request_to_messages", "chat_response_to_messages",
    "decode_chat_request", "decode_messages_request", "dialect_for", "messages_request_to_chat",
    "messages_response_to_chat", "openai_error_of", "to_anthropic_error", "to_openai_error", "translate_chat_response",
    "translate_messages_response",
]
