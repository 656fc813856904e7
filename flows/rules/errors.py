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

    def caret(self, text: str) -> str:
        """`text` with a caret under the character this error points at: the one rendering
        of a rule error, in the command line and the dashboard. Each character before it
        becomes as many blank cells as it takes on a terminal (tabs stay tabs), so the caret
        lines up under wide characters too."""
        from rich.cells import cell_len

        pos = max(0, min(self.position, len(text)))
        line_no = text.count("\n", 0, pos)
        column = pos - (text.rfind("\n", 0, pos) + 1)
        out: list[str] = []
        for number, line in enumerate(text.split("\n")):
            out.append(line)
            if number == line_no:
                pad = "".join("\t" if c == "\t" else " " * cell_len(c) for c in line[:column])
                out.append(pad + "^")
        return "\n".join(out)
