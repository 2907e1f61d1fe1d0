"""SynthesisLossLayer (section 5's synthesized-image gradient) and
tools/generative_learning.py on a 2,000-image MNIST subset, real Caffe."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import caffe
from caffe.proto import caffe_pb2
from google.protobuf import text_format
from conftest import one_line_error, run_tool
from gencnn import netgen
from gencnn.config import REPO_ROOT
from synthesis_loss_layer import parse_params, synthesis_loss

caffe.set_mode_cpu()
TOOLS = os.path.join(REPO_ROOT, "tools")
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1")


def reference(scores, labels, observed, alpha):
    """Independent float64 loop over rows, straight from the docstring's equation."""
    scores = np.asarray(scores, np.float64)
    total = scores.shape[0]
    m = total - observed
    loss, grad = 0.0, np.zeros_like(scores)
    f_obs, f_syn = [], []
    for j in range(total):
        c = int(labels[j])
        f = scores[j, c]
        if j < observed:
            loss -= f / observed
            grad[j, c] -= 1.0 / observed
            f_obs.append(f)
        else:
            loss += f / m
            grad[j, c] += 1.0 / m
            f_syn.append(f)
        loss += alpha * f * f / total
        grad[j, c] += 2.0 * alpha * f / total
    return loss, grad, np.mean(f_obs) - np.mean(f_syn)


def numeric_grad(scores, labels, observed, alpha, eps=1e-5):
    grad = np.zeros_like(scores)
    for idx in np.ndindex(*scores.shape):
        up, down = scores.copy(), scores.copy()
        up[idx] += eps
        down[idx] -= eps
        grad[idx] = (synthesis_loss(up, labels, observed, alpha)[0]
                     - synthesis_loss(down, labels, observed, alpha)[0]) / (2 * eps)
    return grad


CASES = {
    # name: (N observed, M synthesized, C, alpha)
    "balanced": (6, 6, 5, 0.01),
    "more_synthesized": (3, 7, 4, 0.1),
    "no_penalty": (5, 2, 6, 0.0),
    "one_each": (1, 1, 3, 1.0),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_finite_differences_and_reference(name):
    n, m, c, alpha = CASES[name]
    rng = np.random.RandomState(len(name))
    scores = rng.randn(n + m, c) * 3.0
    labels = rng.randint(0, c, n + m)
    loss, grad, gap = synthesis_loss(scores, labels, n, alpha)
    ref_loss, ref_grad, ref_gap = reference(scores, labels, n, alpha)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gap, ref_gap, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, numeric_grad(scores, labels, n, alpha),
                               rtol=1e-6, atol=1e-8)
    # Only each row's own class gets a gradient.
    mask = np.zeros_like(grad, dtype=bool)
    mask[np.arange(n + m), labels] = True
    assert np.all(grad[~mask] == 0)


def test_without_penalty_the_gradient_is_the_likelihood_estimate():
    """alpha 0: -1/N on each observed row's class, +1/M on each synthesized
    row's, whatever the scores (the estimate of -dlog p/df of section 5)."""
    scores = np.random.RandomState(0).randn(5, 3) * 100
    labels = [0, 1, 2, 0, 1]
    _, grad, _ = synthesis_loss(scores, labels, 2, 0.0)
    expected = np.zeros((5, 3))
    expected[[0, 1], [0, 1]] = -0.5
    expected[[2, 3, 4], [2, 0, 1]] = 1.0 / 3
    np.testing.assert_array_equal(grad, expected)


def test_penalty_caps_the_gap():
    """The minimum over a data score a and a sample score b of
    -a + b + alpha (a^2 + b^2) / 2 (one row each) is at a = -b = 1/alpha."""
    alpha = 0.01
    a = 1.0 / alpha
    _, grad, gap = synthesis_loss([[a], [-a]], [0, 0], 1, alpha)
    np.testing.assert_allclose(grad, 0.0, atol=1e-12)
    assert gap == pytest.approx(2 * a)


def test_huge_scores_stay_finite():
    scores = np.random.RandomState(1).choice([-1e6, 1e6], size=(8, 10))
    loss, grad, gap = synthesis_loss(scores, np.arange(8) % 10, 4, 1e-3)
    assert np.isfinite(loss) and np.all(np.isfinite(grad)) and np.isfinite(gap)


