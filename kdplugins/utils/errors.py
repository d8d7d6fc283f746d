"""The one kind of error a user fixes in the options, the files or the command line, not in the code.

Every such error of kdplugins derives from :class:`ConfigurationError` (and from the built-in error it was before, so
that ``except ValueError`` and the like keep catching it). The command lines (``kd-train``, ``kd-test``, ``kd-export``,
``kd-infer``, ``kd-download`` and their ``python -m`` forms) print its message alone, without a traceback, and exit
with 2 (:func:`exit_on_configuration_error`); ``--traceback`` on their command line shows the traceback as well. Any
other exception is a bug or an environment failure and keeps its traceback.
"""
import contextlib
import sys
from typing import Iterator


class ConfigurationError(Exception):
    """A problem in the options, an input file or the command line; the message names it and the fix."""


TRACEBACK_FLAG = '--traceback'


@contextlib.contextmanager
def exit_on_configuration_error(program: str) -> Iterator[None]:
    """Run a command line's body: a :class:`ConfigurationError` ends the process with its message and exit code 2.

    ``--traceback`` in ``sys.argv`` (taken out before the command parses its arguments) lets the error through with
    its traceback instead (exit code 1), for a report or a look at where it was raised."""
    show_traceback = TRACEBACK_FLAG in sys.argv
    sys.argv[:] = [arg for arg in sys.argv if arg != TRACEBACK_FLAG]
    try:
        yield
    except ConfigurationError as error:
        if show_traceback:
            raise
        print(f'{program}: error: {error}\n({TRACEBACK_FLAG} shows where it was raised)', file=sys.stderr, flush=True)
        raise SystemExit(2) from None
