"""What every gencnn command-line tool shares: one-line errors, exit codes,
option types, and an output check before any work. Writing the outputs
(atomically) is gencnn/files.py's."""
import argparse
import math
import os
import re
import sys


class UserError(Exception):
    """Bad input or environment: reported as one line, exit status 2.

    The one error class gencnn raises for what the user can correct (bad
    data, a failed Caffe tool, a diverged run, ...): callers tell only this
    from a bug (any other exception, reported with its traceback)."""


def run(main, argv=None):
    """Call main(argv); turn UserError and OSError (a missing or unwritable
    file, a full disk: the environment, not the code) into one stderr line
    `error: ...` and exit status 2.

    Programming errors still raise with a traceback: they are bugs to report,
    not input to correct.
    """
    try:
        status = main(argv)
    except UserError as err:
        print("error: %s" % err, file=sys.stderr)
        return 2
    except OSError as err:
        where = err.filename if err.filename is not None else ""
        print("error: %s%s" % (where + ": " if where else "", err.strerror or err),
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0 if status is None else status


# ---------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------

class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors go through run(): one `error:` line, exit 2
    (argparse's own prints the usage too, a second line)."""

    def error(self, message):
        # "argument --seed: must be >= 0, got -1" -> "--seed must be >= 0, got -1"
        match = re.match(r"argument (\S+?)(/\S+)?: (.*)$", message)
        if match and not match.group(3).startswith(("invalid", "expected", "not allowed")):
            message = "%s %s" % (match.group(1), match.group(3))
        raise UserError(message)


def _number(kind, text, test, what):
    """An argparse type: `kind`(text), finite and passing `test`, else a
    message saying what it must be."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be %s, got '%s'" % (what, text))
    if (kind is float and not math.isfinite(value)) or not test(value):
        raise argparse.ArgumentTypeError("must be %s, got %s" % (what, text))
    return value


def positive_int(text):
    return _number(int, text, lambda v: v > 0, "a positive integer")


def nonneg_int(text):
    return _number(int, text, lambda v: v >= 0, "an integer >= 0")


def uint32(text):
    """An integer in [0, 2^32): what numpy's RandomState and Caffe take as a
    seed, and a range of chain numbers that int64 arithmetic cannot
    overflow."""
    return _number(int, text, lambda v: 0 <= v < 2 ** 32, "an integer in [0, 2^32)")


seed = uint32


def positive_float(text):
    return _number(float, text, lambda v: v > 0, "a positive number")


def nonneg_float(text):
    return _number(float, text, lambda v: v >= 0, "a number >= 0")


def finite_float(text):
    return _number(float, text, lambda v: True, "a finite number")


def open_fraction(text):
    return _number(float, text, lambda v: 0 < v < 1, "a number in (0, 1)")


# ---------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------

def check_writable(path, folder=True):
    """Raise UserError unless `path` (an output folder, or with folder=False
    an output file) can be written: called before any work, so a bad --out
    costs nothing. Creates nothing."""
    what = "folder" if folder else "file"
    if os.path.exists(path):
        if folder != os.path.isdir(path):
            raise UserError("%s exists and is not a %s" % (path, what))
        if not os.access(path, os.W_OK | (os.X_OK if folder else 0)):
            raise UserError("output %s %s is not writable" % (what, path))
        if folder:
            return
    # The nearest existing folder above must let us create the rest.
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UserError("cannot create output %s %s: %s is a file" % (what, path, parent))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError("cannot create output %s %s: %s is not writable"
                        % (what, path, parent))
