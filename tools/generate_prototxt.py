#!/usr/bin/env python
"""Write prototxt/ and solvers/ from gencnn/netgen.py (the single source).

Run it after editing gencnn/netgen.py; tests/test_prototxt.py fails while the
committed files differ from what this writes. A .prototxt in prototxt/ or
solvers/ that netgen no longer writes is named, not deleted (--check fails).
"""
import argparse
import os
import sys

import _init_paths  # noqa: F401
from gencnn import cli, files, netgen
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
    generated_files = netgen.all_files()
    for rel, generated in generated_files.items():
        text = generated.text
        path = os.path.join(args.out, rel)
        current = open(path).read() if os.path.exists(path) else None
        if current == text:
            continue
        stale.append(rel)
        if not args.check:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            files.write_atomic(path, text)
            print("wrote %s" % rel)
    # Files netgen no longer writes (a renamed solver, say) are left in place:
    # said here, and removing them is up to the user (git rm).
    orphans = []
    for folder in sorted({os.path.dirname(rel) for rel in generated_files}):   # prototxt, solvers
        here = os.path.join(args.out, folder)
        names = sorted(os.listdir(here)) if os.path.isdir(here) else []
        orphans += [folder + "/" + name for name in names
                    if name.endswith(".prototxt") and folder + "/" + name not in generated_files]
    if orphans:
        print("not written by gencnn/netgen.py (remove them: git rm): %s"
              % ", ".join(orphans), file=sys.stderr)
    if args.check and stale:
        print("out of date: %s (run tools/generate_prototxt.py)" % ", ".join(stale),
              file=sys.stderr)
    if args.check and (stale or orphans):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
