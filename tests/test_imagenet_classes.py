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
