"""The data-fitted Gaussian q (gencnn.sampling.reference.fit_gaussian,
EigenGaussian) and HMC restricted to the pixel box (HMCSampler bounds):
operators against dense float64 linear algebra, and exactness against
closed-form or rejection-sampled targets. Fixed seeds throughout."""
import json
import os

import numpy as np
import pytest
from scipy import stats

from gencnn.sampling import hmc, reference
from test_hmc import GAUSSIAN_NET, make_net, sample_tilted_correlated_gaussian


def correlated_images(count, shape, seed, spread=100.0):
    """Images from N(m, C): C with eigenvalues spread `spread`-fold."""
    rng = np.random.RandomState(seed)
    dim = int(np.prod(shape))
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    variances = np.logspace(0, -np.log10(spread), dim)
    mean = rng.uniform(0.2, 0.8, dim)
    cov = (basis * variances).dot(basis.T)
    images = rng.multivariate_normal(mean, cov, size=count)
    return images.reshape((count,) + tuple(shape)), mean, cov


@pytest.mark.parametrize("kind", ["full", "lowrank"])
def test_eigen_gaussian_operators_match_dense_algebra(kind):
    images, _, _ = correlated_images(500, (2, 3, 3), seed=1)
    q = reference.fit_gaussian(images, kind=kind, shrinkage=1e-3, rank=5)
    flat = images.reshape(len(images), -1)
    sample_cov = np.cov(flat, rowvar=False)
    if kind == "full":
        sigma = sample_cov + 1e-3 * np.eye(18)
    else:
        values, vectors = np.linalg.eigh(sample_cov)
        values, vectors = values[::-1], vectors[:, ::-1]
        top = vectors[:, :5]
        residual = values[5:].mean() + 1e-3
        sigma = (top * (values[:5] + 1e-3)).dot(top.T) + residual * (np.eye(18) - top.dot(top.T))
        # the low-rank q keeps the total variance (up to the shrinkage)
        assert np.trace(sigma) == pytest.approx(np.trace(sample_cov) + 18e-3, rel=1e-9)
    np.testing.assert_allclose(q.mean.ravel(), flat.mean(axis=0), atol=1e-12)
    v = np.random.RandomState(2).standard_normal((4, 2, 3, 3))
    values, vectors = np.linalg.eigh(sigma)
    for power in (1.0, -1.0, 0.5, -0.5):
        dense = (vectors * values ** power).dot(vectors.T)
        np.testing.assert_allclose(q.cov_power(v, power).reshape(4, -1),
                                   v.reshape(4, -1).dot(dense), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(q.dense_covariance(), sigma, atol=1e-12)
    np.testing.assert_allclose(q.variance, np.diag(sigma), rtol=1e-10)
    d = (v - q.mean).reshape(4, -1)
    np.testing.assert_allclose(q.energy(v), 0.5 * np.einsum("ni,ij,nj->n", d, np.linalg.inv(sigma), d),
                               rtol=1e-7)
    # draws have q's covariance (4.5 standard errors per entry)
    draws = q.sample(np.random.RandomState(3), (20000, 2, 3, 3)).reshape(20000, -1)
    scale = np.sqrt(np.outer(np.diag(sigma), np.diag(sigma)) + sigma ** 2)
    assert np.all(np.abs(np.cov(draws, rowvar=False) - sigma) < 4.5 * scale / np.sqrt(20000))


def test_fit_gaussian_diagonal_and_bad_input():
    images, _, cov = correlated_images(400, (3, 4), seed=4)
    q = reference.fit_gaussian(images, kind="diagonal", shrinkage=1e-2)
    assert isinstance(q, reference.DiagonalGaussian)
    np.testing.assert_allclose(q.std ** 2, images.var(axis=0, ddof=1) + 1e-2, rtol=1e-12)
    with pytest.raises(ValueError, match="kind"):
        reference.fit_gaussian(images, kind="spectral")
    with pytest.raises(ValueError, match="shrinkage"):
        reference.fit_gaussian(images, shrinkage=0)
    with pytest.raises(ValueError, match="rank"):
        reference.fit_gaussian(images, kind="lowrank", rank=12)
    with pytest.raises(ValueError, match="2 images"):
        reference.fit_gaussian(images[:1])


def test_preconditioned_hmc_samples_a_full_covariance_target(tmp_path):
    """q = N(mu, Sigma) fitted to correlated images (eigenvalues 1000x
    apart), mass matrix m Sigma^-1: samples of p_y = N(mu + Sigma w_y, Sigma),
    whitened, have mean 0 and covariance I in every entry."""
    images, _, _ = correlated_images(5000, (2, 6, 6), seed=5, spread=1000.0)
    q = reference.fit_gaussian(images, kind="full", shrinkage=1e-4)
    sample_tilted_correlated_gaussian(tmp_path, q, 3000, seeds=(6, 7), scale=1.0, unit=1)


def test_box_with_identity_mass_samples_truncated_normals(tmp_path):
    """White q = N(0.3, 0.5^2), f = w.x + b, box [0, 1]: the target is a
    product of normals N(0.3 + 0.25 w_i, 0.5^2) truncated to [0, 1]; the
    samples' means and variances match scipy's, and none leaves the box."""
    chains, unit, mu, sigma = 4000, 2, 0.3, 0.5
    net = make_net(tmp_path, GAUSSIAN_NET, chains, seed=8)
    sampler = hmc.HMCSampler(hmc.NodeScore(net, "ip", unit), step_size=0.25, leapfrog_steps=6,
                             mass=1.0, mass_convention="inverse", sigma=sigma, ref_mean=mu,
                             bounds=(0.0, 1.0), seed=9)
    out = sampler.sample(sampler.initial_state((chains, 4)), iters=40)
    x = out["samples"]
    assert x.min() >= 0 and x.max() <= 1
    assert sampler.reflections > chains                     # the walls were hit
    w = net.params["ip"][0].data[unit].astype(np.float64)
    loc = mu + sigma ** 2 * w
    truth = stats.truncnorm((0 - loc) / sigma, (1 - loc) / sigma, loc=loc, scale=sigma)
    sd = np.sqrt(truth.var())
    assert np.all(np.abs(x.mean(axis=0) - truth.mean()) < 4.5 * sd / np.sqrt(chains))
    assert np.all(np.abs(x.var(axis=0) / truth.var() - 1) < 6 * np.sqrt(2.0 / chains))
    assert 0.5 < out["accepted"].mean() <= 1


def box_target_moments(mean, cov, count, seed):
    """Mean and covariance of N(mean, cov) restricted to [0, 1]^d, by
    rejection (float64)."""
    draws = np.random.RandomState(seed).multivariate_normal(mean, cov, size=count)
    inside = draws[((draws >= 0) & (draws <= 1)).all(axis=1)]
    return inside.mean(axis=0), np.cov(inside, rowvar=False), len(inside)


@pytest.mark.slow
def test_box_with_full_mass_matrix_is_exact(tmp_path):
    """A correlated 4-pixel q, mass matrix m Sigma^-1, box [0, 1]: the
    reflecting sampler's means and covariances match rejection sampling of
    N(mu + Sigma w, Sigma) on the box."""
    chains, unit = 4000, 0
    images, _, _ = correlated_images(3000, (4,), seed=10, spread=20.0)
    q = reference.fit_gaussian(images * 0.4, kind="full", shrinkage=1e-3)
    net = make_net(tmp_path, GAUSSIAN_NET, chains, seed=11)
    sampler = hmc.HMCSampler(hmc.NodeScore(net, "ip", unit), step_size=0.3, leapfrog_steps=6,
                             mass=1.0, mass_convention="inverse", reference=q,
                             precondition=True, bounds=(0.0, 1.0), seed=12)
    out = sampler.sample(sampler.initial_state((chains, 4)), iters=40)
    x = out["samples"]
    assert x.min() >= 0 and x.max() <= 1 and sampler.reflections > chains
    w = net.params["ip"][0].data[unit].astype(np.float64)
    sigma = q.cov_power(np.eye(4), 1.0)
    mean, cov, kept = box_target_moments(q.mean + sigma.dot(w), sigma, 2000000, seed=13)
    assert kept > 100000
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(x.mean(axis=0) - mean) < 4.5 * sd / np.sqrt(chains))
    scale = np.sqrt(np.outer(np.diag(cov), np.diag(cov)) + cov ** 2)
    assert np.all(np.abs(np.cov(x, rowvar=False) - cov) < 5 * scale / np.sqrt(chains))
    assert 0.5 < out["accepted"].mean() <= 1 and sampler.rejected_reflecting == 0


