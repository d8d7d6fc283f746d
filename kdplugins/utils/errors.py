"""The one kind of error a user fixes in the options, the files or the command line, not in the code.

Every such error of kdplugins derives from :class:`ConfigurationError` (and from the built-in error it was before, so
that ``except ValueError`` and the like keep catching it). The command lines (``kd-train``, ``kd-test``, ``kd-export``,
``kd-infer``) print its message alone, without a traceback, and exit with 2 (:func:`exit_on_configuration_error`);
any other exception is a bug or an environment failure and keeps its traceback.
"""
import contextlib
import sys
from typing import Iterator


class ConfigurationError(Exception):
    """A problem in the options, an input file or the command line; the message names it and the fix."""


@contextlib.contextmanager
def exit_on_configuration_error(program: str) -> Iterator[None]:
    """Run a command line's body: a :class:`ConfigurationError` ends the process with its message and exit code 2."""
    try:
        yield
    except ConfigurationError as error:
        print(f'{program}: error: {error}', file=sys.stderr, flush=True)
        raise SystemExit(2) from None
