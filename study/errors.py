"""User-facing errors: every user mistake is one of these, never a bare traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix. CLIs print the message and exit with code 2."""

    exit_code = 2


class DataError(UserError):
    """A data set is missing, malformed or inconsistent."""


class ConfigError(UserError):
    """A search space, CLI argument or configuration is invalid."""


def run_cli(main_fn, argv=None) -> int:
    """Run ``main_fn(argv)``, turning a UserError into ``error: ...`` on stderr and exit 2."""
    import sys

    try:
        rc = main_fn(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `... | head`: stop quietly, as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return int(rc or 0)
