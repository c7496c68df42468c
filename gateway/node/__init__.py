"""The node's shared counters: one process's limits, budgets and cooldowns for every `--workers` process."""
