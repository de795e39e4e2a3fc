"""Command-line entry points: every mistake on the command line is one `error: ...` line.

absl parses the flags before a command's `main` runs, and ml_collections'
config flag loads the config file while parsing. Its errors (a missing file,
an unknown preset, a misspelt field, a value of the wrong type) would surface
as tracebacks or as absl's "FATAL Flags parsing error". `run(main)` parses
with `parse_flags` instead, which turns each into one line on stderr and exit
status 2, the same as the project's own errors inside `main`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from absl import app, flags

from xtc_jax.errors import XtcError

EXIT_USAGE = 2


def fail(message: str) -> None:
    """Prints `error: message` and exits with status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def _config_files(argv: Sequence[str], names: Sequence[str]) -> list[tuple[str, str]]:
    """(flag, file) of each --NAME=FILE[:preset] (or --NAME FILE) of a config flag in argv."""
    found = []
    for i, arg in enumerate(argv):
        for name in names:
            value = None
            if arg.startswith(f"--{name}="):
                value = arg.split("=", 1)[1]
            elif arg == f"--{name}" and i + 1 < len(argv):
                value = argv[i + 1]
            if value is not None:
                found.append((name, value.split(":", 1)[0]))
    return found


def describe(error: BaseException) -> str:
    """One line for an error raised while the flags and the config file are parsed."""
    if isinstance(error, KeyError) and error.args:  # ml_collections: "'trian'\nDid you mean..."
        text = str(error.args[0]).replace("\n", ". ")
        return f"no config field {text}"
    if isinstance(error, flags.Error):
        return str(error).replace("\n", " ")
    return str(error).strip().splitlines()[-1].strip() if str(error).strip() else repr(error)


def parse_flags(argv: list[str], config_flags: Sequence[str] = ("config",)) -> list[str]:
    """absl's flag parsing with every error as one `error:` line (exit 2)."""
    for name, path in _config_files(argv, config_flags):
        if not os.path.isfile(path):
            fail(f"--{name}={path}: no such config file (give a path such as "
                 "configs/normal.py, relative to the folder you run from).")  # fmt: skip
    try:
        return flags.FLAGS(argv)
    except (XtcError, flags.Error, KeyError, ValueError, TypeError, AttributeError,
            OSError) as error:  # fmt: skip
        fail(describe(error))
    raise AssertionError("unreachable")  # fail exits


def run(main: Callable[[list[str]], None]) -> None:
    """`absl.app.run(main)` with `parse_flags`."""
    app.run(main, flags_parser=parse_flags)
