"""Errors users can act on. The CLI prints them as one line and exits with status 2."""

from __future__ import annotations


class FlowsiemError(Exception):
    """Base for errors shown to the user without a traceback."""

    exit_code = 2


class InputError(FlowsiemError):
    """Bad input: names the file, the column and how many rows are affected where known."""

    def __init__(self, message: str, *, file: str | None = None, column: str | None = None,
                 rows: int | None = None):
        self.file, self.column, self.rows = file, column, rows
        parts = []
        if file is not None:
            parts.append(str(file))
        if column is not None:
            parts.append(f"column '{column}'")
        if rows is not None:
            parts.append(f"{rows:,} row{'s' if rows != 1 else ''}")
        prefix = ": ".join([", ".join(parts)]) if parts else ""
        # One line, whatever a library put in the message it is built from.
        message = " ".join(str(message).split())
        super().__init__(f"{prefix}: {message}" if prefix else message)


class UsageError(FlowsiemError):
    """A bad option value or combination."""
