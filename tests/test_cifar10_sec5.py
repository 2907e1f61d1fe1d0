"""Section-5 learning, T = 1 sampling and the sample measures on CIFAR-10's
cifar10_quick (mean image subtracted), real Caffe on small LMDBs cut from
the real CIFAR-10, and the input transform they share with LeNet."""
import json
import os
import shutil

import numpy as np
import pytest

import caffe
from conftest import one_line_error, run_tool
from gencnn import caffe_utils, netgen
from gencnn.config import REPO_ROOT
from gencnn.data.lmdb_io import lmdb_images, read_lmdb, write_lmdb
from gencnn.data.transform import InputTransform
from test_generative_learning import kill_after_checkpoint

caffe.set_mode_cpu()
CIFAR = netgen.CIFAR10_QUICK


@pytest.fixture(scope="module")
def cifar_small(tmp_path_factory, shared_dir):
    """The real CIFAR-10 through tools/cifar10_data.py, cut to its first 300
    training and 200 test images (LMDBs), with the full training mean."""
    full = tmp_path_factory.mktemp("cifar_full")
    source = os.path.join(shared_dir, "data", "cifar10")
    run_tool("cifar10_data.py", os.path.join(source, "cifar10-jpeg.tar.gz"), "--sha256sums",
             os.path.join(source, "SHA256SUMS"), "--out", full, "--snapshots", full / "snap")
    out = tmp_path_factory.mktemp("cifar_small")
    for split, count in (("train", 300), ("test", 200)):
        entries = [(image.astype(np.uint8), label) for image, label
                   in read_lmdb(str(full / ("cifar10_%s_lmdb" % split)), count)]
        write_lmdb(str(out / ("cifar10_%s_lmdb" % split)), entries)
    shutil.copy(str(full / "mean.binaryproto"), str(out / "mean.binaryproto"))
    shutil.rmtree(str(full))
    return out


def cifar_transform(data):
    return InputTransform.of_net(CIFAR, {"mean_file": str(data / "mean.binaryproto")})


# ------------------------------------------------------------- the transform
def test_lenet_transform_is_its_scale_bit_for_bit(subset):
    """What keeps LeNet's runs bit-identical: the same multiplication, and
    the box (0, 1) as Python floats (float32 chains stay float32)."""
    transform = InputTransform.of_net(netgen.LENET)
    path = str(subset / "mnist_train_lmdb")
    mine, labels = transform.lmdb_images(path, 50)
    theirs, their_labels = lmdb_images(path, 0.00390625, 50)
    assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs)
    assert np.array_equal(labels, their_labels)
    lo, hi = transform.bounds
    assert (lo, hi) == (0.0, 1.0) and type(lo) is float and type(hi) is float
    assert transform.quantum == 1 / 256.0


def test_cifar_transform_is_caffes_data_layer(cifar_small, tmp_path):
    """transform.lmdb_images gives exactly what cifar10_quick's TEST-phase
    Data layer feeds the net (float32), the inverse gives the pixels back,
    and every image lies in the box."""
    args = {"test_source": str(cifar_small / "cifar10_test_lmdb"), "test_batch": 50,
            "mean_file": str(cifar_small / "mean.binaryproto")}
    net_path = tmp_path / "data.prototxt"
    net_path.write_text(str(netgen._net("data", [netgen.data_layer(
        CIFAR, caffe.TEST, dict(CIFAR["data_args"], **args))])))
    net = caffe.Net(str(net_path), caffe.TEST)
    net.forward()
    transform = cifar_transform(cifar_small)
    x, labels = transform.lmdb_images(args["test_source"], 50, (3, 32, 32))
    assert np.array_equal(net.blobs["data"].data, x.astype(np.float32))
    assert np.array_equal(net.blobs["label"].data, labels.astype(np.float32))
    pixels = np.array([image for image, _ in read_lmdb(args["test_source"], 50)])
    np.testing.assert_allclose(transform.to_pixels(x), pixels, atol=1e-9)
    lo, hi = transform.bounds
    assert lo.shape == hi.shape == (3, 32, 32) and np.allclose(hi - lo, 256.0)
    assert (x >= lo).all() and (x < hi).all()


# ------------------------------------------------------ section-5 learning
SMALL = ["--synthesized", 6, "--buffer-size", 3, "--mcmc-iters", 1, "--leapfrog-steps", 2,
         "--reference-count", 200, "--no-progress"]


