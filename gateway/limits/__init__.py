"""Rate limits: token buckets for requests and tokens per minute, and parallel-request slots."""