@pytest.mark.parametrize("precondition", [False, True])
def test_reflecting_move_keeps_kinetic_energy_and_reverses(tmp_path, precondition):
    """One long position step through many walls: K unchanged, and the step
    from the end with the momentum turned comes back to the start."""
    images, _, _ = correlated_images(2000, (4,), seed=14, spread=20.0)
    q = reference.fit_gaussian(images * 0.4, kind="full", shrinkage=1e-3)
    net = make_net(tmp_path, GAUSSIAN_NET, 50, seed=15)
    sampler = hmc.HMCSampler(hmc.NodeScore(net, "ip", 0), mass=1.0, mass_convention="inverse",
                             reference=q if precondition else None, precondition=precondition,
                             bounds=(0.0, 1.0), seed=16)
    x0 = np.random.RandomState(17).uniform(0, 1, (50, 4))
    phi0 = sampler.sample_momentum(x0.shape)
    x1, phi1 = sampler.move(x0, phi0, 8.0)
    assert sampler.reflections > 200 and sampler.rejected_reflecting == 0
    assert x1.min() >= 0 and x1.max() <= 1
    np.testing.assert_allclose(sampler.kinetic_energy(phi1), sampler.kinetic_energy(phi0),
                               rtol=1e-9)
    x2, phi2 = sampler.move(x1, -phi1, 8.0)
    np.testing.assert_allclose(x2, x0, atol=1e-8)
    np.testing.assert_allclose(-phi2, phi0, atol=1e-8)


