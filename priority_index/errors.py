"""Typed errors: what went wrong, where, and what was expected.

The CLI maps :class:`InputError` and :class:`ConfigError` to exit code 2 and anything else to 1.
"""

from __future__ import annotations

from pathlib import Path


class PriorityIndexError(Exception):
    """Base class of the errors this package raises on purpose."""


class ConfigError(PriorityIndexError):
    """The pipeline TOML is unreadable or breaks the settings schema.

    Parameters
    ----------
    file
        The TOML file.
    problems
        One line per problem, each starting with the dotted key it concerns.
    """

    def __init__(self, file: str | Path, problems: list[str]):
        self.file = str(file)
        self.problems = list(problems)
        body = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{self.file}: invalid pipeline configuration\n{body}")


class InputError(PriorityIndexError):
    """A structural problem with an input: the run cannot go on.

    Parameters
    ----------
    file
        The input file (or folder, glob or zip) concerned.
    problem
        What is wrong, in words.
    row
        1-based line number in the file, when the problem sits on one line.
    column
        The column concerned, when there is one.
    expected
        What was expected instead.
    """

    def __init__(
        self,
        file: str | Path,
        problem: str,
        *,
        row: int | None = None,
        column: str | None = None,
        expected: str | None = None,
    ):
        self.file = str(file)
        self.problem = problem
        self.row = row
        self.column = column
        self.expected = expected
        where = self.file
        if row is not None:
            where += f", line {row}"
        if column is not None:
            where += f", column {column!r}"
        message = f"{where}: {problem}"
        if expected:
            message += f" (expected {expected})"
        super().__init__(message)
