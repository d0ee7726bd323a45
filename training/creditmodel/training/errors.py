"""Failure classes of a training run; the CLI maps each to its documented exit code."""

from __future__ import annotations


class BadInputError(Exception):
    """The data or the arguments cannot produce a model (exit code 2). The message names the
    column, file or argument and what is wrong with it."""
