"""CIFAR-10 tools on a tiny synthetic copy: tools/cifar10_data.py (archive ->
LMDBs + mean, checksum). The study runner is tested in test_experiment.py."""
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile

import cv2
import numpy as np
import pytest

from caffe.proto import caffe_pb2
from conftest import REPO
from gencnn.data import cifar10
from gencnn.data.lmdb_io import read_lmdb


def run_tool(script, *args):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", script)] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, cwd=REPO, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """cifar10-jpeg.tar.gz look-alike: 10 classes x (3 train, 1 test), each
    image a flat colour coding its class, plus its SHA256SUMS."""
    root = tmp_path_factory.mktemp("cifar")
    path = str(root / "cifar10-jpeg.tar.gz")
    with tarfile.open(path, "w:gz") as tar:
        for split, count in (("train", 3), ("test", 1)):
            for label, name in enumerate(cifar10.CLASSES):
                for i in range(count):
                    image = np.full((32, 32, 3), 20 * label + i, np.uint8)
                    data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 100])[1]
                    info = tarfile.TarInfo("%s/%s/%04d.jpg" % (split, name, i))
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data.tobytes()))
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    (root / "SHA256SUMS").write_text("%s  cifar10-jpeg.tar.gz\n" % digest)
    (root / "BAD_SUMS").write_text("%s  cifar10-jpeg.tar.gz\n" % ("0" * 64))
    return root


@pytest.fixture(scope="module")
def cifar_data(archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("cifar_out")
    code, stdout, stderr = run_tool("cifar10_data.py", str(archive / "cifar10-jpeg.tar.gz"),
                                    "--sha256sums", str(archive / "SHA256SUMS"),
                                    "--out", str(out), "--snapshots", str(out / "snapshots"))
    assert code == 0, stderr
    assert "checksum ok" in stdout
    return out


def test_cifar10_data_writes_labelled_shuffled_lmdbs(cifar_data):
    train = list(read_lmdb(str(cifar_data / "cifar10_train_lmdb")))
    test = list(read_lmdb(str(cifar_data / "cifar10_test_lmdb")))
    assert len(train) == 30 and len(test) == 10
    for image, label in train + test:       # alphabetical label <-> colour 20*label+i
        assert image.shape == (3, 32, 32)
        assert abs(int(np.median(image)) // 20 - label) == 0
    labels = [label for _, label in train]
    assert sorted(labels) == sorted(list(range(10)) * 3) and labels != sorted(labels)
    assert [label for _, label in test] == list(range(10))
    mean = caffe_pb2.BlobProto()
    mean.ParseFromString(open(str(cifar_data / "mean.binaryproto"), "rb").read())
    expected = np.mean([image for image, _ in train], axis=0).ravel()
    assert np.allclose(mean.data, expected, atol=1e-3)


def test_cifar10_data_rejects_an_incomplete_set(archive, tmp_path):
    """The archive's extracted folder with one class's training
    images gone is refused in one line (it became an unbalanced LMDB)."""
    folder = tmp_path / "extracted"
    with tarfile.open(str(archive / "cifar10-jpeg.tar.gz")) as tar:
        tar.extractall(str(folder))
    shutil.rmtree(str(folder / "train" / "cat"))
    code, _, stderr = run_tool("cifar10_data.py", str(folder), "--out", str(tmp_path / "out"),
                               "--snapshots", str(tmp_path / "snapshots"))
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert "incomplete train set" in stderr and "0 cat images, 3 of every other" in stderr
    assert not os.path.exists(str(tmp_path / "out"))


def test_cifar10_data_rejects_a_bad_checksum(archive, tmp_path):
    code, _, stderr = run_tool("cifar10_data.py", str(archive / "cifar10-jpeg.tar.gz"),
                               "--sha256sums", str(archive / "BAD_SUMS"),
                               "--out", str(tmp_path / "out"))
    assert code == 2 and "checksum mismatch" in stderr and stderr.count("\n") == 1
    assert not os.path.exists(str(tmp_path / "out"))