def test_bounds_are_checked():
    q = reference.SpectralGaussian([0.0], np.ones((1, 4, 4)))
    with pytest.raises(ValueError, match="lo < hi"):
        hmc.HMCSampler(lambda x: None, bounds=(1.0, 0.0))
    with pytest.raises(ValueError, match="not supported"):
        hmc.HMCSampler(lambda x: None, reference=q, precondition=True, bounds=(0.0, 1.0))


def test_logit_score_gradient_matches_finite_differences(tmp_path):
    net = make_net(tmp_path, GAUSSIAN_NET, 3, seed=18)
    score = hmc.LogitScore(hmc.NodeScore(net, "ip", 1), bounds=(-0.5, 2.0))
    u = np.random.RandomState(19).standard_normal((3, 4))
    f, grad = score(u)
    x = score.to_pixels(u)
    assert np.all((x > -0.5) & (x < 2.0))
    eps = 1e-3
    for i in range(4):
        du = np.zeros_like(u)
        du[:, i] = eps
        numeric = (score(u + du)[0] - score(u - du)[0]) / (2 * eps)
        np.testing.assert_allclose(grad[:, i], numeric, rtol=2e-3, atol=2e-4)


def test_logit_pixel_model_is_exact(tmp_path):
    """q a correlated Gaussian on u = logit(x), f = w.x + b: HMC on u with
    LogitScore gives E[x] and E[x^2] of exp(f(x)) q(x) / Z, computed by
    importance sampling from q (float64)."""
    chains, unit = 4000, 2
    logits, _, _ = correlated_images(3000, (4,), seed=20, spread=20.0)
    q = reference.fit_gaussian(3 * (logits - 0.5), kind="full", shrinkage=1e-3)
    net = make_net(tmp_path, GAUSSIAN_NET, chains, seed=21, scale=2.0)
    score = hmc.LogitScore(hmc.NodeScore(net, "ip", unit))
    sampler = hmc.HMCSampler(score, step_size=0.3, leapfrog_steps=6, mass=1.0,
                             mass_convention="inverse", reference=q, precondition=True, seed=22)
    out = sampler.sample(sampler.initial_state((chains, 4)), iters=40)
    x = score.to_pixels(out["samples"])
    w = net.params["ip"][0].data[unit].astype(np.float64)
    draws = score.to_pixels(q.sample(np.random.RandomState(23), (1000000, 4)))
    weights = np.exp(draws.dot(w) - draws.dot(w).max())
    weights /= weights.sum()
    mean = weights.dot(draws)
    var = weights.dot(draws ** 2) - mean ** 2
    plain = draws.mean(axis=0)
    assert np.abs(mean - plain).max() > 10 * np.sqrt(var.max() / chains)   # f matters
    assert np.all(np.abs(x.mean(axis=0) - mean) < 4.5 * np.sqrt(var / chains))
    assert np.all(np.abs(x.var(axis=0) / var - 1) < 6 * np.sqrt(2.0 / chains))
    assert 0.5 < out["accepted"].mean() <= 1


