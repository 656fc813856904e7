"""The one exception the rule front end raises for bad user text."""

from __future__ import annotations


class RuleError(ValueError):
    """A rule was rejected; ``position`` is the 0-based character offset in the text."""

    def __init__(self, position: int, message: str) -> None:
        super().__init__(position, message)
        self.position = position
        self.message = message

    def __str__(self) -> str:
        return f"rule error at {self.position}: {self.message}"
