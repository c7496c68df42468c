"""Budgets that hold under concurrency: reserve an estimate at admission, settle the real cost after."""