def small_args(data, out, *extra):
    return ["--net", "cifar10_quick", "--out", out,
            "--train-lmdb", data / "cifar10_train_lmdb", "--test-lmdb", data / "cifar10_test_lmdb",
            "--mean-file", data / "mean.binaryproto"] + SMALL + list(extra)


@pytest.mark.slow
def test_cifar10_generative_learning_keeps_images_valid_and_resumes(cifar_small, tmp_path):
    """cifar10_quick learns with the fitted q on the logit scale: every
    synthesized image lies strictly inside the box of its pixels (0 .. 256
    minus the mean image), the run reads the net, LMDBs and mean it was
    given, and kill -9 + --resume ends at the same weights and chains."""
    straight = tmp_path / "straight"
    # 300 images / batch 100: 3 iterations an epoch
    run_tool("generative_learning.py", *small_args(cifar_small, straight, "--epochs", 2,
                                                    "--seed", 5, "--checkpoint-every", 2),
             cwd=REPO_ROOT)
    history = json.load(open(straight / "history.json"))
    assert [r["iter"] for r in history["epochs"]] == [3, 6]
    assert history["config"]["net"] == "cifar10_quick"
    assert history["config"]["opts"]["fitted_q"] == 1        # the net's default
    assert "logit-space full-covariance" in history["q"]["describe"]
    for record in history["epochs"]:
        assert np.isfinite(record["test_error_pct"]) and 0 < record["acceptance"] <= 1
    chains = np.load(straight / "chains.npz")
    images, states = chains["images"], chains["states"]
    assert images.shape == states.shape == (10, 3, 3, 32, 32)
    lo, hi = cifar_transform(cifar_small).bounds
    assert (images > lo).all() and (images < hi).all() and np.isfinite(states).all()
    # the chains moved from q's draws: not all at the initial states
    net_text = open(straight / "net.prototxt").read()
    assert str(cifar_small / "mean.binaryproto") in net_text
    assert "dim: 6\n" in net_text and "dim: 3\n" in net_text and "dim: 32\n" in net_text

    killed = tmp_path / "killed"
    args = small_args(cifar_small, killed, "--epochs", 2, "--seed", 5, "--checkpoint-every", 2)
    state = kill_after_checkpoint(args, 2)
    assert not state["done"]
    # studies/sec5_checkpoint.py exports the killed run's newest checkpoint as
    # a finished run's files, cut at its iteration
    it = state["checkpoint"]["iter"]
    exported = tmp_path / "exported"
    proc = run_tool(os.path.join("..", "studies", "sec5_checkpoint.py"), killed, "--name", "s",
                    "--nets", exported, "--curves", exported / "c_iterN.png")
    assert proc.stdout.strip() == "s_iter%d" % it
    assert open(exported / ("s_iter%d.caffemodel" % it), "rb").read() == \
        open(killed / state["checkpoint"]["caffemodel"], "rb").read()
    record = json.load(open(exported / ("s_iter%d_history.json" % it)))
    assert record["checkpoint_iter"] == it and record["config"] == state["config"]
    assert [r["iter"] for r in record["epochs"]] == [e for e in (3, 6) if e <= it]
    assert (record["final_test_error_pct"] is None) == (it not in (3, 6))
    rows = np.loadtxt(exported / ("s_iter%d_iterations.tsv" % it), ndmin=2)
    assert rows[:, 0].tolist() == list(range(1, it + 1))
    assert os.path.getsize(exported / ("c_iter%d.png" % it)) > 0
    # its chains as a finished run's chains.npz holds them: the checkpoint's
    # states (logits), and the images they are, inside the box
    with np.load(killed / ("chains_iter%d.npz" % it)) as npz, \
            np.load(killed / state["checkpoint"]["chains"]) as saved:
        assert sorted(npz.files) == ["images", "states"]
        np.testing.assert_array_equal(npz["states"], saved["images"])
        assert (npz["images"] > lo).all() and (npz["images"] < hi).all()
        assert not np.allclose(npz["images"], npz["states"])
    run_tool("generative_learning.py", *(args + ["--resume"]), cwd=REPO_ROOT)
    assert open(killed / "final.caffemodel", "rb").read() == \
        open(straight / "final.caffemodel", "rb").read()
    np.testing.assert_array_equal(np.load(killed / "chains.npz")["states"], states)


