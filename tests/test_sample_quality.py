"""gencnn/sample_quality.py and tools/sample_quality.py: the measures with a
short real-Caffe LeNet judge (conftest's short_dg_lenet) on the MNIST
subset (2,000 training, 500 test digits)."""
import json
import os

import numpy as np
import pytest
import scipy.linalg

from conftest import REPO, one_line_error, run_tool
from gencnn import sample_quality as sq
from gencnn.reports import sample_quality as sq_report
from gencnn.data.lmdb_io import lmdb_images

LENET = os.path.join(REPO, "prototxt", "lenet_deploy.prototxt")
N = 500            # samples per set in the judge tests (50 per class on average)


@pytest.fixture(scope="module")
def judged(short_dg_lenet, subset):
    """(judge, reference, y): the short LeNet, the subset as reference, and
    N target classes."""
    judge = sq.Judge(LENET, short_dg_lenet)
    reference = sq.load_reference(judge, str(subset / "mnist_train_lmdb"),
                                  str(subset / "mnist_test_lmdb"))
    y = np.random.RandomState(0).randint(0, 10, N)
    return judge, reference, y


@pytest.fixture(scope="module")
def baselines(judged):
    judge, reference, y = judged
    sets = sq.baseline_sets(reference, y, seed=0)
    return {name: sq.measure_set(judge, reference, x, y) for name, (x, _) in sets.items()}


# ------------------------------------------------------------ with the judge
def test_judge_batches_equal_one_plain_pycaffe_forward(judged, short_dg_lenet):
    """Judge runs 500 at a time: 700 images (a batch and a remainder) give
    exactly the ip1 and softmax(ip2) of plain caffe.Net forwards of the same
    batches, to float32 rounding those of a single forward of all 700, and
    reports.generative_learning.judge (the §5 report's) agrees."""
    import caffe
    from gencnn.reports import generative_learning
    judge, reference, _ = judged
    x = reference.train_images[:700]
    labels = reference.train_labels[:700]
    net = caffe.Net(LENET, caffe.TEST, weights=short_dg_lenet)

    def plain(images):
        net.blobs["data"].reshape(*images.shape)
        net.blobs["data"].data[...] = images
        net.forward()
        return {name: net.blobs[name].data.reshape(len(images), -1).astype(np.float64)
                for name in ("pool2", "ip1", "ip2")}
    features, probs = judge.forward(x)
    # The same batches (500, 200) are the same GEMMs: the same numbers, exactly.
    parts = [plain(x[:500]), plain(x[500:])]
    np.testing.assert_array_equal(features, np.concatenate([p["ip1"] for p in parts]))
    np.testing.assert_array_equal(probs, sq.softmax(np.concatenate([p["ip2"] for p in parts])))
    # One forward of all 700: InnerProduct is one GEMM over the batch, and a
    # BLAS may round an image's dot products differently in another batch size
    # (on upstream BVLC 1.0 on another machine, 2 of 350,000 ip1 values once
    # moved by 1.3e-6, past a tolerance tuned on one machine). Bounds from
    # bench/float32_batch_rounding.py (18 LeNets: the committed nets and three
    # at their fillers, 700 digits cut into batches of 1, 7, 100, 200, 256,
    # 500 or 699 against one forward; our build and upstream 1.0, OpenBLAS
    # 0.3.21): |d ip1| <= 2.6e-7 x (sum_k |x_k w_k| + |b|), the size of its dot
    # product, and |d softmax(ip2)| <= 1.9e-6. Allowed: about 8x and 10x that
    # (the worst case of float32 sums of K = 800 terms, K x 2^-24 = 4.8e-5 of
    # that size, is far looser).
    whole = plain(x)
    weights, bias = (b.data.astype(np.float64) for b in net.params["ip1"])
    size = np.abs(whole["pool2"]).dot(np.abs(weights).T) + np.abs(bias)
    moved = np.abs(features - whole["ip1"])
    assert np.all(moved <= 2e-6 * size), (moved.max(), (moved / size).max())
    np.testing.assert_allclose(probs, sq.softmax(whole["ip2"]), rtol=0, atol=2e-5)
    assert np.all(whole["ip1"] >= 0)          # relu1 in place: features after the ReLU
    assert generative_learning.judge(x, labels, LENET, short_dg_lenet) == \
        sq.judge_accuracy(probs, labels) > 0.8


