"""Progress on stderr while a model source is prepared: one line redrawn in place on a terminal,
a line every ~10% (and at the end) otherwise, so logs stay short."""

from __future__ import annotations

import sys
import time
from typing import TextIO

PREFIX = "codeserve:"


def say(message: str, stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    print(f"{PREFIX} {message}", file=out, flush=True)


def _size(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


class Progress:
    def __init__(self, label: str, total: int | None, stream: TextIO | None = None) -> None:
        self.label, self.total = label, total
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done_bytes = 0
        self.started = time.monotonic()
        self._last_decile = -1
        self._last_draw = 0.0

    def _line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = f"{self.done_bytes / elapsed / 1e6:,.0f} MB/s"
        if self.total:
            pct = 100 * self.done_bytes / self.total
            return (
                f"{PREFIX} {self.label}: {pct:5.1f}% of {_size(self.total)} "
                f"({rate}, {elapsed:.0f} s)"
            )
        return f"{PREFIX} {self.label}: {_size(self.done_bytes)} ({rate}, {elapsed:.0f} s)"

    def update(self, n: int) -> None:
        self.done_bytes += n
        now = time.monotonic()
        if self.tty:
            if now - self._last_draw >= 0.2:
                self._last_draw = now
                print("\r" + self._line(), end="", file=self.stream, flush=True)
        elif self.total:
            decile = int(10 * self.done_bytes / self.total)
            if decile > self._last_decile and decile < 10:
                self._last_decile = decile
                print(self._line(), file=self.stream, flush=True)

    def finish(self, note: str = "") -> float:
        """Print the final line; returns the seconds it took."""
        elapsed = time.monotonic() - self.started
        line = self._line() + (f" {note}" if note else "")
        print(("\r" if self.tty else "") + line, file=self.stream, flush=True)
        return elapsed
