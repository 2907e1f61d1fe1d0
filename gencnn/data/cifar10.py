"""CIFAR-10 from a folder or .tar.gz of JPEGs laid out as
<split>/<class>/<name>.jpg (as ../shared/data/cifar10) to Caffe LMDBs.

Labels are the class folders' alphabetical index (airplane=0 ... truck=9).
Images are stored as Caffe stores them (BGR, C x H x W uint8), so the LMDBs
match what convert_imageset would write for the same files.
"""
import hashlib
import os
import tarfile

import cv2
import numpy as np

from gencnn.cli import UserError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
SPLITS = ("train", "test")
SIZE = 32


def sha256(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256sums(sums_path, base_dir, names=None):
    """Check files named in a SHA256SUMS file (paths relative to base_dir).

    With `names`, only those entries are checked and each must be listed.
    Returns the number of files checked.
    """
    listed = {}
    with open(sums_path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or len(parts[0]) != 64:
                raise UserError("%s:%d: not a 'sha256  name' line" % (sums_path, number))
            listed[parts[1].lstrip("*")] = parts[0].lower()
    if names is None:
        names = list(listed)
    for name in names:
        if name not in listed:
            raise UserError("%s is not listed in %s" % (name, sums_path))
        path = os.path.join(base_dir, name)
        if not os.path.isfile(path):
            raise UserError("%s (listed in %s) not found" % (path, sums_path))
        if sha256(path) != listed[name]:
            raise UserError("checksum mismatch for %s (expected %s from %s)"
                            % (path, listed[name], sums_path))
    return len(names)


def _parse_member(name):
    """(split, label, relative name) of 'train/cat/0001.jpg', else None."""
    parts = name.strip("./").split("/")
    if len(parts) < 3 or not parts[-1].lower().endswith((".jpg", ".jpeg", ".png")):
        return None
    split, cls = parts[-3], parts[-2]
    if split not in SPLITS:
        return None
    if cls not in CLASSES:
        raise UserError("unknown CIFAR-10 class folder %r in %s" % (cls, name))
    return split, CLASSES.index(cls), "/".join(parts[-3:])


def _decode(data, name):
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError("cannot decode image %s" % name)
    if image.shape != (SIZE, SIZE, 3):
        raise UserError("%s is %dx%d, expected %dx%d" % (name, image.shape[1], image.shape[0],
                                                          SIZE, SIZE))
    return image.transpose(2, 0, 1).copy()    # H x W x BGR -> BGR x H x W


def load(source):
    """{split: (images N x 3 x 32 x 32 uint8, labels N, names N)} sorted by name."""
    found = {split: [] for split in SPLITS}
    if os.path.isdir(source):
        for root, _, files in os.walk(source):
            for filename in files:
                path = os.path.join(root, filename)
                parsed = _parse_member(os.path.relpath(path, source).replace(os.sep, "/"))
                if parsed:
                    with open(path, "rb") as f:
                        found[parsed[0]].append((parsed[2], parsed[1], f.read()))
    elif os.path.isfile(source):
        try:
            with tarfile.open(source, "r:*") as tar:
                for member in tar:
                    parsed = member.isfile() and _parse_member(member.name)
                    if parsed:
                        found[parsed[0]].append(
                            (parsed[2], parsed[1], tar.extractfile(member).read()))
        except (tarfile.TarError, OSError, EOFError) as exc:
            reason = str(exc).splitlines()[0].rstrip(":") or type(exc).__name__
            raise UserError("cannot read archive %s: %s" % (source, reason))
    else:
        raise UserError("CIFAR-10 source %s not found" % source)
    data = {}
    for split, items in found.items():
        if not items:
            raise UserError("no %s/<class>/*.jpg images in %s" % (split, source))
        items.sort()
        images = np.stack([_decode(raw, name) for name, _, raw in items])
        labels = np.array([label for _, label, _ in items], np.int64)
        data[split] = (images, labels, [name for name, _, _ in items])
    return data


def shuffled(images, labels, seed):
    """A fixed permutation: Caffe's Data layer reads an LMDB in key order, and
    class-sorted batches would break both gradients (the generative one needs
    several classes in every batch)."""
    order = np.random.RandomState(seed).permutation(len(labels))
    return images[order], labels[order]