def test_fid_ranks_real_digits_first_and_every_fake_far_behind(baselines):
    """The measure's reason to exist: at n = 500 against the 500
    test digits, real training digits score far below white q, the class
    template and the template + noise: each fake at least 2x real digits' FID.
    (This 8-epoch judge of 2,000 digits, 5.8 % test error, measured real 47,
    template + noise 122 (2.6x), template 205, white q 425, over two seeds
    within 2 %; a fully trained judge on all of MNIST widens the gaps.)"""
    real = baselines[sq.REAL]["lenet_fid"]
    for name in (sq.WHITE, sq.TEMPLATE, sq.TEMPLATE_NOISE):
        assert baselines[name]["lenet_fid"] > 2 * real, (name, baselines[name]["lenet_fid"], real)


def test_judge_and_is_are_fooled_by_the_template_fid_is_not(baselines):
    """IS of real digits beats white noise; the bare template is judged at
    least as well as real digits (why judge accuracy and IS are not the
    headline), while FID puts it behind."""
    real, white, template = (baselines[k] for k in (sq.REAL, sq.WHITE, sq.TEMPLATE))
    assert real["inception_score"] > 2 * white["inception_score"]
    assert real["judge_accuracy"] > 0.8 and white["judge_accuracy"] < 0.3
    assert template["judge_accuracy"] >= real["judge_accuracy"] - 0.02
    assert template["lenet_fid"] > real["lenet_fid"]


def test_fid_of_a_set_with_itself_is_zero_and_fid_is_symmetric(judged, baselines):
    judge, reference, y = judged
    real = sq.baseline_sets(reference, y, seed=0)[sq.REAL][0]
    fit = sq.gaussian_fit(judge.features(real))
    # The covariance of 500 samples has rank <= 499 < 500 features: sqrtm of the
    # singular product rounds; the tolerances allow that, relative to the scale.
    scale = np.trace(fit[1])
    assert abs(sq.frechet_distance(*(fit + fit))) < 1e-6 * scale
    there = sq.frechet_distance(*(fit + reference.feature_fit))
    back = sq.frechet_distance(*(reference.feature_fit + fit))
    assert there == pytest.approx(back, rel=1e-6)
    assert there == pytest.approx(baselines[sq.REAL]["lenet_fid"], rel=1e-9)


def test_background_and_diversity_tell_template_noise_from_digits(baselines):
    real, noisy, template = (baselines[k] for k in (sq.REAL, sq.TEMPLATE_NOISE, sq.TEMPLATE))
    assert template["within_class_corr"] == pytest.approx(1.0)
    assert real["within_class_corr"] < 0.7
    # the template's noise is the background's sd (400+ background pixels x 300 samples)
    assert noisy["background_sd"] == pytest.approx(sq.WHITE_Q_STD, rel=0.02)
    assert real["background_sd"] < 0.15 and real["pixels_out_of_range"] == 0
    assert noisy["pixels_out_of_range"] > 0.3


def test_nearest_train_ratio_is_one_for_held_out_digits_and_zero_for_copies(subset, judged):
    judge, reference, _ = judged
    test_images, _ = lmdb_images(str(subset / "mnist_test_lmdb"), sq.MNIST_SCALE)
    held_out = test_images[np.random.RandomState(1).permutation(len(test_images))[:250]]
    # half the test digits: their median distance is within sampling error of all 500's
    ratio = sq.nearest_train_distance_ratio(held_out, reference.train_images,
                                            reference.test_median)
    assert 0.9 < ratio < 1.1
    copies = reference.train_images[-200:]
    assert sq.nearest_train_distance_ratio(copies, reference.train_images,
                                           reference.test_median) < 1e-6


# ------------------------------------------------------------ pure numpy
def test_frechet_distance_matches_a_float64_reference_computation():
    """Non-commuting full covariances: tr (S1 S2)^1/2 = tr (S1^1/2 S2 S1^1/2)^1/2,
    the symmetric form computed by eigendecompositions."""
    rng = np.random.RandomState(2)
    d = 6
    a, b = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    s1, s2 = a.dot(a.T) + 0.1 * np.eye(d), b.dot(b.T) + 0.1 * np.eye(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)

    def sym_sqrt(s):
        w, v = np.linalg.eigh(s)
        return (v * np.sqrt(np.maximum(w, 0))).dot(v.T)
    root1 = sym_sqrt(s1)
    expected = (np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
                - 2 * np.trace(sym_sqrt(root1.dot(s2).dot(root1))))
    assert sq.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    # diagonal covariances: the closed form sum (sqrt a - sqrt b)^2
    d1, d2 = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
    assert sq.frechet_distance(mu1, np.diag(d1), mu1, np.diag(d2)) == pytest.approx(
        np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2), rel=1e-9)