@pytest.mark.parametrize("param_str, message", [
    ("", "needs \"observed\""), ('{"observed": 0}', "needs \"observed\""),
    ('{"observed": 2.5}', "needs \"observed\""), ('{"observed": 4, "alpha": -1}', "alpha"),
    ('{"observed": 4, "beta": 1}', "unknown param_str key"), ("{observed: 4}", "not JSON"),
    ("[4]", "JSON object")])
def test_param_str_is_validated(param_str, message):
    with pytest.raises(ValueError, match=message):
        parse_params(param_str)
    assert parse_params('{"observed": 4}') == (4, 0.001)


# ---------------------------------------------------------------- pycaffe
def layer_net(tmp_path, total, c, param_str, shape4d=False, n_labels=None):
    score_shape = (total, c, 1, 1) if shape4d else (total, c)
    dims = lambda shape: " ".join("dim: %d" % d for d in shape)  # noqa: E731
    text = textwrap.dedent("""\
        name: "synthesis_loss_check"
        force_backward: true
        layer { name: "scores" type: "Input" top: "scores" input_param { shape { %s } } }
        layer { name: "label" type: "Input" top: "label" input_param { shape { %s } } }
        layer { name: "loss" type: "Python" bottom: "scores" bottom: "label"
          top: "loss" top: "gap" loss_weight: 2 loss_weight: 0
          python_param { module: "synthesis_loss_layer" layer: "SynthesisLossLayer"
                         param_str: '%s' } }
        """) % (dims(score_shape), dims((n_labels or total,)), param_str)
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    return caffe.Net(str(path), caffe.TRAIN)


@pytest.mark.parametrize("shape4d", [False, True])
def test_pycaffe_layer_forward_backward(tmp_path, shape4d):
    n, m, c, alpha = 5, 7, 10, 0.05
    net = layer_net(tmp_path, n + m, c, '{"observed": %d, "alpha": %g}' % (n, alpha), shape4d)
    rng = np.random.RandomState(3)
    scores = rng.randn(n + m, c).astype(np.float32)
    labels = rng.randint(0, c, n + m)
    net.blobs["scores"].data[...] = scores.reshape(net.blobs["scores"].data.shape)
    net.blobs["label"].data[...] = labels
    out = net.forward()
    net.backward()
    ref_loss, ref_grad, ref_gap = reference(scores.astype(np.float64), labels, n, alpha)
    assert out["loss"] == pytest.approx(ref_loss, rel=1e-5, abs=1e-6)
    assert out["gap"] == pytest.approx(ref_gap, rel=1e-5)
    # loss_weight 2 scales the propagated gradient.
    np.testing.assert_allclose(net.blobs["scores"].diff.reshape(n + m, c), 2 * ref_grad,
                               rtol=1e-5, atol=1e-7)
    assert np.all(net.blobs["label"].diff == 0)


def test_pycaffe_float32_finite_differences(tmp_path):
    n, m, c = 3, 4, 4
    net = layer_net(tmp_path, n + m, c, '{"observed": %d, "alpha": 0.2}' % n)
    scores = np.random.RandomState(4).randn(n + m, c).astype(np.float32)
    net.blobs["label"].data[...] = [0, 1, 2, 3, 3, 1, 0]

    def loss_at(s):
        net.blobs["scores"].data[...] = s
        return 2 * float(net.forward()["loss"])

    loss_at(scores)
    net.backward()
    analytic = net.blobs["scores"].diff.copy()
    eps = 1e-2
    for idx in np.ndindex(n + m, c):
        up, down = scores.copy(), scores.copy()
        up[idx] += eps
        down[idx] -= eps
        assert (loss_at(up) - loss_at(down)) / (2 * eps) == pytest.approx(analytic[idx],
                                                                         abs=5e-4)


def test_layer_refuses_bad_shapes_and_labels(tmp_path):
    with pytest.raises(Exception, match="leaves no synthesized rows"):
        layer_net(tmp_path, 4, 3, '{"observed": 4}')
    with pytest.raises(Exception, match="4 scores rows but 3 labels"):
        layer_net(tmp_path, 4, 3, '{"observed": 2}', n_labels=3)
    net = layer_net(tmp_path, 4, 3, '{"observed": 2}')
    net.blobs["label"].data[...] = [0, 1, 3, 2]
    with pytest.raises(Exception, match="out of range"):
        net.forward()


