"""Caffe Datum LMDBs: written atomically (temporary name, then rename)."""
import os
import shutil

import lmdb
import numpy as np

from caffe.proto import caffe_pb2


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

    The LMDB is built under `path + '.tmp'` and renamed when complete, so an
    interrupted run leaves no half-written database under the final name.
    Returns the number of entries written.
    """
    tmp = path.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
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
    except BaseException:
        env.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    env.close()
    if os.path.exists(path):
        shutil.rmtree(path)
    os.rename(tmp, path)
    return count


def lmdb_count(path):
    """Number of entries of an LMDB (without reading them)."""
    env = lmdb.open(path, readonly=True, lock=False, subdir=True)
    try:
        return env.stat()["entries"]
    finally:
        env.close()


def read_lmdb(path, limit=None):
    """Yield (image, label) in key order."""
    env = lmdb.open(path, readonly=True, lock=False, subdir=True)
    try:
        with env.begin() as txn:
            for i, (_, value) in enumerate(txn.cursor()):
                if limit is not None and i >= limit:
                    break
                datum = caffe_pb2.Datum()
                datum.ParseFromString(value)
                yield datum_to_array(datum)
    finally:
        env.close()
