"""The gateway's built-in plugins, one concern each; see gateway/plugin.py for the contract."""
