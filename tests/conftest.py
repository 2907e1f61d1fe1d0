"""Shared test helpers: real pycaffe, the real `caffe` binary, ../shared data."""
import os
import subprocess
import sys

import pytest

os.environ.setdefault("GLOG_minloglevel", "2")   # quiet pycaffe net construction
# One OpenBLAS thread for the tests and the tools they start: the nets are
# small, and several threads per process spin against each other when tests
# run trainings side by side (runs/resumes are also compared bit for bit).
# Those comparisons across processes (a resumed or copied run against an
# uninterrupted one) are exact by design: the same Caffe and BLAS, the same
# batch shapes, one thread. Comparisons across batch sizes or Caffe builds
# state a measured bound instead (bench/float32_batch_rounding.py,
# bench/allclose_margins.py).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for sub in ("", "python_layers"):
    path = os.path.join(REPO, sub)
    if path not in sys.path:
        sys.path.insert(0, path)

from gencnn import caffe_utils, config  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: a test of ~4 s or more on 2 cores (trainings, the committed "
        "reports recomputed, the demo, HMC command-line runs); make test-fast skips them")


@pytest.fixture(scope="session")
def shared_dir():
    path = config.shared_dir()
    if not os.path.isdir(path):
        pytest.fail("test data folder %s not found: set GENCNN_SHARED" % path)
    return path


def run_caffe(args, cwd, timeout=600, check=True):
    """Run the real `caffe` tool with INFO logging; returns (returncode, log text)."""
    env = dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1")
    proc = subprocess.run([caffe_utils.tool_path("caffe")] + list(args), cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError("caffe %s failed (%d):\n%s"
                             % (" ".join(args), proc.returncode, proc.stdout[-3000:]))
    return proc.returncode, proc.stdout


def run_tool(name, *args, check=True, cwd=None):
    """Run tools/<name> with `args`; the finished process (stdout, stderr)."""
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", name)] +
                          list(map(str, args)), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (name, proc.returncode, proc.stderr[-3000:]))
    return proc


def one_line_error(proc):
    """The error convention: exit 2 and one `error: ...` line; returns it."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.fixture(scope="session")
def subset(tmp_path_factory, shared_dir):
    """MNIST's first 2,000 training and 500 test images as LMDBs."""
    out = tmp_path_factory.mktemp("mnist")
    run_tool("get_mnist.py", "--from", os.path.join(shared_dir, "data", "mnist"), "--out", out,
             "--train-limit", 2000, "--test-limit", 500)
    return out


@pytest.fixture(scope="session")
def small_solvers(subset, tmp_path_factory):
    """LeNet nets/solvers of the repository, pointed at the subset, shortened."""
    from gencnn import netgen
    root = tmp_path_factory.mktemp("solvers")
    for loss in ("dg", "gg"):
        (root / ("lenet_%s.prototxt" % loss)).write_text(str(netgen.train_test_net(
            netgen.LENET, loss, train_source=str(subset / "mnist_train_lmdb"),
            test_source=str(subset / "mnist_test_lmdb"))))
    paths = {}
    for name, net, iters in (("dg", "dg", 250), ("gg", "gg", 250), ("gg_dg", "dg", 250 - 94)):
        paths[name] = root / ("solver_%s.prototxt" % name)
        # 5 x 100 = the 500 test images
        caffe_utils.write_solver_variant(
            os.path.join(REPO, "solvers", "lenet_%s.prototxt" % name), str(paths[name]),
            net=str(root / ("lenet_%s.prototxt" % net)), max_iter=iters, test_iter=5)
    return paths


@pytest.fixture(scope="session")
def short_dg_lenet(small_solvers, tmp_path_factory):
    """A LeNet trained by `caffe train` with small_solvers' DG solver (250
    iterations, 8 epochs of the subset, seed 1): its caffemodel path."""
    root = tmp_path_factory.mktemp("short_dg_lenet")
    solver = caffe_utils.write_solver_variant(
        str(small_solvers["dg"]), str(root / "solver.prototxt"),
        snapshot_prefix=str(root / "lenet_dg"), random_seed=1)
    run_caffe(["train", "--solver", solver], cwd=str(root))
    return str(root / "lenet_dg_iter_250.caffemodel")