def test_dequantized_logits_spread_each_level():
    rng = np.random.RandomState(24)
    pixels = rng.randint(0, 256, size=(2000, 1, 2, 2)) / 256.0
    u = reference.dequantized_logits(pixels, np.random.RandomState(25), 1 / 256.0)
    x = 1 / (1 + np.exp(-u))
    assert np.all(np.isfinite(u)) and np.all((x > pixels) & (x < pixels + 1 / 256.0 + 1e-9))
    # uniform within its level: the offset's mean is half a level (4.5 standard errors)
    offset = (x - pixels) * 256
    assert abs(offset.mean() - 0.5) < 4.5 * np.sqrt(1 / 12.0 / offset.size)


# ---------------------------------------------------------------------------
# tools/hmc_visualize.py with a fitted q and valid pixels
# ---------------------------------------------------------------------------

from test_hmc import lenet_weights, run_tool, LENET  # noqa: E402,F401 (fixture)


@pytest.mark.parametrize("pixel_model", ["logit", "box"])
@pytest.mark.slow
def test_cli_fitted_q_gives_valid_images(tmp_path, lenet_weights, subset, pixel_model):
    """--preset lenet-fitted: q a full-covariance Gaussian fitted to the
    LMDB's images, T = 1, every pixel of every sample in [0, 1], the
    samples a set for tools/sample_quality.py (x, y)."""
    out = tmp_path / pixel_model
    proc = run_tool(["--model", LENET, "--weights", lenet_weights, "--blob", "ip2",
                     "--unit", "2,5", "--num-chains", "3", "--preset", "lenet-fitted",
                     "--pixel-model", pixel_model, "--adapt", "3", "--iters", "3",
                     "--reference-lmdb", str(subset / "mnist_train_lmdb"),
                     "--reference-count", "500", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    summary = json.load(open(str(out / "summary.json")))
    assert summary["temperature"] == 1.0 and summary["pixel_model"] == pixel_model
    assert summary["gaussian"] == {"kind": "full", "shrinkage": 1e-3, "rank": None,
                                   "images": 500}
    assert summary["mass_matrix"] == "q" and summary["pixels_out_of_bounds"] == 0.0
    samples = np.load(str(out / "samples.npz"))
    assert samples["x"].shape == (6, 1, 28, 28) and list(samples["y"]) == [2, 2, 2, 5, 5, 5]
    assert samples["x"].min() >= 0 and samples["x"].max() <= 1
    assert np.abs(np.diff(samples["x"], axis=0)).max() > 0.1       # chains differ


@pytest.mark.parametrize("args,message", [
    (["--bounds", "1,0"], "--bounds needs finite lo < hi"),
    (["--bounds", "0"], "--bounds must be lo,hi or none"),
    (["--bounds", "0,1", "--pixel-model", "logit"], "--pixel-model logit needs q fitted"),
    (["--reference", "fit-gaussian", "--shrinkage", "0"], "--shrinkage must be a positive"),
])
def test_cli_fitted_q_bad_input_is_one_line(tmp_path, lenet_weights, args, message):
    proc = run_tool(["--model", LENET, "--weights", lenet_weights, "--blob", "ip2",
                     "--out", str(tmp_path / "never")] + args)
    assert proc.returncode == 2 and not os.path.exists(str(tmp_path / "never"))
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
