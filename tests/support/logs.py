"""A logging handler that keeps every record it sees, formatted, for canary checks."""

from __future__ import annotations

import logging

from keyguard.core.logs import JsonFormatter, TextFormatter


class LogCapture(logging.Handler):
    """Every record at any level as ``name LEVEL message`` in :attr:`lines`, and as the
    gateway writes it in :attr:`json_lines` and :attr:`text_lines`."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []
        self.json_lines: list[str] = []
        self.text_lines: list[str] = []
        self._json, self._text = JsonFormatter(), TextFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.json_lines.append(self._json.format(record))
        self.text_lines.append(self._text.format(record))
