"""Prometheus metrics: tallied in-process, shared between workers through files, formatted on scrape."""
