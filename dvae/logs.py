"""Logging of the package's own messages (logger "dvae", and "analysis" for the analysis
package): the library only logs; each command-line front and each Ray trial sets the level
once (`configure`), from --verbose / --quiet or the DVAE_LOG_LEVEL its runner passes on.

INFO (the default) is what the commands always printed: a training run's epochs, what is
resumed, skipped or scored; --quiet keeps warnings and errors; --verbose adds debugging
details.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

LOGGERS = ("dvae", "analysis")
LEVEL_ENV = "DVAE_LOG_LEVEL"  # how a search passes its level on to its trials
_HANDLER_NAME = "dvae-console"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_const", const="DEBUG", dest="log_level",
                       help="also log debugging details")
    group.add_argument("-q", "--quiet", action="store_const", const="WARNING", dest="log_level",
                       help="log only warnings and errors")


def configure(level: str | None = None) -> str:
    """Sends the package's messages at `level` and above to standard output, one line each
    (level None: DVAE_LOG_LEVEL, else INFO); returns the level. Called again, it only
    changes the level."""
    level = (level or os.environ.get(LEVEL_ENV) or "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"{LEVEL_ENV}={level}: choose DEBUG, INFO, WARNING or ERROR")
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not any(h.get_name() == _HANDLER_NAME for h in logger.handlers):
            handler = _Stdout()
            handler.set_name(_HANDLER_NAME)
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
    return level


class _Stdout(logging.Handler):
    """Writes to whatever sys.stdout is when a message comes (a notebook's or a test's capture)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - logging's own rule: a failed message must not stop the program
            self.handleError(record)
