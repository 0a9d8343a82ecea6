"""Text meant for stderr, re-emitted through `logging` at each line's own level.

Airflow's task supervisor files everything a task writes to stderr at ERROR, so a healthy run's INFO lines and
progress bars read as a wall of errors. These helpers turn such text back into log records: a line in our CLIs'
log format ("<date> <time> LEVEL logger: message") keeps its level and logger; any other line (a progress bar, a
warning, a traceback, a one-line `error: ...`) goes to a fallback logger, at ERROR from a traceback or an
`error:` line on, else at the level of the record before it (INFO at first). A progress bar redrawn in place
(`\\r`) is logged at most every `progress_every_s` seconds, and its final state always.

    relog_stream(proc.stderr)              # a child's stderr pipe (augment/stage_process.py)
    with stderr_relogged("models.retrain"):  # this process's own stderr, e.g. inside an Airflow task
        retrain(cfg, versions)
"""
from __future__ import annotations

import codecs
import contextlib
import io
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO

_RECORD = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ([\w.]+): (.*)$")
_CUT = re.compile(r"[\r\n]")


class LineRelogger:
    """Feed it text as it arrives; it logs each finished line (see the module doc)."""

    def __init__(self, fallback: str, progress_every_s: float = 30.0):
        self.level, self.name, self.fallback = logging.INFO, fallback, fallback
        self.progress_every_s = progress_every_s
        self._last_progress = -progress_every_s
        self._pending, self._unlogged = "", ""  # unlogged: the newest redraw not logged yet (a bar ends "..\r\n")

    def _emit(self, text: str) -> None:
        text = text.rstrip()
        if not text.strip():
            return
        match = _RECORD.match(text)
        if match:
            self.level, self.name = logging.getLevelName(match[1]), match[2]
            logging.getLogger(self.name).log(self.level, "%s", match[3])
            return
        if text.startswith(("Traceback", "error:")):
            self.level, self.name = logging.ERROR, self.fallback
        logging.getLogger(self.name).log(self.level, "%s", text)

    def feed(self, text: str) -> None:
        self._pending += text
        while (cut := _CUT.search(self._pending)) is not None:
            piece, sep = self._pending[:cut.start()], cut.group()
            self._pending = self._pending[cut.end():]
            if sep == "\r":  # a redraw: logged only if the bar has been quiet in the log for a while
                self._unlogged = piece if piece.strip() else self._unlogged
                now = time.monotonic()
                if self._unlogged and now - self._last_progress >= self.progress_every_s:
                    self._last_progress = now
                    self._emit(self._unlogged)
                    self._unlogged = ""
                continue
            self._emit(piece if piece.strip() else self._unlogged)
            self._unlogged = ""

    def close(self) -> None:
        self._emit(self._pending if self._pending.strip() else self._unlogged)
        self._pending = self._unlogged = ""


def relog_stream(stream: IO[bytes], fallback: str = "augment.stage") -> None:
    """Log a byte stream (a child's stderr pipe) line by line until it closes."""
    lines = LineRelogger(fallback)
    # Incremental: a character cut between two reads is kept whole; invalid bytes are shown replaced.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for chunk in iter(lambda: stream.read1(65536), b""):
        lines.feed(decoder.decode(chunk))
    lines.feed(decoder.decode(b"", final=True))
    lines.close()


class _RelogWriter(io.TextIOBase):
    """A text stream whose lines become log records; a handler that itself writes to sys.stderr while a line is
    being logged (logging's last-resort handler does) writes to the real stderr instead of looping."""

    def __init__(self, fallback: str, real: IO[str]):
        self._lines, self._real, self._busy = LineRelogger(fallback), real, threading.local()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if getattr(self._busy, "on", False):
            return self._real.write(text)
        self._busy.on = True
        try:
            self._lines.feed(text)
        finally:
            self._busy.on = False
        return len(text)

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        self._busy.on = True
        try:
            self._lines.close()
        finally:
            self._busy.on = False


@contextlib.contextmanager
def stderr_relogged(fallback: str) -> Iterator[None]:
    """While inside, what this process writes to sys.stderr (progress bars, warnings) is logged line by line."""
    writer = _RelogWriter(fallback, sys.stderr)
    with contextlib.redirect_stderr(writer):
        try:
            yield
        finally:
            writer.close()
