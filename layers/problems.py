"""Problems found while reading a city pack, and the error that carries them.

Validation collects problems instead of stopping at the first one, in the
style of OSMnx's ``_validate.py``: every check appends a :class:`Problem`
naming the file (relative to the pack folder), the 1-based data row or
feature index (``None`` for the whole file) and a reason a person can act on.
Repairs (an invalid polygon made valid, a default filled in) are warnings;
anything that makes the data unusable or ambiguous is an error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: ``districts.geojson row 7: duplicate id 'centro'``."""

    file: str
    row: int | None
    reason: str
    severity: str = ERROR

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def __str__(self) -> str:
        where = self.file if self.row is None else f"{self.file} row {self.row}"
        return f"{where}: {self.reason}"


class PackError(ValueError):
    """A city pack that cannot be used; ``problems`` lists every finding.

    ``problems`` holds the errors *and* the warnings found in the same pass;
    ``reports`` the per-layer summaries read so far (for ``layers check``).
    """

    def __init__(self, problems: Iterable[Problem], reports: list | None = None):
        self.problems = list(problems)
        self.reports = list(reports or [])
        errors = self.errors
        head = f"{len(errors)} error(s) in city pack"
        shown = "; ".join(str(p) for p in errors[:5])
        more = f"; ... and {len(errors) - 5} more" if len(errors) > 5 else ""
        super().__init__(f"{head}: {shown}{more}")

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_error]


@dataclass(slots=True)
class ProblemLog:
    """Collects problems while a pack is read."""

    problems: list[Problem] = field(default_factory=list)

    def error(self, file: str, row: int | None, reason: str) -> None:
        self.problems.append(Problem(file, row, reason, ERROR))

    def warning(self, file: str, row: int | None, reason: str) -> None:
        self.problems.append(Problem(file, row, reason, WARNING))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_error]

    def has_errors(self) -> bool:
        return any(p.is_error for p in self.problems)
