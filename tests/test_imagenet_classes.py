"""ImageNet class samples: the measures (gencnn/visualization/class_measures.py),
the separable blur q, and the committed report recomputed from the committed
samples (results/imagenet_classes.json)."""
import json
import os

import numpy as np
import pytest

from gencnn import config
from gencnn.sampling.separable import blur_gaussian, circular_blur_matrix
from gencnn.visualization import class_measures

REPORT = os.path.join(config.REPO_ROOT, "results", "imagenet_classes.json")


@pytest.fixture
def squeezenet(shared_dir):
    folder = os.path.join(shared_dir, "models", "squeezenet_v1.0")
    return {"model": os.path.join(folder, "SqueezeNet_deploy.prototxt"),
            "weights": os.path.join(folder, "squeezenet_v1.0_deepcompressed.caffemodel"),
            "photos": os.path.join(shared_dir, "data", "imagenet_stubs")}


def test_blur_q_powers_compose_and_its_draws_have_its_covariance():
    q = blur_gaussian((2, 20, 20), 5.0, 1.5)
    v = np.random.default_rng(0).standard_normal((3, 2, 20, 20))
    assert np.allclose(q.cov_power(q.cov_power(v, 0.5), 0.5), q.cov_power(v, 1.0))
    # (Sigma's condition number is FLOOR^-2 = 1e12: float64 round trips keep ~1e-4)
    assert np.allclose(q.cov_power(q.cov_power(v, -1.0), 1.0), v, atol=1e-3)
    draws = q.sample(np.random.default_rng(1), (4000, 2, 20, 20))
    assert draws[:, 0, 7, 7].std() == pytest.approx(q.marginal_std(), rel=0.05)
    # the covariance of two neighbours is the blur's: B^2's entry, times sd^2
    b2 = circular_blur_matrix(20, 1.5).dot(circular_blur_matrix(20, 1.5))
    expected = 25.0 * b2[7, 7] * b2[7, 8]
    assert np.mean(draws[:, 1, 7, 7] * draws[:, 1, 7, 8]) == pytest.approx(expected, rel=0.1)
    # one chain's arithmetic does not depend on the batch around it
    assert np.array_equal(q.cov_power(v[1:2], 0.5)[0], q.cov_power(v, 0.5)[1])


def test_power_slope_tells_white_noise_from_a_photo_like_spectrum():
    rng = np.random.default_rng(2)
    white = rng.standard_normal((4, 1, 128, 128))
    assert abs(class_measures.power_slope(white)[0]) < 0.15
    k = np.fft.fftfreq(128)
    radius = np.sqrt(k.reshape(-1, 1) ** 2 + k.reshape(1, -1) ** 2)
    radius[0, 0] = 1.0
    pink = np.real(np.fft.ifft2(np.fft.fft2(white) * radius ** -1.4))   # power ~ f^-2.8
    assert class_measures.power_slope(pink)[0] == pytest.approx(-2.8, abs=0.25)


def test_diversity_is_zero_for_copies_and_grows_with_difference():
    rng = np.random.default_rng(3)
    base = rng.random((1, 16)) + 0.5
    copies = np.repeat(base, 4, axis=0)
    assert class_measures.diversity(copies, [0, 0, 0, 0]) == pytest.approx(0.0, abs=1e-12)
    varied = copies + rng.random((4, 16))
    assert class_measures.diversity(varied, [0, 0, 1, 1]) > 0.01
    with pytest.raises(ValueError):
        class_measures.diversity(copies[:2], [0, 1])


def test_held_out_transforms_move_the_image_and_keep_its_pixels():
    mean = (104.0, 117.0, 123.0)
    rng = np.random.default_rng(4)
    x = np.round(rng.uniform(0, 255, (1, 3, 40, 40))) - np.array(mean).reshape(1, 3, 1, 1)
    for name, _ in class_measures.HELD_OUT:
        moved = class_measures.held_out(x, mean, name)
        assert moved.shape == x.shape
        assert not np.allclose(moved, x)
        assert class_measures.out_of_box(moved, mean) == 0.0
    flipped = class_measures.held_out(x, mean, "flip")
    assert np.allclose(flipped[..., ::-1], x)
    shifted = class_measures.held_out(x, mean, "shift_24")
    assert np.allclose(shifted[..., 30], x[..., 6], atol=1e-3)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isfile(REPORT), reason="no committed report")
