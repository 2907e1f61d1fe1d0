"""What every gencnn command-line tool shares: one-line errors, exit codes,
and outputs that are never half-written."""
import os
import sys


class UserError(Exception):
    """Bad input or environment: reported as one line, exit status 2."""


def run(main, argv=None):
    """Call main(argv); turn UserError (and a missing file) into one stderr line.

    Programming errors still raise with a traceback: they are bugs to report,
    not input to correct.
    """
    try:
        status = main(argv)
    except UserError as err:
        print("error: %s" % err, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0 if status is None else status


def write_atomic(path, text):
    """Write `text` to `path` through a temporary name and a rename, so the
    file is either complete or absent (never half-written after a kill)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
