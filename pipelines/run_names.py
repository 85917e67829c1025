"""Names of the things a run keeps in its output folder.

    <output>/<run_id>/            a published run (`_SUCCESS` inside, written last)
    <output>/_staging-<run_id>/   the run while it is running
    <output>/_lock-<run_id>       who holds the run id (pipelines/run_lock.py)
    <output>/_trash-<run_id>-<n>/ a run replaced by --overwrite, being deleted

Every folder clipdedup makes holds a `_clipdedup.json` marker naming its run
id: only folders with it are ever deleted. A run id is joined onto the output
path, so it must be one plain name; `..`, `/abs` or `a/b` would point the
run's clean-up at other folders, and a leading `_` or `.` would hide the run
from readers (and collide with the names above).
"""

from __future__ import annotations

import re

MARKER = "_clipdedup.json"
SUCCESS = "_SUCCESS"
STAGING_PREFIX = "_staging-"
LOCK_PREFIX = "_lock-"
TRASH_PREFIX = "_trash-"

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class InvalidRunIdError(ValueError):
    """A run id that is not one plain folder name."""


def validate_run_id(run_id: str) -> str:
    """Returns `run_id` if it is one plain name, else raises InvalidRunIdError."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        raise InvalidRunIdError(
            f"invalid run id {run_id!r}: a run id is one plain name of 1-128 letters, digits, "
            "'.', '_' or '-', starting with a letter or digit (no '/', not '.' or '..')")
    return run_id


def staging_name(run_id: str) -> str:
    return STAGING_PREFIX + run_id


def lock_name(run_id: str) -> str:
    return LOCK_PREFIX + run_id


def trash_name(run_id: str, token: str) -> str:
    return f"{TRASH_PREFIX}{run_id}-{token}"
