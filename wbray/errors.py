"""One small error hierarchy.

Library code raises these; only the CLI (and later the HTTP edge) turns them into exit codes or
status codes. Every message says what is wrong, where (file:line or field) and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass


class WbrayError(Exception):
    """Base class of every error wbray raises on purpose."""


class ConfigError(WbrayError):
    """A configuration file or override is invalid (names the file and the key)."""


@dataclass(frozen=True)
class Defect:
    """One problem found in an input file.

    Attributes:
        path: The file the defect is in.
        line: 1-based line number, or 0 when the defect concerns the whole file.
        field: The offending field (dotted, e.g. ``checklist[2].name``), or "" for the whole line.
        message: What is wrong and what is allowed.
    """

    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class DataError(WbrayError):
    """Input data (benchmark, subset, response or score files) has defects.

    Carries every defect found, so a user fixes a file in one pass instead of one error at a time.
    """

    def __init__(self, defects: list[Defect], summary: str | None = None) -> None:
        self.defects = list(defects)
        first = str(self.defects[0]) if self.defects else "no details"
        more = f" (and {len(self.defects) - 1} more)" if len(self.defects) > 1 else ""
        super().__init__(summary or f"{first}{more}")


class IntegrityError(WbrayError):
    """A downloaded file does not match its pinned hash."""


class DataNotFoundError(WbrayError):
    """No benchmark data could be located (names where it looked and how to get it)."""
