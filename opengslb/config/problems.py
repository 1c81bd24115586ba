"""How a configuration problem is reported: :class:`Problem`, :class:`ConfigError`, key paths.

Every reader of a configuration file (the server's loader and the agent's)
collects issues as ``(key path, message)`` while it checks the data, and
turns them into :class:`Problem` records (file, line, path, message) only at
the end, when it knows the lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

__all__ = ["ConfigError", "Issue", "KeyPath", "PathStep", "Problem", "format_path"]



@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration file.

    ``line`` is 1-based, or ``None`` when it is not known (a problem found
    after command-line flags were applied, an unreadable file, ...).
    ``path`` is the key path (``regions[0].health_check.timeout``), or ``""``
    for the file as a whole.
    """

    file: str
    line: Optional[int]
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.path:
            return f"{where}: {self.path}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: List[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


PathStep = Union[str, int]
KeyPath = Tuple[PathStep, ...]
Issue = Tuple[KeyPath, str]


def format_path(path: KeyPath) -> str:
    """``("regions", 0, "name")`` → ``"regions[0].name"``."""
    out: List[str] = []
    for step in path:
        if isinstance(step, int):
            out.append(f"[{step}]")
        else:
            out.append(("." if out else "") + step)
    return "".join(out)

