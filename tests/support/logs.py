"""A logging handler that keeps every record it sees, formatted, for canary checks."""

from __future__ import annotations

import logging


class LogCapture(logging.Handler):
    """Every record at any level as ``name LEVEL message`` in :attr:`lines`."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
