#!/usr/bin/env python
"""Write prototxt/ and solvers/ from gencnn/netgen.py (the single source).

Run it after editing gencnn/netgen.py; tests/test_prototxt.py fails while the
committed files differ from what this writes.
"""
import argparse
import os
import sys

import _init_paths  # noqa: F401
from gencnn import cli, netgen
from gencnn.config import REPO_ROOT


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=REPO_ROOT,
                        help="root under which prototxt/ and solvers/ are written "
                             "(default: the repository, %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if any file differs")
    args = parser.parse_args(argv)
    if not args.check:
        cli.check_writable(args.out)
    stale = []
    for rel, text in netgen.all_files().items():
        path = os.path.join(args.out, rel)
        current = open(path).read() if os.path.exists(path) else None
        if current == text:
            continue
        stale.append(rel)
        if not args.check:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            cli.write_atomic(path, text)
            print("wrote %s" % rel)
    if args.check and stale:
        print("out of date: %s (run tools/generate_prototxt.py)" % ", ".join(stale),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
