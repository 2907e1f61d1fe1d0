"""GenerativeLossLayer (eq. 10): numerics, pycaffe layer, real `caffe train`."""
import os
import textwrap

import numpy as np
import pytest

import caffe
from conftest import run_caffe
from gencnn import caffe_utils
from gencnn.data.lmdb_io import write_lmdb
from generative_loss_layer import generative_loss

caffe.set_mode_cpu()


def reference(scores, labels):
    """Independent float64 loop over examples, straight from eq. 8/10."""
    scores = np.asarray(scores, np.float64)
    n = scores.shape[0]
    loss, grad, ess = 0.0, np.zeros_like(scores), {}
    for i in range(n):
        c = int(labels[i])
        col = scores[:, c]
        w = np.exp(col - col.max())
        w /= w.sum()
        loss -= col[i] - np.log(np.mean(np.exp(col - col.max()))) - col.max()
        grad[:, c] += w          # d/df_c(x_j) of -log p_c(x_i) = W_j - 1{j = i}
        grad[i, c] -= 1.0
        ess[c] = 1.0 / (n * np.sum(w ** 2))
    return loss / n, grad / n, np.mean(list(ess.values()))


def numeric_grad(scores, labels, eps=1e-5):
    grad = np.zeros_like(scores)
    for idx in np.ndindex(*scores.shape):
        up, down = scores.copy(), scores.copy()
        up[idx] += eps
        down[idx] -= eps
        grad[idx] = (generative_loss(up, labels)[0] - generative_loss(down, labels)[0]) / (2 * eps)
    return grad