# ----------------------------------------------------------------- netgen
def test_synthesis_net_is_lenet_with_the_synthesis_losses():
    net = netgen.synthesis_net(synthesized=32, alpha=0.01, dg_weight=0.5)
    body = {layer.name for layer in netgen.LENET_BODY}
    assert [l for l in net.layer if l.name in body] == netgen.LENET_BODY
    layers = {l.name: l for l in net.layer if l.name not in ("mnist", "loss")}
    assert json.loads(layers["synthesis_loss"].python_param.param_str) == {
        "observed": 64, "alpha": 0.01}
    assert [list(shape.dim) for shape in layers["synthesized"].input_param.shape] == [
        [32, 1, 28, 28], [32]]
    assert layers["slice_scores"].slice_param.slice_point == [64]
    (train_dg,) = [l for l in net.layer if l.type == "SoftmaxWithLoss"
                   and l.include[0].phase == caffe.TRAIN]
    assert list(train_dg.bottom) == ["observed_scores", "observed_label"]
    assert list(train_dg.loss_weight) == [0.5]
    no_dg = netgen.synthesis_net(dg_weight=0)
    assert "slice_scores" not in [l.name for l in no_dg.layer]
    assert not any("observed_scores" in l.bottom for l in no_dg.layer)
    assert [l.include[0].phase for l in no_dg.layer if l.type == "SoftmaxWithLoss"] == [
        caffe.TEST]                                              # the TEST phase's


def test_solver_is_lenets_with_the_options():
    """The training's solver is LeNet's committed one (momentum, inv lr
    policy) with base_lr, weight decay, clip_gradients and the seed of the
    options, and no test or snapshot of Caffe's own."""
    from gencnn import caffe_utils, generative_learning
    opts = dict(generative_learning.DEFAULTS, base_lr=0.001, weight_decay=0.0001,
                clip_gradients=5.0)
    solver = caffe_pb2.SolverParameter()
    text_format.Merge(generative_learning.solver_text("net.prototxt", opts, 77, "snap", 4),
                      solver)
    lenet = caffe_utils.read_solver(os.path.join(REPO_ROOT, "solvers", "lenet_dg.prototxt"))
    for field in ("lr_policy", "gamma", "power", "momentum", "solver_mode"):
        assert getattr(solver, field) == getattr(lenet, field), field
    assert (solver.base_lr, solver.weight_decay, solver.clip_gradients) == pytest.approx(
        (0.001, 0.0001, 5.0))
    assert (solver.max_iter, solver.random_seed, solver.net) == (77, 4, "net.prototxt")
    assert solver.snapshot == 0 and not solver.snapshot_after_train
    assert not solver.test_initialization
    no_clip = caffe_pb2.SolverParameter()
    text_format.Merge(generative_learning.solver_text(
        "net.prototxt", dict(opts, clip_gradients=0), 77, "snap", None), no_clip)
    assert not no_clip.HasField("clip_gradients") and not no_clip.HasField("random_seed")


# ------------------------------------------------------------------- tool
def tool(*args, check=True):
    return run_tool("generative_learning.py", *args, check=check, cwd=REPO_ROOT)


# A tiny but complete configuration: 2,000 images = 31.25 iterations per epoch.
SMALL = ["--synthesized", 8, "--buffer-size", 20, "--mcmc-iters", 2, "--reference-count", 200,
         "--no-progress"]


def small_args(subset, out, *extra):
    return ["--out", out, "--train-lmdb", subset / "mnist_train_lmdb", "--test-lmdb",
            subset / "mnist_test_lmdb"] + SMALL + list(extra)