def test_committed_report_recomputes_from_the_committed_samples(squeezenet):
    """Every number of results/imagenet_classes.json from the committed
    sample sets and the photos (SqueezeNet forwards: ~2 min)."""
    from gencnn.visualization import class_report
    with open(REPORT) as f:
        committed = json.load(f)
    recomputed = class_report.measure_report(
        os.path.join(config.REPO_ROOT, "results", "imagenet_classes"),
        squeezenet["model"], squeezenet["weights"], committed["net"]["blob"],
        squeezenet["photos"])
    recomputed["figures"] = committed["figures"]
    recomputed["net"] = committed["net"]
    committed_text = json.dumps(committed, sort_keys=True)

    def close(a, b, path="report"):
        if isinstance(a, dict):
            assert sorted(a) == sorted(b), path
            for key in a:
                close(a[key], b[key], path + "." + key)
        elif isinstance(a, list):
            assert len(a) == len(b), path
            for i, (u, v) in enumerate(zip(a, b)):
                close(u, v, "%s[%d]" % (path, i))
        elif isinstance(a, float) and not path.endswith(("wall_s", "s_per_chain_step")):
            # float32 forwards in batches of 8: the same batches as the
            # report's, so equal to rounding of the JSON's digits
            assert a == pytest.approx(b, rel=1e-6, abs=1e-9), path
        elif not isinstance(a, float):
            assert a == b, path
    close(json.loads(json.dumps(recomputed, sort_keys=True)), json.loads(committed_text))


def run_visualize(args):
    import subprocess
    import sys
    env = dict(os.environ, GLOG_minloglevel="2", OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, os.path.join(config.REPO_ROOT, "tools",
                                                        "hmc_visualize.py")] + args,
                          capture_output=True, text=True, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("name, preset", [("langevin_T0.001", "auto"),
                                          ("activation_maximization", "imagenet-am")])
def test_hmc_visualize_presets_are_the_studys_settings(squeezenet, tmp_path, name, preset):
    """--blob pool_final --unit N on an ImageNet net (--preset auto: the
    imagenet preset) samples exactly what tools/imagenet_classes.py's
    recommended set does, chain for chain; --preset imagenet-am its baseline."""
    from gencnn.visualization import class_samples
    out = str(tmp_path / "run")
    done = run_visualize(["--model", squeezenet["model"], "--weights", squeezenet["weights"],
                          "--blob", "pool_final", "--unit", "9", "--num-chains", "2",
                          "--iters", "2", "--workers", "2", "--preset", preset, "--out", out])
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(os.path.join(out, "samples.npz")) as stored:
        cli_samples = stored["x"]
    result, _ = class_samples.sample_set(squeezenet["model"], squeezenet["weights"],
                                         "pool_final", class_samples.SETTINGS[name],
                                         classes=(9,), chains=2, steps=2)
    assert np.array_equal(cli_samples, result.out["samples"].astype(cli_samples.dtype))
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert summary["box"] == "image" and summary["transforms"] == "shift:16"
    pixels = cli_samples + np.array([104.0, 117.0, 123.0]).reshape(1, 3, 1, 1)
    assert pixels.min() >= -1e-3 and pixels.max() <= 255 + 1e-3


@pytest.mark.parametrize("args, message", [
    (["--sampler", "hmc", "--bounds", "none"], "random transforms make the score stochastic"),
    (["--sampler", "hmc", "--transforms", "none"], "--bounds image folds Langevin steps"),
    (["--adapt", "5"], "--adapt needs a Metropolis test"),
    (["--transforms", "rotate:3"], "--transforms: transforms must look like"),
    (["--preset", "imagenet-am", "--decay", "1.5"], "--decay must be below 1"),
])
def test_hmc_visualize_bad_sampler_options_are_one_line(squeezenet, tmp_path, args, message):
    done = run_visualize(["--model", squeezenet["model"], "--weights", squeezenet["weights"],
                          "--blob", "pool_final", "--num-chains", "1", "--iters", "1",
                          "--out", str(tmp_path / "run")] + args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], \
        done.stderr
    assert not os.path.exists(str(tmp_path / "run"))


def test_hmc_visualize_enumerated_transforms_with_hmc_on_lenet(tmp_path):
    """The exact form through the tool: HMC with S enumerated (9 shifts),
    LeNet with random weights is enough to run it end to end."""
    import caffe
    model = os.path.join(config.REPO_ROOT, "prototxt", "lenet_deploy.prototxt")
    weights = str(tmp_path / "lenet.caffemodel")
    caffe.Net(model, caffe.TEST).save(weights)
    out = str(tmp_path / "run")
    done = run_visualize(["--model", model, "--weights", weights, "--blob", "ip2",
                          "--unit", "3", "--num-chains", "2", "--iters", "3", "--workers", "1",
                          "--transforms", "shift:2,grid:2", "--transform-mode", "enumerate",
                          "--preset", "lenet-fitted", "--reference", "fixed", "--bounds",
                          "none", "--adapt", "0", "--out", out])
    assert done.returncode == 0, done.stderr[-2000:]
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert summary["sampler"] == "hmc" and summary["transform_mode"] == "enumerate"
    assert summary["transforms"] == "shift:2,grid:2"
    assert summary["evaluations"] == 1 + 3 * 10      # one batch (2 x 9 rows) per leapfrog step
    assert summary["acceptance_rate"] > 0
