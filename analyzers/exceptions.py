"""Errors raised by analyzers. Each carries the data needed to act on it."""

from __future__ import annotations


class AnalysisError(Exception):
    """Base class of every analyzer error."""


class MissingImages(AnalysisError):
    """No usable frames for wells the analysis needs.

    Attributes:
        wells: the wells without frames.
    """

    def __init__(self, message: str, wells: list[str] | None = None) -> None:
        super().__init__(message)
        self.wells = list(wells or [])


class MissingChannel(AnalysisError):
    """A frame lacks a channel the analyzer needs.

    Attributes:
        channel: the missing channel name; available: the channels the frame has.
    """

    def __init__(self, channel: str, available: tuple[str, ...]) -> None:
        super().__init__(f"channel {channel!r} not in frame channels {available!r}")
        self.channel = channel
        self.available = available


class MissingControls(AnalysisError):
    """The plate lacks the control wells needed to normalise or judge it.

    Attributes:
        role: "negative_control" or "positive_control".
    """

    def __init__(self, message: str, role: str) -> None:
        super().__init__(message)
        self.role = role


class UnknownAnalyzer(AnalysisError, KeyError):
    """No analyzer is registered under this name."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"no analyzer registered as {name!r}; known: {sorted(known)}")
        self.name = name
        self.known = known

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicateAnalyzer(AnalysisError, ValueError):
    """An analyzer name is registered twice."""


class MissingWeights(AnalysisError):
    """The learned segmenter's weights file is not where it should be.

    Attributes:
        path: the file looked for.
    """

    def __init__(self, path: str) -> None:
        super().__init__(
            f"no weights file for the learned segmenter at {path}; rebuild it with "
            f"'python -m analyzers.learned.train --out {path}' or use method 'seeded'"
        )
        self.path = path
