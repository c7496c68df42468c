"""AWS Bedrock upstreams: LiteLLM's `bedrock/` deployments.

A Bedrock deployment speaks neither OpenAI's API nor Anthropic's: every request to it crosses
(gateway/crossing.py). Chat completions go to the Converse API (`/model/{id}/converse`, and
`/converse-stream` for streams); the Messages API goes to InvokeModel with Anthropic's own body for a
Claude model (or any `bedrock/invoke/` one), to Converse for the rest. Each request is signed with
SigV4 by botocore's signer (auth.py), or carries a Bedrock API key. Answers come back as JSON or as
AWS event-stream frames (eventstream.py), read into Anthropic's Messages events (from_converse.py,
invoke.py), which the existing translators turn into chat chunks where the caller speaks OpenAI's API.
"""
