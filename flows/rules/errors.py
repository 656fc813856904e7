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

    def place(self, text: str) -> str:
        """Where in `text` the error points, as people count: "column 7", or "line 2,
        column 3" in a rule of several lines."""
        return place(text, self.position)

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


def line_column(text: str, position: int) -> tuple[int, int]:
    """The 1-based line and column of the character at 0-based `position` in `text`."""
    pos = max(0, min(position, len(text)))
    return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1


def place(text: str, position: int) -> str:
    line, column = line_column(text, position)
    return f"column {column}" if "\n" not in text else f"line {line}, column {column}"