def test_fid_of_fitted_gaussians_with_equal_covariance_is_the_mean_shift():
    """Samples of N(mu1, S) and N(mu2, S), 20,000 each in 4 dimensions:
    FID = |mu1 - mu2|^2 = 4 up to sampling error (the covariance term's bias
    is ~ d^2 / n, the mean term's sd ~ 2 |dmu| sqrt(tr S / n): 0.05 allowed)."""
    rng = np.random.RandomState(3)
    d, n = 4, 20000
    root = rng.standard_normal((d, d)) * 0.5 + np.eye(d)
    shift = np.array([2.0, 0, 0, 0])
    first = rng.standard_normal((n, d)).dot(root.T)
    second = rng.standard_normal((n, d)).dot(root.T) + shift
    fid = sq.frechet_distance(*(sq.gaussian_fit(first) + sq.gaussian_fit(second)))
    assert fid == pytest.approx(4.0, abs=0.05)
    assert scipy.linalg.norm(shift) ** 2 == 4.0


def test_inception_score_counts_confident_balanced_classes():
    assert sq.inception_score(np.eye(10)[np.arange(200) % 10]) == pytest.approx(10.0)
    assert sq.inception_score(np.eye(4)[np.arange(200) % 4]) == pytest.approx(4.0)
    same = np.tile(np.random.RandomState(4).dirichlet(np.ones(10)), (50, 1))
    assert sq.inception_score(same) == pytest.approx(1.0)


def test_pixels_out_of_range_background_and_within_class_corr_exact():
    x = np.full((4, 1, 5, 5), 0.5)
    x[0, 0, 0, :3] = -0.1           # 3 below
    x[1, 0, 1, :2] = 1.2            # 2 above
    x[2, 0, 2, 0], x[3, 0, 3, 0] = 0.0, 1.0     # the bounds are in range
    assert sq.pixels_out_of_range(x) == 5 / 100.0

    mean = np.zeros((1, 5, 5))
    mean[0, 2:] = 1.0               # class 0: rows 0-1 are background (10 pixels)
    background = np.array([[0.1] * 5 + [0.3] * 5])
    sample = np.ones((1, 1, 5, 5))
    sample[0, 0, :2] = background.reshape(2, 5)
    m, sd = sq.background_stats(sample, [0], {0: mean})
    assert (m, sd) == (pytest.approx(0.2), pytest.approx(0.1))

    a, b = np.arange(25.0), np.cos(np.arange(25.0))
    x = np.array([a, -a, b, 3 * b + 1]).reshape(4, 1, 5, 5)
    # class 0: corr(a, -a) = -1; class 1: corr(b, 3b + 1) = 1; the mean over classes: 0
    assert sq.within_class_corr(x, [0, 0, 1, 1]) == pytest.approx(0.0, abs=1e-12)
    assert sq.within_class_corr(x[[0, 2]], [0, 1]) is None


