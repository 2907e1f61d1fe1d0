"""Caffe Datum LMDBs: written atomically (temporary name, then rename)."""
import collections
import hashlib
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
    files.remove_stale_temps(path)      # left by a killed run
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
        files.replace_folder(tmp, path)
    except BaseException:
        env.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return count


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


class LmdbContent(object):
    """What one streamed pass over every entry of an LMDB learns (scan_lmdb):
    `entries`, the image `shape` (C, H, W) they all share, their `labels`
    (int64, key order) and `fingerprint`."""

    def __init__(self, path, entries, shape, labels, fingerprint):
        self.path, self.entries, self.shape = path, entries, shape
        self.labels, self.fingerprint = labels, fingerprint


# Scans by (real path, inode, size and mtime of data.mdb): a run fingerprints its
# LMDBs and checks their labels, one pass for both.
_SCANS = {}


def scan_lmdb(path, sample=8):
    """Read every entry of the LMDB at `path` once, streamed (one entry in
    memory at a time), and check what would otherwise abort Caffe or
    mislead a run: UserError (one line naming the entry) if it is empty, an
    entry is not a raw Caffe Datum, an image's shape differs from the first
    one's, or a float image holds a NaN or infinity.

    Its fingerprint: the entry count, a SHA-256 of the first and last
    `sample` entries (how runs recorded before full hashing identify it,
    kept so that such a run still resumes) and a SHA-256 of every key and
    value, so a rewrite of any entry is a different fingerprint."""
    env = _open(path)
    real = os.path.realpath(path)
    try:
        data = os.stat(os.path.join(real, "data.mdb"))
        stamp = (real, data.st_ino, data.st_size, data.st_mtime_ns)
    except OSError:
        stamp = None
    if stamp in _SCANS:
        env.close()
        return _SCANS[stamp]
    ends, every = hashlib.sha256(), hashlib.sha256()
    last = collections.deque(maxlen=sample)
    labels, shape, first_key = [], None, None
    try:
        with env.begin() as txn:
            for i, (key, value) in enumerate(txn.cursor()):
                if i < sample:
                    ends.update(key)
                    ends.update(value)
                last.append((key, value))
                every.update(key)
                every.update(value)
                datum = _datum(path, key, value)
                entry_shape = (datum.channels, datum.height, datum.width)
                if shape is None:
                    shape, first_key = entry_shape, key
                elif entry_shape != shape:
                    raise cli.UserError("%s: entry %s holds a %s image, the first entry (%s) "
                                        "a %s one" % (path, _key(key), _fmt(entry_shape),
                                                      _key(first_key), _fmt(shape)))
                if not len(datum.data):
                    pixels = np.asarray(datum.float_data, dtype=np.float32)
                    if not np.all(np.isfinite(pixels)):
                        raise cli.UserError("%s: entry %s holds a non-finite pixel (%s)"
                                            % (path, _key(key), pixels[~np.isfinite(pixels)][0]))
                labels.append(datum.label)
    except lmdb.Error as err:
        raise cli.UserError("%s is not a readable LMDB: %s" % (path, str(err).splitlines()[0]))
    finally:
        env.close()
    if not labels:
        raise cli.UserError("LMDB %s is empty" % path)
    for key, value in reversed(last):
        ends.update(key)
        ends.update(value)
    fingerprint = "%d entries, sha256 %s, every entry sha256 %s" % (
        len(labels), ends.hexdigest()[:16], every.hexdigest()[:16])
    content = LmdbContent(path, len(labels), shape, np.array(labels, dtype=np.int64),
                          fingerprint)
    if stamp is not None:
        _SCANS[stamp] = content
    return content


def lmdb_fingerprint(path):
    """The identity of an LMDB's content, every entry hashed (scan_lmdb,
    which also refuses an LMDB that would abort Caffe)."""
    return scan_lmdb(path).fingerprint


def same_fingerprint(recorded, now):
    """Is `now` (a fingerprint of today) the same content as `recorded`?
    A fingerprint recorded before full hashing is the first part of
    today's (count and first and last entries), compared as such."""
    return recorded == now or (isinstance(recorded, str) and isinstance(now, str) and
                               " entries, sha256 " in recorded and
                               ", every entry " not in recorded and
                               now.startswith(recorded + ", every entry "))


def check_labels(path, classes, net_name):
    """UserError (one line) unless every label of the LMDB at `path` is a
    class 0 .. classes - 1 of the net: Caffe reads a label past them as an
    index into the scores and corrupts memory (an abort at the end of
    training, or a wrong loss), so they are checked before training."""
    labels = scan_lmdb(path).labels
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if len(bad):
        raise cli.UserError("%s: entry %s has label %d; %s has %d classes (0 to %d)"
                            % (path, _key(_key_at(path, bad[0])), labels[bad[0]], net_name,
                               classes, classes - 1))


def _key_at(path, index):
    env = _open(path)
    try:
        with env.begin() as txn:
            for i, key in enumerate(txn.cursor().iternext(keys=True, values=False)):
                if i == index:
                    return key
    finally:
        env.close()
    return b"?"


def _key(key):
    return repr(key.decode("ascii", "replace"))


def _fmt(shape):
    return "x".join(map(str, shape))


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
    if it is empty, its images differ in shape or (input_shape) are not of
    that shape, or one holds a NaN or infinity; `name` (default "LMDB
    <path>") names it in that line, `reader` the input the images are for."""
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
    bad = np.flatnonzero(~np.isfinite(images.reshape(len(images), -1)).all(axis=1))
    if len(bad):
        raise cli.UserError("%s: image %d (in key order) holds a non-finite pixel"
                            % (name, bad[0]))
    return images, np.array([label for _, label in entries], dtype=np.int64)


def _datum(path, key, value):
    """The Datum of an entry; UserError unless it is a raw (not encoded)
    Caffe Datum whose data fits its shape."""
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)
    except DecodeError as err:
        raise cli.UserError("%s: entry %s is not a Caffe Datum (%s)" % (path, _key(key), err))
    if datum.encoded:
        raise cli.UserError("%s: entry %s is an encoded (compressed) image; gencnn reads "
                            "raw pixel Datums (convert_imageset without --encoded)"
                            % (path, _key(key)))
    size = datum.channels * datum.height * datum.width
    if size == 0 or (len(datum.data) or len(datum.float_data)) != size:
        raise cli.UserError("%s: entry %s is not a Caffe Datum image (%d values for "
                            "%dx%dx%d)" % (path, _key(key), len(datum.data) or
                                           len(datum.float_data), datum.channels,
                                           datum.height, datum.width))
    return datum


def _parse_datum(path, key, value):
    return datum_to_array(_datum(path, key, value))


def shuffled_copy(source, path, seed):
    """Write the entries of LMDB `source` to a new LMDB `path` in the random
    order of `seed` (Caffe's Data layer reads in key order, so this is how a
    seed changes the order of the training data)."""
    entries = list(read_lmdb(source))
    order = np.random.RandomState(seed).permutation(len(entries))
    return write_lmdb(path, (entries[i] for i in order))
