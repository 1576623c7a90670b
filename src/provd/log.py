"""The daemon's log (docs/design.md §9): stdlib `logging` to stderr, one line per event, each line led by its syslog
priority (`<3>` error … `<7>` debug) when stderr is the journal, plain otherwise. Owns the handler, the
formatter and the threshold (`log.level`, overridden by `-v` and `-q`); the modules that log only call
`get(__name__)` and log.

Importing this module attaches a NullHandler to the `provd` logger, so a one-shot command that never sets
the log up prints nothing through logging's last-resort handler: its own stdout and `provd: error:` lines
are its output. Secrets never reach the log: the formatter redacts any URL password it still finds.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import TextIO

ROOT = "provd"
DEBUG, INFO, WARNING, ERROR = logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

# sd-daemon(3) priorities; anything above ERROR (CRITICAL) is still an error to an administrator.
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3}
# "scheme://user:secret@" → "scheme://user:***@": a safety net behind the redact() every call site does. The
# secret runs to the authority's last "@" (a raw "@" in it is invalid, but must not leave half of it shown).
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):[^/\s]*@")
_BREAKS = re.compile(r"\s*[\r\n]+\s*")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

logging.getLogger(ROOT).addHandler(logging.NullHandler())


def get(name: str) -> logging.Logger:
    """The logger of a provd module (a child of `provd`, so the threshold set here applies)."""
    return logging.getLogger(name)


def threshold(configured: str | None, *, verbose: bool, quiet: bool) -> int:
    """`-v` (debug) beats `-q` (warning) beats the config key `log.level` (default info). `-v` wins a
    tie: asking for detail and silence at once is most likely someone debugging."""
    if verbose:
        return logging.DEBUG
    if quiet:
        return logging.WARNING
    return LEVELS[configured or "info"]


def stderr_is_journal(stream: TextIO | None = None, environ: dict[str, str] | None = None) -> bool:
    """True when `stream` (stderr) is the journal: systemd sets `$JOURNAL_STREAM` to the stream's
    `device:inode` (systemd.exec(5)); a program whose stderr was redirected elsewhere must not use the
    journal's prefixes, so the numbers are compared, not just the variable's presence."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def one_line(text: str) -> str:
    """A message as one printable line: line breaks (libxml2 puts some in its diagnostics) become a
    space, other control characters are escaped, a password in a URL is masked."""
    text = _BREAKS.sub(" ", text.strip())
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    text = _USERINFO.sub(r"\1:***@", text)
    # A lone surrogate (from a hostile URL) cannot be written as UTF-8: show it escaped instead.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class LineFormatter(logging.Formatter):
    """One line per record: `<P>` (journal) + the message; warnings and errors read as the CLI prints them
    (`provd: warning: …`). A traceback (only ever for a real bug) follows on its own lines, each with the
    record's priority, so the journal files all of it under the same priority."""

    def __init__(self, *, journal: bool) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = one_line(record.getMessage())
        if record.levelno >= logging.ERROR:
            text = f"provd: error: {text}"
        elif record.levelno >= logging.WARNING:
            text = f"provd: warning: {text}"
        lines = [text]
        if record.exc_info:
            lines += [_USERINFO.sub(r"\1:***@", line) for line in
                      self.formatException(record.exc_info).splitlines()]
        if not self.journal:
            return "\n".join(lines)
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in lines)


def priority(level: int) -> int:
    for bound in (logging.ERROR, logging.WARNING, logging.INFO):
        if level >= bound:
            return _PRIORITY[bound]
    return _PRIORITY[logging.DEBUG]


def setup(level: int, *, stream: TextIO | None = None) -> logging.Handler:
    """Send the log to stderr (`provd run`, or a one-shot command's `-v`). provd's own records pass at
    `level`; other libraries' (asyncio's "Unhandled exception …") only from warnings up, so httpx's
    per-request info lines never reach the journal."""
    target = stream or sys.stderr
    handler = logging.StreamHandler(target)
    handler.setFormatter(LineFormatter(journal=stderr_is_journal(target)))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h.formatter, LineFormatter)]:
        root.removeHandler(old)  # set up twice (tests calling main() again): one handler, not two
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    set_level(level)
    return handler


def set_level(level: int) -> None:
    logging.getLogger(ROOT).setLevel(level)