def test_nearest_distances_match_brute_force_across_chunks():
    rng = np.random.RandomState(5)
    x, images = rng.uniform(size=(7, 1, 3, 3)), rng.uniform(size=(11, 1, 3, 3))
    brute = np.sqrt(((x.reshape(7, 1, -1) - images.reshape(1, 11, -1)) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(sq.nearest_distances(x, images, chunk=3), brute, rtol=1e-10)


def test_report_differences_find_changed_numbers_and_keys():
    old = {"sets": {"a": {"lenet_fid": 100.0, "n": 10, "q": "white"}}}
    assert sq_report.report_differences(old, json.loads(json.dumps(old))) == []
    near = {"sets": {"a": {"lenet_fid": 100.00001, "n": 10, "q": "white"}}}
    assert sq_report.report_differences(old, near) == []                  # 1e-7 relative
    far = {"sets": {"a": {"lenet_fid": 100.001, "n": 10, "q": "fitted", "x": 1}}}
    assert sq_report.report_differences(old, far) == ["sets.a.lenet_fid: 100.0 vs 100.001",
                                               "sets.a.q: 'white' vs 'fitted'",
                                               "sets.a.x: absent vs present"]


# ------------------------------------------------------------ the tool
def _npz(path, **arrays):
    np.savez(str(path), **arrays)
    return str(path)


@pytest.fixture(scope="module")
def tool_inputs(subset, tmp_path_factory):
    """A set (100 test digits + q noise, their labels, chain means, meta) and
    q draws for the q-alone baseline."""
    root = tmp_path_factory.mktemp("sample_quality")
    images, labels = lmdb_images(str(subset / "mnist_test_lmdb"), sq.MNIST_SCALE)
    rng = np.random.RandomState(6)
    meta = json.dumps({"net": "test digits", "q": "white", "temperature": 1.0})
    sample_set = _npz(root / "set.npz", x=images[:100] + 0.05 * rng.standard_normal((100, 1, 28, 28)),
                      y=labels[:100], chain_mean=images[:100], meta=meta)
    q = _npz(root / "q.npz", x=0.2 + 0.1 * rng.standard_normal((150, 1, 28, 28)))
    return root, sample_set, q


@pytest.mark.slow
def test_tool_writes_the_report_and_recomputes_it(subset, short_dg_lenet, tool_inputs, tmp_path):
    root, sample_set, q = tool_inputs
    out = tmp_path / "report.json"
    proc = run_tool("sample_quality.py", "--judge-model", LENET, "--judge-weights", short_dg_lenet,
                    "--train-lmdb", subset / "mnist_train_lmdb", "--test-lmdb",
                    subset / "mnist_test_lmdb", "--set", "digits=" + sample_set,
                    "--q-alone", "my q alone=" + q, "--seed", 7, "--out", out)
    report = json.load(open(str(out)))
    assert list(report) == ["judge", "sets", "baselines"]
    assert report["judge"]["weights"] == short_dg_lenet
    assert report["judge"]["test_error_source"] == "test LMDB"
    assert 0 < report["judge"]["test_error_pct"] < 20 and report["judge"]["test_n"] == 500
    entry = report["sets"]["digits"]
    assert (entry["net"], entry["q"], entry["temperature"], entry["samples"]) == \
        ("test digits", "white", 1.0, sample_set)
    assert list(report["baselines"]) == [sq.REAL, sq.WHITE, sq.TEMPLATE, sq.TEMPLATE_NOISE,
                                         "my q alone"]
    for name, measures in list(report["sets"].items()) + list(report["baselines"].items()):
        missing = set(sq.MEASURES) - set(measures) - (
            set() if name == "digits" else {"within_class_corr_chain_mean"})
        assert not missing, (name, missing)
        assert measures["n"] == 100, name
    assert report["baselines"]["my q alone"]["samples"] == q
    # the set is real digits plus a little noise: judged like them, out of range in places
    assert entry["judge_accuracy"] > 0.8 and 0 < entry["pixels_out_of_range"] < 0.6
    assert entry["nearest_train_distance_ratio"] > 0.8
    lines = proc.stdout.splitlines()
    assert any(line.startswith("| set | n | judged % | IS | LeNet-FID") for line in lines)
    assert any(line.startswith("| digits | 100 | ") for line in lines)
    assert any(line.startswith("| white q (baseline) | 100 | ") for line in lines)
    assert "note: set digits has n = 100 < 1000: its FID is biased upwards" in proc.stdout
    assert entry["class_counts"] == report["baselines"]["white q"]["class_counts"]
    assert sum(entry["class_counts"].values()) == 100

    check = run_tool("sample_quality.py", "--recompute-check", out)
    assert "reproduced" in check.stdout
    # a number moved by 1e-5 relative is caught, and named
    report["baselines"]["white q"]["lenet_fid"] *= 1 + 1e-5
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(report))
    line = one_line_error(run_tool("sample_quality.py", "--recompute-check", tampered,
                                   check=False))
    assert "(1 values differ), first baselines.white q.lenet_fid:" in line, line


@pytest.mark.parametrize("case,message", [
    ("missing", "set s: %s not found"),
    ("no_x", 'set s: no "x" (the samples)'),
    ("n_mismatch", '"x" holds 5 samples, "y" 4 labels'),
    ("unknown_label", 'unknown class label 10 in "y" (the judge has classes 0..9)'),
    ("bad_name", "--set must be NAME=PATH"),
])
def test_tool_bad_input_is_one_line(case, message, short_dg_lenet, subset, tmp_path):
    x = np.zeros((5, 1, 28, 28))
    path = {"missing": str(tmp_path / "nope.npz"),
            "no_x": _npz(tmp_path / "no_x.npz", y=np.zeros(5)),
            "n_mismatch": _npz(tmp_path / "short_y.npz", x=x, y=np.zeros(4)),
            "unknown_label": _npz(tmp_path / "label.npz", x=x, y=np.array([0, 1, 2, 3, 10])),
            "bad_name": None}[case]
    out = tmp_path / "report.json"
    arg = "s=" + path if path else "no-equals-sign"
    line = one_line_error(run_tool(
        "sample_quality.py", "--judge-weights", short_dg_lenet, "--set", arg, "--out", out,
        "--train-lmdb", subset / "mnist_train_lmdb", "--test-lmdb", subset / "mnist_test_lmdb",
        check=False, cwd=REPO))
    expected = message % path if "%s" in message else message
    assert expected in line, line
    assert not out.exists()


# ---------------------------------------------------------------------------
# The committed reports: every number recomputed from the committed files
# ---------------------------------------------------------------------------

COMMITTED_REPORTS = sorted(
    os.path.join("results", name) for name in os.listdir(os.path.join(REPO, "results"))
    if name.startswith("sample_quality") and name.endswith(".json"))


@pytest.fixture(scope="module")
def full_mnist(tmp_path_factory, shared_dir):
    out = tmp_path_factory.mktemp("full_mnist")
    run_tool("get_mnist.py", "--from", os.path.join(shared_dir, "data", "mnist"), "--out", out)
    return out


@pytest.fixture(scope="module")
def full_cifar10(tmp_path_factory, shared_dir):
    out = tmp_path_factory.mktemp("full_cifar10")
    source = os.path.join(shared_dir, "data", "cifar10")
    run_tool("cifar10_data.py", os.path.join(source, "cifar10-jpeg.tar.gz"), "--sha256sums",
             os.path.join(source, "SHA256SUMS"), "--out", out, "--snapshots", out / "snap")
    return out


@pytest.mark.parametrize("path", COMMITTED_REPORTS)
@pytest.mark.slow
def test_committed_report_is_recomputed_from_its_committed_files(path, request,
                                                                 monkeypatch):
    """The judge and sampled nets' caffemodels and the sample sets are
    committed: a clone recomputes every number of the report (1e-6 relative),
    with MNIST's LMDBs built afresh (their recorded paths are the only
    difference allowed). The judge runs in the same batches as when the
    reports were made, so with the same BLAS the features are the same
    numbers (upstream BVLC 1.0 reproduces every report too); another BLAS
    may round the GEMMs differently. Measured by
    `bench/float32_batch_rounding.py --reports 1` (the judge one image at a
    time, which moves ip1 by the most measured, 2.6e-7 of its size): no
    number of any committed report moves by more than 2.8e-8 relative, 1/35
    of the tolerance."""
    monkeypatch.chdir(REPO)
    report = json.load(open(path))
    # MNIST's reports, or CIFAR-10's (a judge with a mean image), each with
    # its data set's LMDBs (and mean) built afresh
    cifar = report["judge"].get("mean_file") is not None
    data = request.getfixturevalue("full_cifar10" if cifar else "full_mnist")
    prefix = "cifar10" if cifar else "mnist"
    settings = sq_report.report_settings(report)
    for name, sample_path in settings["sets"] + ([settings["q_alone"]]
                                                 if settings["q_alone"] else []):
        assert os.path.isfile(sample_path), "%s: %s is not committed" % (name, sample_path)
    assert os.path.isfile(settings["judge_weights"])
    settings.update(train_lmdb=str(data / ("%s_train_lmdb" % prefix)),
                    test_lmdb=str(data / ("%s_test_lmdb" % prefix)))
    if cifar:
        settings["mean_file"] = str(data / "mean.binaryproto")
    new = json.loads(json.dumps(sq_report.make_report(log=lambda message: None, **settings)))
    for key in ("train_lmdb", "test_lmdb") + (("mean_file",) if cifar else ()):
        new["judge"][key] = report["judge"][key]
    assert sq_report.report_differences(report, new) == []
