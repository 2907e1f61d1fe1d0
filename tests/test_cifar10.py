"""CIFAR-10 tools on a tiny synthetic copy: tools/cifar10_data.py (archive ->
LMDBs + mean, checksum) and the DG/GG/GG+DG study runner (real `caffe train`,
GG+DG from GG's snapshot at the switch, resume, report)."""
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

import cv2
import numpy as np
import pytest
from google.protobuf import text_format

from caffe.proto import caffe_pb2
from conftest import REPO
from gencnn import cifar10, study
from gencnn.lmdb_io import lmdb_count, read_lmdb


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


def test_cifar10_data_rejects_a_bad_checksum(archive, tmp_path):
    code, _, stderr = run_tool("cifar10_data.py", str(archive / "cifar10-jpeg.tar.gz"),
                               "--sha256sums", str(archive / "BAD_SUMS"),
                               "--out", str(tmp_path / "out"))
    assert code == 1 and "checksum mismatch" in stderr and stderr.count("\n") == 1
    assert not os.path.exists(str(tmp_path / "out"))


def tiny_solvers(cifar_data, tmp):
    """Copies of the three cifar10_quick solvers on the tiny data: batch 10,
    6 iterations (3 per epoch of 30 images), switch at iteration 4."""
    paths = {}
    for approach in study.APPROACHES:
        solver = study.read_solver(os.path.join(REPO, "solvers",
                                                "cifar10_quick_%s.prototxt" % approach))
        net = caffe_pb2.NetParameter()
        text_format.Merge(open(os.path.join(REPO, solver.net)).read(), net)
        for layer in net.layer:
            if layer.type == "Data":
                train = layer.include[0].phase == caffe_pb2.TRAIN
                layer.data_param.source = str(cifar_data / ("cifar10_%s_lmdb" % (
                    "train" if train else "test")))
                layer.data_param.batch_size = 10
                layer.transform_param.mean_file = str(cifar_data / "mean.binaryproto")
        net_path = os.path.join(tmp, "%s_net.prototxt" % approach)
        open(net_path, "w").write(text_format.MessageToString(net))
        solver.net = net_path
        solver.max_iter = 2 if approach == "gg_dg" else 6
        solver.test_iter[:] = [1]
        solver.test_interval = solver.snapshot = 2
        solver.display = 1
        paths[approach] = os.path.join(tmp, "%s_solver.prototxt" % approach)
        open(paths[approach], "w").write(text_format.MessageToString(solver))
    return paths


def test_study_runs_resumes_and_reports(cifar_data, tmp_path):
    runner = study.Study(tiny_solvers(cifar_data, str(tmp_path)), str(tmp_path / "runs"),
                         seeds=[1, 2], switch_iter=4, epoch_iters=3)
    messages = []
    runner.run_all(messages.append)
    assert messages.count("gg_dg_seed2: training") == 1
    results = runner.results()
    for seed in (1, 2):
        gg_dg = results["gg_dg"][seed]
        assert gg_dg["command"].endswith("-weights %s_iter_4.caffemodel"
                                          % runner.prefix("gg", seed))
        # the GG+DG curve starts at the switch (epoch 4/3) and ends at epoch 2
        assert [round(e, 3) for e, _ in gg_dg["test_curve"]] == [1.333, 2.0]
        assert len(results["dg"][seed]["test_curve"]) == 4      # iterations 0, 2, 4, 6
    gg = results["gg"][1]
    assert 0 < gg["ess_at_switch"] <= 1
    assert len(gg["train_ess"]) == 6        # display every iteration, 0 to 5
    # the seed changes the initialization, hence the training losses
    assert results["dg"][1]["train_loss"] != results["dg"][2]["train_loss"]

    # finished runs are skipped; an interrupted one resumes from its snapshot
    os.remove(runner.summary_path("dg", 1))
    for ext in ("caffemodel", "solverstate"):
        os.remove("%s_iter_6.%s" % (runner.prefix("dg", 1), ext))
    messages = []
    runner.run_all(messages.append)
    assert messages.count("dg_seed1: training") == 1 and len(
        [m for m in messages if m.endswith("done already")]) == 5
    resumed = runner.results()["dg"][1]
    assert "-snapshot %s_iter_4.solverstate" % runner.prefix("dg", 1) in resumed["command"]
    assert len(resumed["test_curve"]) == 4

    before = runner.results()
    runner.resummarize()                     # logs -> the same summaries
    assert runner.results() == before

    paths = [str(tmp_path / n) for n in ("r.json", "r.md", "r.png")]
    data = study.write_report(runner, *paths, meta={"title": "tiny", "command": "pytest",
                                                     "protocol": "", "test_images": "10"})
    assert data["complete"] and set(data["test_error"]) == set(study.APPROACHES)
    assert json.load(open(paths[0]))["test_error"]["gg"]["2"] == results["gg"][2]["test_error"]
    table = open(paths[1]).read()
    assert "| GG+DG |" in table and "±" in table
    assert open(paths[2], "rb").read(4) == b"\x89PNG"
