"""Quoting an underlying error in one line (every one-line message in archlab does it this way).
A leaf: imports no archlab module."""

from __future__ import annotations

import argparse


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first non-empty line of an error's message (its type name if there is none), at most
    ``limit`` characters."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    line = lines[0] if lines else type(exc).__name__
    return line[:limit] if limit else line


def describe(exc: BaseException, limit: int | None = None) -> str:
    """``TypeName: first line`` (``TypeName`` alone for an empty message); the line is cut at
    ``limit`` characters."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    return f"{type(exc).__name__}: {lines[0][:limit] if limit else lines[0]}"


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors raise ``error_type(message)`` (one line, no usage dump)
    instead of exiting: ``OneLineParser(error_type=ClaimError, prog=…)``."""

    def __init__(self, *args, error_type: type[Exception] = ValueError, **kwargs):
        super().__init__(*args, **kwargs)
        self.error_type = error_type

    def error(self, message: str):
        raise self.error_type(message)
