"""Argument types the commands share: each turns a bad value into argparse's one-line usage error (exit 2)."""

from __future__ import annotations

import argparse


def seconds(text: str) -> float:
    """Return `text` as a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError("SECONDS must be 0 or more")
    return value


def positive_seconds(text: str) -> float:
    """Return `text` as a positive number of seconds."""
    value = seconds(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("SECONDS must be positive")
    return value


def count(text: str) -> int:
    """Return `text` as a whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)