def test_cifar10_generative_learning_refuses_an_mnist_lmdb(cifar_small, subset, tmp_path):
    proc = run_tool("generative_learning.py", "--net", "cifar10_quick", "--out",
                    tmp_path / "run", "--train-lmdb", subset / "mnist_train_lmdb",
                    "--test-lmdb", subset / "mnist_test_lmdb",
                    "--mean-file", cifar_small / "mean.binaryproto", *SMALL,
                    check=False, cwd=REPO_ROOT)
    assert "holds 1x28x28 images; CIFAR10_quick takes 3x32x32" in one_line_error(proc)
    assert not os.path.exists(tmp_path / "run" / "state.json")


# --------------------------------------------------- T = 1 samples, measures
@pytest.fixture(scope="module")
def random_cifar_net(tmp_path_factory):
    """A cifar10_quick at its random fillers (seeded), saved as a caffemodel."""
    root = tmp_path_factory.mktemp("cifar_net")
    caffe.set_random_seed(7)
    net = caffe_utils.load_net(os.path.join(REPO_ROOT, "prototxt",
                                            "cifar10_quick_deploy.prototxt"), None, 1,
                               freeze_weights=False)
    path = str(root / "random.caffemodel")
    net.save(path)
    return path


def test_cifar10_t1_samples_are_valid_images_and_measured(cifar_small, random_cifar_net,
                                                         tmp_path):
    """class_samples_t1 --net cifar10_quick: q alone and a short HMC run of a
    net, both inside the box (no pixel out of range in the report), then
    tools/sample_quality.py with --mean-file measures them beside the
    baselines: real images in range, white q partly out, no background."""
    common = ["--net", "cifar10_quick", "--train-lmdb", cifar_small / "cifar10_train_lmdb",
              "--mean-file", cifar_small / "mean.binaryproto", "--q-images", 200,
              "--shrinkage", 0.01, "--chains-per-class", 2]
    q_alone, sampled = tmp_path / "q.npz", tmp_path / "s.npz"
    run_tool(os.path.join("..", "studies", "class_samples_t1.py"), *common, "--no-net",
             "--out", q_alone, cwd=REPO_ROOT)
    run_tool(os.path.join("..", "studies", "class_samples_t1.py"), *common, "--weights",
             random_cifar_net, "--adapt", 2, "--iters", 3, "--leapfrog-steps", 2,
             "--out", sampled, "--grid", tmp_path / "grid.png", cwd=REPO_ROOT)
    lo, hi = cifar_transform(cifar_small).bounds
    for path in (q_alone, sampled):
        with np.load(path) as npz:
            assert npz["x"].shape == (20, 3, 32, 32)
            assert list(npz["y"]) == list(np.repeat(np.arange(10), 2))
            assert (npz["x"] > lo).all() and (npz["x"] < hi).all()
    assert os.path.getsize(tmp_path / "grid.png") > 1000

    report_path = tmp_path / "report.json"
    run_tool("sample_quality.py", "--judge-model",
             os.path.join(REPO_ROOT, "prototxt", "cifar10_quick_deploy.prototxt"),
             "--judge-weights", random_cifar_net, "--train-lmdb",
             cifar_small / "cifar10_train_lmdb", "--test-lmdb", cifar_small / "cifar10_test_lmdb",
             "--scale", 1, "--mean-file", cifar_small / "mean.binaryproto",
             "--real-pool", 300, "--set", "s=%s" % sampled, "--q-alone", "q=%s" % q_alone,
             "--out", report_path, cwd=REPO_ROOT)
    report = json.load(open(report_path))
    assert report["judge"]["mean_file"] == str(cifar_small / "mean.binaryproto")
    baselines = report["baselines"]
    assert report["sets"]["s"]["pixels_out_of_range"] == 0
    assert baselines["q"]["pixels_out_of_range"] == 0
    assert baselines["real training digits"]["pixels_out_of_range"] == 0
    assert baselines["white q"]["pixels_out_of_range"] > 0.01
    assert report["sets"]["s"]["background_mean"] is None
    # the white q is fitted to the training images in input units
    train, _ = cifar_transform(cifar_small).lmdb_images(str(cifar_small / "cifar10_train_lmdb"))
    assert baselines["white q"]["std"] == pytest.approx(train.std(), rel=1e-9)
