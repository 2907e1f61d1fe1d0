"""The data-fitted Gaussian q (gencnn.visualization.reference.fit_gaussian,
EigenGaussian) and HMC restricted to the pixel box (HMCSampler bounds):
operators against dense float64 linear algebra, and exactness against
closed-form or rejection-sampled targets. Fixed seeds throughout."""
import numpy as np
import pytest
from scipy import stats

from gencnn.visualization import hmc, reference
from test_hmc import GAUSSIAN_NET, IMAGE_GAUSSIAN_NET, make_net


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
    chains, unit = 3000, 1
    images, _, _ = correlated_images(5000, (2, 6, 6), seed=5, spread=1000.0)
    q = reference.fit_gaussian(images, kind="full", shrinkage=1e-4)
    net = make_net(tmp_path, IMAGE_GAUSSIAN_NET, chains, seed=6, scale=1.0)
    sampler = hmc.HMCSampler(hmc.NodeScore(net, "ip", unit), step_size=0.3, leapfrog_steps=5,
                             mass=1.0, mass_convention="inverse", reference=q,
                             precondition=True, seed=7)
    # start 3 whitened sd away from q's mean in every direction
    x0 = q.sample(sampler.rng, (chains, 2, 6, 6)) + q.cov_power(np.full((1, 2, 6, 6), 3.0), 0.5)
    out = sampler.sample(x0, iters=40)
    w = net.params["ip"][0].data[unit].astype(np.float64).reshape(1, 2, 6, 6)
    target_mean = q.mean + q.cov_power(w, 1.0)[0]
    assert np.abs(q.cov_power(w, 0.5)).max() > 1.0    # the tilt: > 1 sd in some direction
    z = q.cov_power(out["samples"] - target_mean, -0.5).reshape(chains, -1)
    n = float(chains)
    assert np.abs(z.mean(axis=0)).max() < 4.5 / np.sqrt(n)
    cov = np.cov(z, rowvar=False)
    assert np.abs(np.diag(cov) - 1).max() < 4.5 * np.sqrt(2 / n)
    assert np.abs(cov - np.diag(np.diag(cov))).max() < 5 / np.sqrt(n)
    assert 0.5 < out["accepted"].mean() < 1 and not out["divergent"].any()


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