CASES = {
    # name: (N, C, labels)
    "repeated_classes": (12, 5, [0, 1, 1, 2, 2, 2, 0, 4, 4, 1, 0, 2]),
    "class_present_once": (7, 6, [3, 0, 0, 1, 1, 5, 5]),   # class 3 appears once
    "all_distinct": (4, 4, [0, 1, 2, 3]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_finite_differences_and_reference(name):
    n, c, labels = CASES[name]
    scores = np.random.RandomState(len(name)).randn(n, c) * 2.0
    loss, grad, ess = generative_loss(scores, labels)
    ref_loss, ref_grad, ref_ess = reference(scores, labels)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ess, ref_ess, rtol=1e-12)
    np.testing.assert_allclose(grad, numeric_grad(scores, labels), rtol=1e-6, atol=1e-8)
    absent = sorted(set(range(c)) - set(labels))
    assert np.all(grad[:, absent] == 0)
    assert 1.0 / n <= ess <= 1.0


def test_single_example_has_zero_loss_and_exactly_zero_gradient():
    loss, grad, ess = generative_loss(np.array([[0.3, -2.0, 5.0]]), [2])
    assert loss == 0.0 and ess == 1.0
    assert np.all(grad == 0.0)


def test_huge_scores_stay_finite():
    rng = np.random.RandomState(1)
    scores = rng.choice([-1e4, 1e4], size=(16, 10)) + rng.randn(16, 10)
    labels = rng.randint(0, 10, 16)
    loss, grad, ess = generative_loss(scores, labels)
    assert np.isfinite(loss) and np.all(np.isfinite(grad)) and np.isfinite(ess)
    np.testing.assert_allclose(grad, reference(scores, labels)[1], atol=1e-12)


def test_per_class_constant_changes_nothing():
    """The paper's alpha_y: adding a constant per class (a bias) is invisible."""
    rng = np.random.RandomState(2)
    scores, labels = rng.randn(10, 4), rng.randint(0, 4, 10)
    shifted = scores + rng.randn(4) * 50.0
    loss, grad, _ = generative_loss(scores, labels)
    loss2, grad2, _ = generative_loss(shifted, labels)
    np.testing.assert_allclose(loss2, loss, rtol=1e-9)
    np.testing.assert_allclose(grad2, grad, atol=1e-12)
    np.testing.assert_allclose(grad.sum(axis=0), 0.0, atol=1e-15)


def test_ess_extremes():
    n = 8
    labels = np.zeros(n)
    assert generative_loss(np.zeros((n, 2)), labels)[2] == pytest.approx(1.0)
    peaked = np.zeros((n, 2))
    peaked[3, 0] = 1e3
    assert generative_loss(peaked, labels)[2] == pytest.approx(1.0 / n)


# ---------------------------------------------------------------- pycaffe
def layer_net(tmp_path, n, c, score_shape=None, n_labels=None, ess_top=True,
              phase=caffe.TRAIN):
    score_shape = score_shape or (n, c)
    dims = lambda shape: " ".join("dim: %d" % d for d in shape)  # noqa: E731
    tops = 'top: "loss" top: "ess" loss_weight: 1 loss_weight: 0' if ess_top \
        else 'top: "loss" loss_weight: 1'
    text = textwrap.dedent("""\
        name: "generative_loss_check"
        force_backward: true
        layer { name: "scores" type: "Input" top: "scores" input_param { shape { %s } } }
        layer { name: "label" type: "Input" top: "label" input_param { shape { %s } } }
        layer { name: "loss" type: "Python" bottom: "scores" bottom: "label" %s
          python_param { module: "generative_loss_layer" layer: "GenerativeLossLayer" } }
        """) % (dims(score_shape), dims((n_labels or n,)), tops)
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    return caffe.Net(str(path), phase)


@pytest.mark.parametrize("shape4d", [False, True])
def test_pycaffe_layer_forward_backward(tmp_path, shape4d):
    n, c, labels = CASES["repeated_classes"]
    net = layer_net(tmp_path, n, c, (n, c, 1, 1) if shape4d else None)
    scores = np.random.RandomState(3).randn(n, c).astype(np.float32)
    net.blobs["scores"].data[...] = scores.reshape(net.blobs["scores"].data.shape)
    net.blobs["label"].data[...] = labels
    out = net.forward()
    net.backward()
    ref_loss, ref_grad, ref_ess = reference(scores.astype(np.float64), labels)
    assert out["loss"] == pytest.approx(ref_loss, rel=1e-5)
    assert out["ess"] == pytest.approx(ref_ess, rel=1e-5)
    np.testing.assert_allclose(net.blobs["scores"].diff.reshape(n, c), ref_grad,
                               rtol=1e-4, atol=1e-6)
    assert np.all(net.blobs["label"].diff == 0)


def test_pycaffe_float32_finite_differences(tmp_path):
    """Central differences through the real net (float32 forward)."""
    n, c, labels = CASES["class_present_once"]
    net = layer_net(tmp_path, n, c, ess_top=False)
    scores = np.random.RandomState(4).randn(n, c).astype(np.float32)
    net.blobs["label"].data[...] = labels

    def loss_at(s):
        net.blobs["scores"].data[...] = s
        return float(net.forward()["loss"])

    loss_at(scores)
    net.backward()
    analytic = net.blobs["scores"].diff.copy()
    eps = 1e-2
    for idx in np.ndindex(n, c):
        up, down = scores.copy(), scores.copy()
        up[idx] += eps
        down[idx] -= eps
        numeric = (loss_at(up) - loss_at(down)) / (2 * eps)
        assert numeric == pytest.approx(analytic[idx], abs=2e-4)


@pytest.mark.parametrize("bad_label, message", [(7.0, "out of range"), (-1.0, "out of range"),
                                                (1.5, "must be integers")])
def test_bad_labels_fail_at_forward(tmp_path, bad_label, message):
    net = layer_net(tmp_path, 4, 5)
    net.blobs["label"].data[...] = [0, 1, bad_label, 2]
    with pytest.raises(Exception, match=message):
        net.forward()


def test_mismatched_batch_fails_at_reshape(tmp_path):
    with pytest.raises(Exception, match="4 scores rows but 3 labels"):
        layer_net(tmp_path, 4, 5, n_labels=3)


def test_batch_of_one_is_refused_in_train_and_warned_once_in_test(tmp_path, capfd):
    """A batch of one is its own reference: loss and gradient 0, silently."""
    with pytest.raises(Exception, match="batch size 1.*use a batch of at least 2"):
        layer_net(tmp_path, 1, 5)
    net = layer_net(tmp_path, 1, 5, phase=caffe.TEST)
    net.blobs["scores"].data[...] = [[0.3, -2.0, 5.0, 1.0, 0.0]]
    net.blobs["label"].data[...] = [2]
    for _ in range(3):
        net.reshape()
        assert net.forward()["loss"] == 0.0
    warnings = [line for line in capfd.readouterr().err.splitlines() if "batch size 1" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning:")
    layer_net(tmp_path, 2, 5)                  # two examples are fine


def test_param_str_is_validated(tmp_path):
    with pytest.raises(Exception, match="takes no param_str"):
        path = tmp_path / "p.prototxt"
        path.write_text(textwrap.dedent("""\
            layer { name: "s" type: "Input" top: "s" input_param { shape { dim: 2 dim: 3 } } }
            layer { name: "l" type: "Input" top: "l" input_param { shape { dim: 2 } } }
            layer { name: "loss" type: "Python" bottom: "s" bottom: "l" top: "loss"
              python_param { module: "generative_loss_layer" layer: "GenerativeLossLayer"
                             param_str: '{"temperature": 2}' } loss_weight: 1 }
            """))
        caffe.Net(str(path), caffe.TRAIN)


def test_last_layer_bias_gets_zero_gradient(tmp_path):
    n, c, d = 16, 4, 6
    path = tmp_path / "ip.prototxt"
    path.write_text(textwrap.dedent("""\
        force_backward: true
        layer { name: "x" type: "Input" top: "x" input_param { shape { dim: %d dim: %d } } }
        layer { name: "label" type: "Input" top: "label" input_param { shape { dim: %d } } }
        layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
          inner_product_param { num_output: %d weight_filler { type: "gaussian" std: 0.5 }
                                bias_filler { type: "constant" value: 0.3 } } }
        layer { name: "loss" type: "Python" bottom: "ip" bottom: "label" top: "loss"
          python_param { module: "generative_loss_layer" layer: "GenerativeLossLayer" }
          loss_weight: 1 }
        """) % (n, d, n, c))
    net = caffe.Net(str(path), caffe.TRAIN)
    rng = np.random.RandomState(5)
    net.blobs["x"].data[...] = rng.randn(n, d)
    net.blobs["label"].data[...] = rng.randint(0, c, n)
    net.forward()
    net.backward()
    weight_grad, bias_grad = net.params["ip"][0].diff, net.params["ip"][1].diff
    assert np.abs(weight_grad).max() > 1e-3          # the weights do learn
    np.testing.assert_allclose(bias_grad, 0.0, atol=1e-6)


# ------------------------------------------------------- real `caffe train`
TINY_NET = """\
name: "tiny_generative"
layer { name: "data" type: "Data" top: "data" top: "label"
  data_param { source: "%(lmdb)s" batch_size: 32 backend: LMDB } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "loss" type: "Python" bottom: "ip" bottom: "label" top: "loss" top: "ess"
  python_param { module: "generative_loss_layer" layer: "GenerativeLossLayer" }
  loss_weight: 1 loss_weight: 0 }
"""
TINY_SOLVER = """\
net: "%(net)s"
base_lr: 0.05
momentum: 0.9
lr_policy: "fixed"
max_iter: %(iters)d
display: 10
snapshot: %(iters)d
snapshot_prefix: "%(prefix)s"
random_seed: 1
solver_mode: CPU
"""


@pytest.fixture(scope="module")
def tiny_problem(tmp_path_factory):
    """Four Gaussian classes in 8 dims, labels varied, as a float Datum LMDB."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.RandomState(0)
    centres = rng.randn(4, 8) * 2.0
    labels = rng.randint(0, 4, 512)
    images = (centres[labels] + rng.randn(512, 8)).astype(np.float32)
    write_lmdb(str(root / "train_lmdb"), ((x.reshape(8, 1, 1), y) for x, y in zip(images, labels)))
    net = root / "net.prototxt"
    net.write_text(TINY_NET % {"lmdb": root / "train_lmdb"})
    return root, net


def write_solver(root, net, iters, name):
    path = root / ("%s_solver.prototxt" % name)
    path.write_text(TINY_SOLVER % {"net": net, "iters": iters, "prefix": root / name})
    return path


def test_caffe_train_lowers_generative_loss(tiny_problem):
    root, net = tiny_problem
    solver = write_solver(root, net, 200, "scratch")
    _, log = run_caffe(["train", "-solver", str(solver)], cwd=str(root))
    losses = caffe_utils.train_losses(log)
    assert losses[0][0] == 0 and len(losses) >= 20
    first, last = losses[0][1], losses[-1][1]
    # At init all scores are ~0, so l ~ 0. l_i = -log(N W_{y_i}(i)) >= -log N,
    # and with 4 balanced classes the best batch value is about -log 4 = -1.39
    # (the weight of class c spread evenly over its ~N/4 examples).
    assert abs(first) < 0.1 and last < -0.8, (first, last)
    assert os.path.exists(str(root / "scratch_iter_200.caffemodel"))


def test_caffe_train_weights_finetunes_from_given_model(tiny_problem):
    """The fork silently ignored -weights; our patch restores it."""
    root, net = tiny_problem
    trained = root / "scratch_iter_200.caffemodel"
    if not trained.exists():
        run_caffe(["train", "-solver", str(write_solver(root, net, 200, "scratch"))], cwd=str(root))
    solver = write_solver(root, net, 1, "finetune")
    _, log = run_caffe(["train", "-solver", str(solver), "-weights", str(trained)], cwd=str(root))
    assert "Finetuning from %s" % trained in log
    start_finetuned = caffe_utils.train_losses(log)[0][1]
    _, log0 = run_caffe(["train", "-solver", str(solver)], cwd=str(root))
    start_scratch = caffe_utils.train_losses(log0)[0][1]
    # The fine-tune starts where training ended, far below a fresh start.
    assert start_finetuned < start_scratch - 0.5, (start_finetuned, start_scratch)
