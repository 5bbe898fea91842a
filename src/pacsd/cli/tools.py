"""Placeholder: filled in by the receive-path work."""

COMMANDS: list = []