def kill_after_checkpoint(args, iteration):
    """Run the tool with `args` and kill -9 it once it has checkpointed at
    `iteration` or later; its state.json then."""
    out = args[args.index("--out") + 1]
    proc = subprocess.Popen([sys.executable, os.path.join(TOOLS, "generative_learning.py")] +
                            list(map(str, args)), cwd=REPO_ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            state = json.load(open(out / "state.json"))
        except (OSError, ValueError):
            state = {}
        if (state.get("checkpoint") or {}).get("iter", 0) >= iteration:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return json.load(open(out / "state.json"))


@pytest.mark.slow
def test_tool_trains_logs_and_resumes_bit_identically(subset, tmp_path):
    straight = tmp_path / "straight"
    tool(*small_args(subset, straight, "--epochs", 1, "--seed", 3, "--checkpoint-every", 5))
    history = json.load(open(straight / "history.json"))
    assert [r["iter"] for r in history["epochs"]] == [32]
    record = history["epochs"][0]
    for key in ("test_error_pct", "energy_gap", "acceptance", "step_size",
                "divergent_trajectories"):
        assert np.isfinite(record[key]), key
    assert 0 < record["acceptance"] <= 1
    rows = np.loadtxt(straight / "iterations.tsv")
    assert rows.shape == (32, 12) and list(rows[:, 0]) == list(range(1, 33))
    for name in ("curves.png", "final.caffemodel", "chains.npz", "net.prototxt"):
        assert os.path.exists(straight / name), name
    assert np.load(straight / "chains.npz")["images"].shape == (10, 20, 1, 28, 28)

    # kill -9 after a checkpoint, then --resume: the same final weights and chains.
    killed = tmp_path / "killed"
    state = kill_after_checkpoint(
        small_args(subset, killed, "--epochs", 1, "--seed", 3, "--checkpoint-every", 5), 10)
    assert not state["done"] and state["checkpoint"]["iter"] < 32
    # resume a copy of the killed run: it continues from its own snapshots
    # (state.json paths are relative) and leaves the original alone
    before = sorted(os.listdir(killed / "snapshots"))
    copy = tmp_path / "copy"
    shutil.copytree(str(killed), str(copy))
    tool(*small_args(subset, copy, "--epochs", 1, "--seed", 3, "--checkpoint-every", 5,
                     "--resume"))
    assert sorted(os.listdir(killed / "snapshots")) == before
    assert open(copy / "final.caffemodel", "rb").read() == \
        open(straight / "final.caffemodel", "rb").read()
    np.testing.assert_array_equal(np.load(copy / "chains.npz")["images"],
                                  np.load(straight / "chains.npz")["images"])
    np.testing.assert_array_equal(np.loadtxt(copy / "iterations.tsv")[:, :10], rows[:, :10])
    # the per-epoch records too, to the last bit (not the timings)
    timing = ("s_per_iter", "s_per_iter_sampling")
    resumed = json.load(open(copy / "history.json"))["epochs"]
    assert [{k: v for k, v in r.items() if k not in timing} for r in resumed] == \
        [{k: v for k, v in r.items() if k not in timing} for r in history["epochs"]]


def test_divergence_stops_with_one_line_and_keeps_the_checkpoint(subset, tmp_path):
    out = tmp_path / "run"
    proc = tool(*small_args(subset, out, "--epochs", 1, "--checkpoint-every", 2,
                            "--max-abs-score", 3, "--base-lr", 0.05, "--alpha", 0,
                            "--clip-gradients", 0), check=False)
    line = one_line_error(proc)
    assert "diverged at iteration" in line and "last good checkpoint" in line
    state = json.load(open(out / "state.json"))
    assert state["diverged"]["iter"] > 0 and not state["done"]
    if state["checkpoint"]:
        assert state["checkpoint"]["iter"] < state["diverged"]["iter"]
        assert os.path.exists(state["checkpoint"]["caffemodel"])


@pytest.mark.parametrize("args, message", [
    (["--restart-prob", 2], "--restart-prob must be a number in [0, 1], got 2"),
    (["--mcmc-iters", 0], "--mcmc-iters must be an integer > 0"),
    (["--epochs", "nan"], "--epochs must be a number > 0, got nan"),
    (["--step-size", 1.0], "step_size 1.0 must lie in"),
    (["--resume"], "nothing to resume"),
])
def test_bad_input_is_one_line(subset, tmp_path, args, message):
    line = one_line_error(tool(*small_args(subset, tmp_path / "x", *args), check=False))
    assert message in line, line


@pytest.mark.slow
def test_bad_starts_are_one_line_and_leave_no_run(subset, tmp_path):
    """Checked before anything is written (weights of another net,
    the training LMDB as test set, under one iteration, data of another
    shape, more memory than there is); a resume with another seed or
    training LMDB than the run's is refused."""
    from gencnn.data.lmdb_io import write_lmdb
    deploy = os.path.join(REPO_ROOT, "prototxt", "lenet_deploy.prototxt")
    caffe.Net(deploy, caffe.TEST).save(str(tmp_path / "lenet.caffemodel"))
    renamed = caffe_pb2.NetParameter()
    renamed.ParseFromString((tmp_path / "lenet.caffemodel").read_bytes())
    for layer in renamed.layer:
        if layer.name == "ip2":
            layer.name = "fc2"
    foreign = tmp_path / "renamed.caffemodel"
    foreign.write_bytes(renamed.SerializeToString())
    colour = str(tmp_path / "colour_lmdb")
    write_lmdb(colour, ((np.zeros((3, 32, 32), np.uint8), i % 10) for i in range(100)),
               map_size=1 << 26)
    train = subset / "mnist_train_lmdb"
    cases = [(["--weights", foreign], "layer ip2 missing"),
             (["--test-lmdb", train], "is the training LMDB"),
             (["--epochs", 1e-12], "less than one iteration"),
             (["--buffer-size", 10 ** 9], "GiB available")]
    for extra, message in cases:
        out = tmp_path / "never"
        line = one_line_error(tool(*(small_args(subset, out) + extra), check=False))
        assert message in line, line
        assert not (out / "state.json").exists()
    line = one_line_error(tool("--out", tmp_path / "never", "--train-lmdb", colour,
                               "--test-lmdb", subset / "mnist_test_lmdb", *SMALL, check=False))
    assert "holds 3x32x32 images" in line, line
    # a finished run: its resume with another seed or LMDB is refused
    out = tmp_path / "run"
    tool(*small_args(subset, out, "--epochs", 0.1, "--seed", 3))
    line = one_line_error(tool(*small_args(subset, out, "--epochs", 0.1, "--seed", 4,
                                           "--resume"), check=False))
    assert "different seed" in line, line
    other = tmp_path / "other_lmdb"
    shutil.copytree(str(subset / "mnist_test_lmdb"), str(other))
    args = small_args(subset, out, "--epochs", 0.1, "--seed", 3, "--resume")
    args[args.index("--train-lmdb") + 1] = other
    line = one_line_error(tool(*args, check=False))
    assert "training LMDB" in line, line



@pytest.mark.slow
def test_fitted_q_chains_live_on_the_logit_scale(subset, short_dg_lenet, tmp_path):
    """fitted_q 1: q a full-covariance Gaussian on logit(x) (the q the T = 1
    samples are drawn under), chains on u = logit(x), images sigmoid(u).
    Every synthesized image is valid, the chains sit where the learned f_y is
    higher than at q's own draws (they sample exp(f_y) q), and a killed run
    resumes to the same weights and chains (q is fitted anew, identically)."""
    from gencnn import caffe_utils, generative_learning
    from gencnn.sampling import hmc
    extra = ("--weights", short_dg_lenet, "--fitted-q", 1, "--epochs", 1, "--seed", 3,
             "--mcmc-iters", 10,
             "--step-size", 0.3,
             "--max-step", 2, "--checkpoint-every", 4)
    straight = tmp_path / "straight"
    tool(*small_args(subset, straight, *extra))
    history = json.load(open(straight / "history.json"))
    assert history["q"]["describe"].startswith("logit-space full-covariance Gaussian")
    assert history["q"]["images"] == 200 and history["epochs"][-1]["acceptance"] > 0.3
    images = np.load(straight / "chains.npz")["images"]
    assert np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
    # the chains against q's draws, scored by the learned net (class = buffer row)
    q = generative_learning.fit_q(str(subset / "mnist_train_lmdb"), 200, (1, 28, 28), True)
    draws = hmc.logit_to_pixels(q.sample(np.random.RandomState(0), (200, 1, 28, 28)), (0, 1))
    net = caffe_utils.load_net(os.path.join(REPO_ROOT, "prototxt", "lenet_deploy.prototxt"),
                       str(straight / "final.caffemodel"), 200)
    labels = np.repeat(np.arange(10), 20)
    score = hmc.NodeScore(net, "ip2", labels)
    assert score(images.reshape(200, 1, 28, 28))[0].mean() > score(draws)[0].mean() + 1

    killed = tmp_path / "killed"
    state = kill_after_checkpoint(small_args(subset, killed, *extra), 12)
    assert not state["done"]
    tool(*small_args(subset, killed, *(extra + ("--resume",))))
    assert open(killed / "final.caffemodel", "rb").read() == \
        open(straight / "final.caffemodel", "rb").read()
    np.testing.assert_array_equal(np.load(killed / "chains.npz")["images"], images)
