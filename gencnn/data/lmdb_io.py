"""Caffe Datum LMDBs: written atomically (temporary name, then rename)."""
import errno
import os
import shutil

import lmdb
import numpy as np
from google.protobuf.message import DecodeError

from caffe.proto import caffe_pb2
from gencnn import cli, files


# make_datum / datum_to_array are caffe.io.array_to_datum / datum_to_array
# written again on purpose: upstream's use ndarray.tostring / np.fromstring,
# which numpy 2 removed. Our Caffe build patches them, a user's own Caffe 1.0
# does not, so gencnn keeps this one copy and never calls caffe.io's.
def make_datum(image, label):
    """Datum from a C x H x W array: uint8 -> data bytes, else float_data."""
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError("datum image must be C x H x W, got shape %s" % (image.shape,))
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = image.shape
    if image.dtype == np.uint8:
        datum.data = image.tobytes()
    else:
        datum.float_data.extend(image.astype(np.float32).ravel().tolist())
    datum.label = int(label)
    return datum


def datum_to_array(datum):
    """(C x H x W array, label) from a Datum."""
    shape = (datum.channels, datum.height, datum.width)
    if len(datum.data):
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape).copy(), datum.label
    return np.asarray(datum.float_data, dtype=np.float32).reshape(shape), datum.label


def write_lmdb(path, examples, map_size=1 << 40, commit_every=1000):
    """Write (image, label) pairs to a new LMDB at `path`, keys '%08d'.

    The LMDB is built under a temporary name of its own (files.temp_name) and
    renamed when complete, so an interrupted run leaves no half-written
    database under the final name, and two concurrent writers of one `path`
    both finish: each installs its own complete copy, the last one stays.
    Returns the number of entries written.
    """
    for stale in files.stale_temps(path):      # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = files.temp_name(path)
    os.mkdir(tmp)
    env = lmdb.open(tmp, map_size=map_size, subdir=True)
    count = 0
    try:
        txn = env.begin(write=True)
        for image, label in examples:
            txn.put(b"%08d" % count, make_datum(image, label).SerializeToString())
            count += 1
            if count % commit_every == 0:
                txn.commit()
                txn = env.begin(write=True)
        txn.commit()
        stored = env.stat()["entries"]
        if stored != count:
            raise cli.UserError("%s: stored %d of %d entries" % (path, stored, count))
        env.close()
        install_lmdb(tmp, path)
    except BaseException:
        env.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return count


def install_lmdb(tmp, path):
    """Rename the finished LMDB `tmp` to `path`. A folder already there (an
    older LMDB, or a concurrent writer's just installed) is first renamed
    aside and then deleted, so `path` never holds a mix of two."""
    while True:
        try:
            os.rename(tmp, path)
            return
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        old = files.temp_name(path)
        try:
            os.rename(path, old)
        except FileNotFoundError:      # another writer moved it first: retry
            continue
        shutil.rmtree(old, ignore_errors=True)


def _open(path):
    """Read-only LMDB environment; an unreadable one is a UserError."""
    if not os.path.isdir(path):
        raise cli.UserError("LMDB %s not found" % path)
    try:
        return lmdb.open(path, readonly=True, lock=False, subdir=True)
    except lmdb.Error as err:
        raise cli.UserError("%s is not a readable LMDB: %s" % (path, str(err).splitlines()[0]))


def lmdb_count(path):
    """Number of entries of an LMDB (without reading them)."""
    env = _open(path)
    try:
        return env.stat()["entries"]
    finally:
        env.close()


def lmdb_fingerprint(path, sample=8):
    """A cheap identity of an LMDB: its entry count and a SHA-256 of its
    first and last `sample` entries (keys and values), so a replaced or
    rewritten LMDB is told apart without reading it all."""
    import hashlib
    env = _open(path)
    digest = hashlib.sha256()
    try:
        entries = env.stat()["entries"]
        with env.begin() as txn:
            cursor = txn.cursor()
            for first in (True, False):
                found = cursor.first() if first else cursor.last()
                for _ in range(sample if found else 0):
                    digest.update(cursor.key())
                    digest.update(cursor.value())
                    if not (cursor.next() if first else cursor.prev()):
                        break
    except lmdb.Error as err:
        raise cli.UserError("%s is not a readable LMDB: %s" % (path, str(err).splitlines()[0]))
    finally:
        env.close()
    return "%d entries, sha256 %s" % (entries, digest.hexdigest()[:16])


def read_lmdb(path, limit=None):
    """Yield (image, label) in key order; a corrupt LMDB or an entry that is
    not a Caffe Datum is a UserError (one line), not a traceback."""
    env = _open(path)
    try:
        with env.begin() as txn:
            for i, (key, value) in enumerate(txn.cursor()):
                if limit is not None and i >= limit:
                    break
                yield _parse_datum(path, key, value)
    except lmdb.Error as err:
        raise cli.UserError("%s is not a readable LMDB: %s" % (path, str(err).splitlines()[0]))
    finally:
        env.close()


def lmdb_images(path, scale=1.0, limit=None, input_shape=None, name=None,
                reader="the net's input"):
    """The one reader of an LMDB's images: (images, labels) of its first
    `limit` entries (default all) in key order, the images float64
    (n x C x H x W) times `scale`, the labels int64. UserError (one line)
    if it is empty, or its images differ in shape or (input_shape) are not
    of that shape; `name` (default "LMDB <path>") names it in that line,
    `reader` the input the images are for."""
    name = name or "LMDB %s" % path
    entries = list(read_lmdb(path, limit))
    if not entries:
        raise cli.UserError("%s is empty" % name)
    shapes = sorted({image.shape for image, _ in entries})
    if len(shapes) > 1:
        raise cli.UserError("%s holds images of several shapes: %s"
                            % (name, ", ".join(map(str, shapes))))
    if input_shape is not None and shapes[0] != tuple(input_shape):
        raise cli.UserError("%s images %s do not match %s %s"
                            % (name, shapes[0], reader, tuple(input_shape)))
    images = np.array([image for image, _ in entries], dtype=np.float64) * scale
    return images, np.array([label for _, label in entries], dtype=np.int64)


def _parse_datum(path, key, value):
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)
        return datum_to_array(datum)
    except (DecodeError, ValueError) as err:
        raise cli.UserError("%s: entry %r is not a Caffe Datum (%s)"
                            % (path, key.decode("ascii", "replace"), err))


def shuffled_copy(source, path, seed):
    """Write the entries of LMDB `source` to a new LMDB `path` in the random
    order of `seed` (Caffe's Data layer reads in key order, so this is how a
    seed changes the order of the training data)."""
    entries = list(read_lmdb(source))
    order = np.random.RandomState(seed).permutation(len(entries))
    return write_lmdb(path, (entries[i] for i in order))
