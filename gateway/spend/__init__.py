"""Spend records: made per request, spooled to a local file at once, written to the store in batches."""
