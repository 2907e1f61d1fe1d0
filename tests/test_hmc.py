"""HMC generative visualization: gencnn/sampling/ (hmc, reference),
gencnn/visualization/ (receptive_field, node) and tools/hmc_visualize.py on
real pycaffe.
Fixed seeds throughout."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import caffe
from gencnn import caffe_utils, config
from gencnn.sampling import hmc, reference
from gencnn.visualization import node as node_lib, receptive_field
from gencnn.config import REPO_ROOT

TOOL = os.path.join(REPO_ROOT, "tools", "hmc_visualize.py")
LENET = os.path.join(REPO_ROOT, "prototxt", "lenet_deploy.prototxt")

# One InnerProduct on a d-dim input, a Softmax above it, no force_backward:
# f_y(x) = w_y . x + b_y, so p_y = N(mu + sigma^2 w_y, sigma^2 I).
GAUSSIAN_NET = """
name: "gaussian"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 3 } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""

# Smooth (TanH) two-layer net, for the energy-error order.
SMOOTH_NET = """
name: "smooth"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 20 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        inner_product_param { num_output: 16 } }
layer { name: "tanh1" type: "TanH" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        inner_product_param { num_output: 3 } }
"""

# conv + ReLU + max pool + conv + InnerProduct + Softmax, no force_backward.
CONV_NET = """
name: "conv"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 2 dim: 12 dim: 12 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 3 kernel_size: 3 } }
layer { name: "ip" type: "InnerProduct" bottom: "conv2" top: "ip"
        inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""


def make_net(tmp_path, text, num_chains, seed=0, scale=1.0, freeze_weights=True):
    """The net with Gaussian weights of a fixed seed (set from numpy, so the
    test does not depend on Caffe's filler RNG)."""
    path = str(tmp_path / "net.prototxt")
    with open(path, "w") as f:
        f.write(text)
    net = caffe_utils.load_net(path, None, num_chains, freeze_weights=freeze_weights)
    rng = np.random.RandomState(seed)
    for blobs in net.params.values():
        for blob in blobs:
            blob.data[...] = scale * rng.standard_normal(blob.data.shape)
    return net


# ---------------------------------------------------------------------------
# 1. Gaussian target
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mass,convention", [(2.0, "paper"), (0.5, "inverse")])
def test_gaussian_target_mean_and_variance(tmp_path, mass, convention):
    chains, unit, sigma, mu = 4000, 1, 0.7, 0.3
    net = make_net(tmp_path, GAUSSIAN_NET, chains, seed=1)
    score = hmc.NodeScore(net, "ip", unit)
    # trajectory eps L / sqrt(m) = 1.06, about a quarter of the 2 pi sigma period
    # (half a period would only reflect x about the mean, HMC's resonance)
    sampler = hmc.HMCSampler(score, step_size=0.3, leapfrog_steps=5, mass=mass,
                             mass_convention=convention, sigma=sigma, ref_mean=mu, seed=2)
    out = sampler.sample(sampler.initial_state((chains, 4)), iters=30)
    x = out["samples"]                       # final states of independent chains
    w = net.params["ip"][0].data[unit].astype(np.float64)
    expected_mean = mu + sigma ** 2 * w
    assert np.abs(w).max() > 0.5             # the tilt is visible at this sample size
    # 4.5 standard errors: sigma/sqrt(N) for a mean, sigma^2 sqrt(2/N) for a variance
    assert np.all(np.abs(x.mean(axis=0) - expected_mean) < 4.5 * sigma / np.sqrt(chains))
    assert np.all(np.abs(x.var(axis=0) / sigma ** 2 - 1) < 4.5 * np.sqrt(2.0 / chains))
    assert 0.5 < out["accepted"].mean() <= 1 and out["divergent"].sum() == 0
    assert sampler.evaluations == 1 + 30 * 5     # one forward+backward per leapfrog step


# An InnerProduct on a 2 x 6 x 6 image: f_y = w_y . x + b_y again, for a q
# with a correlated (spectral) covariance Sigma: p_y = N(mu + Sigma w_y, Sigma).
IMAGE_GAUSSIAN_NET = """
name: "image_gaussian"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 2 dim: 6 dim: 6 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 3 } }
"""


def power_law_spectrum(channels=2, side=6, amplitudes=(1.0, 3.0), offset=0.01):
    """P[c, k] = a_c / (offset + |k|^2): symmetric in k, 50x from the lowest
    to the highest frequency (natural images are ~1/|k|^2)."""
    fy = np.fft.fftfreq(side).reshape(-1, 1)
    fx = np.fft.fftfreq(side).reshape(1, -1)
    return np.array([a / (offset + fy ** 2 + fx ** 2) for a in amplitudes[:channels]])


ROTATION = np.array([[0.8, -0.6], [0.6, 0.8]])      # an orthogonal colour basis


@pytest.mark.parametrize("basis", [None, ROTATION])
def test_spectral_q_operators(basis):
    power = power_law_spectrum()
    q = reference.SpectralGaussian([0.5, -1.0], power, basis)
    rng = np.random.RandomState(20)
    v = rng.standard_normal((3, 2, 6, 6))
    np.testing.assert_allclose(q.cov_power(q.cov_power(v, 0.5), -0.5), v, atol=1e-12)
    np.testing.assert_allclose(q.cov_power(q.cov_power(v, 0.5), 0.5), q.cov_power(v, 1.0),
                               rtol=1e-10, atol=1e-12)
    # energy: (x - mu)^T Sigma^-1 (x - mu) / 2 = sum_k |X_k|^2 / P_k / 2 (full FFT)
    x = q.mean + v
    rotated = v if basis is None else np.einsum("dc,nd...->nc...", basis, v)
    spectrum = np.fft.fft2(rotated, norm="ortho")
    np.testing.assert_allclose(q.energy(x), 0.5 * (np.abs(spectrum) ** 2 / power).sum(axis=(1, 2, 3)),
                               rtol=1e-10)
    np.testing.assert_allclose(q.grad(x), q.cov_power(v, -1.0))
    # Sigma is symmetric: <a, Sigma b> = <Sigma a, b>
    a, b = v[0], v[1]
    assert abs((a * q.cov_power(b[None], 1.0)[0]).sum()
               - (q.cov_power(a[None], 1.0)[0] * b).sum()) < 1e-9
    # draws: per-pixel variance mean(P) per channel (rotated by the basis)
    draws = q.sample(rng, (20000, 2, 6, 6))
    np.testing.assert_allclose(draws.var(axis=(0, 2, 3)), q.marginal_std() ** 2, rtol=0.03)
    if basis is None:
        np.testing.assert_allclose(q.marginal_std() ** 2, power.mean(axis=(1, 2)))
    else:     # the channels are correlated as the basis says
        colour_cov = np.cov(draws.transpose(1, 0, 2, 3).reshape(2, -1))
        expected = basis.dot(np.diag(power.mean(axis=(1, 2)))).dot(basis.T)
        np.testing.assert_allclose(colour_cov, expected, atol=0.03 * expected.max())
    with pytest.raises(ValueError, match="symmetric"):
        reference.SpectralGaussian([0, 0], power + rng.uniform(0, 1, power.shape))
    with pytest.raises(ValueError, match="factorize"):
        q.crop((0, 3, 0, 3))
    with pytest.raises(ValueError, match="orthogonal"):
        reference.SpectralGaussian([0, 0], power, [[1.0, 0.5], [0.0, 1.0]])


def test_fit_spectrum_recovers_a_known_spectrum():
    power = power_law_spectrum()
    truth = reference.SpectralGaussian([10.0, -5.0], power)
    images = truth.sample(np.random.RandomState(21), (4000, 2, 6, 6))
    fitted = reference.fit_spectrum(images, smooth=0)
    np.testing.assert_allclose(fitted.mean.ravel(), [10.0, -5.0], atol=0.1)
    # an average of 4000 periodograms: within 4.5 sqrt(2/4000) = 10 % everywhere
    assert np.abs(fitted.power / power - 1).max() < 0.1
    # with correlated channels, decorrelate_colour finds the basis: the fitted
    # covariance operator is the truth's (the basis's order and signs may differ)
    truth = reference.SpectralGaussian([10.0, -5.0], power, ROTATION)
    images = truth.sample(np.random.RandomState(24), (4000, 2, 6, 6))
    plain = reference.fit_spectrum(images, smooth=0)
    fitted = reference.fit_spectrum(images, smooth=0, decorrelate_colour=True)
    v = np.random.RandomState(25).standard_normal((20, 2, 6, 6))

    def error(q):
        return np.linalg.norm(q.cov_power(v, 1.0) - truth.cov_power(v, 1.0)) / \
            np.linalg.norm(truth.cov_power(v, 1.0))
    assert error(fitted) < 0.05 and error(plain) > 0.3, (error(fitted), error(plain))


def test_fit_spectrum_window_removes_the_border_cross():
    """Smooth images with a jump between opposite borders (a ramp): the plain
    periodogram puts that jump's power on the frequency axes, the Hann
    window does not."""
    ramp = np.linspace(0, 1, 32)
    rng = np.random.RandomState(26)
    images = np.array([[a * ramp[:, None] + b * ramp[None, :]] for a, b in
                       rng.standard_normal((50, 2))]) + 0.01 * rng.standard_normal((50, 1, 32, 32))
    axis_power = {}
    for window in (False, True):
        p = reference.fit_spectrum(images, smooth=0, window=window).power[0]
        axis_power[window] = p[0, 8:25].mean() / p[8:25, 8:25].mean()   # axis vs diagonal
    assert axis_power[False] > 100 and axis_power[True] < 10, axis_power


def sample_tilted_correlated_gaussian(tmp_path, q, chains, seeds, scale, unit):
    """HMC with mass matrix Sigma^-1 on p_y = exp(w_y . x + b_y) q = N(mu +
    Sigma w_y, Sigma) for a correlated q on 2 x 6 x 6 inputs, started 3
    whitened sd from q's mean in every direction (a sampler that does not
    move fails); asserts the whitened samples have mean 0 and covariance I
    in every entry (4.5-5 standard errors). Returns (out, target mean)."""
    net = make_net(tmp_path, IMAGE_GAUSSIAN_NET, chains, seed=seeds[0], scale=scale)
    sampler = hmc.HMCSampler(hmc.NodeScore(net, "ip", unit), step_size=0.3, leapfrog_steps=5,
                             mass=1.0, mass_convention="inverse", reference=q,
                             precondition=True, seed=seeds[1])
    x0 = sampler.initial_state((chains, 2, 6, 6)) + q.cov_power(np.full((1, 2, 6, 6), 3.0), 0.5)
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
    return out, target_mean


@pytest.mark.parametrize("basis", [None, ROTATION])
@pytest.mark.slow
def test_preconditioned_hmc_samples_a_correlated_gaussian_target(tmp_path, basis):
    """q = N(mu, Sigma) with Sigma diagonal in the 2-D Fourier basis (50x
    between frequencies), the mass matrix m Sigma^-1: the samples of
    p_y = N(mu + Sigma w_y, Sigma), whitened, have mean 0 and covariance I
    (every one of the 72 x 72 entries), and in the Fourier basis each
    frequency's power is P_k."""
    chains = 3000
    power = power_law_spectrum()
    q = reference.SpectralGaussian([0.3, -0.2], power, basis)
    out, target_mean = sample_tilted_correlated_gaussian(tmp_path, q, chains, seeds=(22, 23),
                                                         scale=0.3, unit=2)
    n = float(chains)
    # the same in the Fourier basis: E |F(x - m)_k|^2 = P_k, per channel and frequency
    centred = out["samples"] - target_mean
    if basis is not None:
        centred = np.einsum("dc,nd...->nc...", basis, centred)
    spectrum = np.fft.fft2(centred, norm="ortho")
    ratio = (np.abs(spectrum) ** 2).mean(axis=0) / power
    assert np.abs(ratio - 1).max() < 4.5 * np.sqrt(2 / n)
    assert 0.5 < out["accepted"].mean() < 1 and not out["divergent"].any()


def test_divergent_trajectories_are_rejected_and_counted(tmp_path):
    net = make_net(tmp_path, GAUSSIAN_NET, 50, seed=1)
    warned = []
    sampler = hmc.HMCSampler(hmc.NodeScore(net, "ip", 0), step_size=50.0, leapfrog_steps=20,
                             mass=1.0, sigma=0.1, seed=3, warn=warned.append)
    x0 = sampler.initial_state((50, 4))
    out = sampler.sample(x0, iters=2)
    assert out["divergent"].all() and not out["accepted"].any()
    assert np.array_equal(out["samples"], x0)
    assert len(warned) == 2 and "50 of 50 chains diverged" in warned[0]


def test_adaptation_finds_the_same_step_from_both_sides(tmp_path):
    """From a step that diverges and from one far too small, dual averaging
    ends at similar steps whose acceptance is near the target, and the step
    stays frozen afterwards."""
    net = make_net(tmp_path, GAUSSIAN_NET.replace("dim: 4", "dim: 100"), 100, seed=1)
    final = []
    for start in (5.0, 0.001):
        sampler = hmc.HMCSampler(hmc.NodeScore(net, "ip", 0), step_size=start,
                                 leapfrog_steps=5, mass=1.0, sigma=1.0, seed=4, warn=len)
        out = sampler.sample(sampler.initial_state((100, 100)), iters=20, adapt=100,
                             target_accept=0.7)
        assert out["step_size"][0] == start
        assert np.all(out["step_size"][100:] == out["final_step_size"])
        assert 0.6 < out["accept_prob"][50:100].mean() < 0.8      # while adapting
        assert 0.6 < out["accepted"][100:].mean() < 0.8            # frozen
        final.append(out["final_step_size"])
    assert 1 / 1.3 < final[0] / final[1] < 1.3, final


# ---------------------------------------------------------------------------
# 2. Leapfrog: energy error O(eps^2), reversibility
# ---------------------------------------------------------------------------

def test_energy_error_shrinks_as_step_squared(tmp_path):
    chains = 200
    net = make_net(tmp_path, SMOOTH_NET, chains, seed=5, scale=0.5)
    sampler = hmc.HMCSampler(hmc.NodeScore(net, "ip2", 2), mass=1.0, sigma=1.0, seed=6)
    x0 = sampler.initial_state((chains, 20))
    phi0 = sampler.sample_momentum(x0.shape)
    f0, grad0 = sampler.evaluate(x0)
    h0 = sampler.potential_energy(x0, f0) + sampler.kinetic_energy(phi0)
    errors = []
    for step, steps in ((0.2, 10), (0.1, 20), (0.05, 40)):     # same trajectory length
        x, phi, f, _ = sampler.leapfrog(x0, phi0, grad0, step, steps)
        errors.append(np.abs(sampler.potential_energy(x, f) + sampler.kinetic_energy(phi)
                             - h0).mean())
    for big, small in zip(errors, errors[1:]):
        assert 3.2 < big / small < 4.8, errors


def test_leapfrog_is_reversible(tmp_path):
    chains = 6
    net = make_net(tmp_path, CONV_NET, chains, seed=7)
    sampler = hmc.HMCSampler(hmc.NodeScore(net, "ip", 1), mass=0.5, sigma=1.0, seed=8)
    x0 = sampler.initial_state((chains, 2, 12, 12))
    phi0 = sampler.sample_momentum(x0.shape)
    _, grad0 = sampler.evaluate(x0)
    x1, phi1, _, grad1 = sampler.leapfrog(x0, phi0, grad0, 0.05, 15)
    assert np.abs(x1 - x0).max() > 0.1                          # it went somewhere
    x2, phi2, _, _ = sampler.leapfrog(x1, -phi1, grad1, 0.05, 15)
    np.testing.assert_allclose(x2, x0, atol=1e-4)
    np.testing.assert_allclose(-phi2, phi0, atol=1e-4)


# ---------------------------------------------------------------------------
# 3. df/dx from pycaffe against finite differences
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("blob,units,position", [
    ("ip", [0, 2, 4], None),         # Softmax above: backward starts at ip
    ("conv2", [0, 1, 2], None),      # centre of the 3x3 map
    ("conv2", [2, 2, 1], (0, 2)),
])
def test_gradient_matches_finite_differences(tmp_path, blob, units, position):
    net = make_net(tmp_path, CONV_NET, len(units), seed=9, scale=0.3)
    score = hmc.NodeScore(net, blob, units, position)
    x = np.random.RandomState(10).standard_normal((len(units), 2, 12, 12))
    f, grad = score(x)
    assert np.abs(grad).max() > 0.1
    # The net is piecewise linear, so a one-sided difference is exact unless
    # it crosses a ReLU or max-pool switch; one crossed on one side is
    # allowed by comparing with the better of the two sides.
    rng = np.random.RandomState(11)
    h = 1e-3
    for _ in range(4):
        v = rng.standard_normal(x.shape)
        v /= np.linalg.norm(v.reshape(len(units), -1), axis=1).reshape(-1, 1, 1, 1)
        forward = (score(x + h * v)[0] - f) / h
        backward = (f - score(x - h * v)[0]) / h
        analytic = (grad * v).reshape(len(units), -1).sum(axis=1)
        error = np.minimum(np.abs(analytic - forward), np.abs(analytic - backward))
        assert np.all(error < 5e-3 + 1e-2 * np.abs(analytic)), (analytic, forward, backward)
    # the node's value itself, read off a plain forward pass
    net.blobs["data"].data[...] = x
    net.forward()
    pos = position or (1, 1)
    expected = [net.blobs[blob].data[(n, u) + (pos if blob == "conv2" else ())]
                for n, u in enumerate(units)]
    np.testing.assert_allclose(f, expected, rtol=1e-5)


@pytest.mark.parametrize("text", [None, CONV_NET])
def test_frozen_weights_get_no_gradient(tmp_path, text, lenet_weights):
    """Caffe's force_backward turns every weight gradient back on, whatever
    lr_mult says; a frozen net (the default) computes none (the weight
    diffs stay 0) and the same df/dx as a net with force_backward."""
    if text is None:
        model, weights, blob, shape = LENET, lenet_weights, "ip2", (6, 1, 28, 28)
    else:
        model, weights, blob, shape = str(tmp_path / "net.prototxt"), None, "ip", (6, 2, 12, 12)
        weights = str(tmp_path / "net.caffemodel")
        make_net(tmp_path, text, 6, seed=15, scale=0.3, freeze_weights=False).save(weights)
    x = np.random.RandomState(14).standard_normal(shape)
    results = {}
    for freeze in (True, False):
        net = caffe_utils.load_net(model, weights, 6, freeze_weights=freeze)
        results[freeze] = hmc.NodeScore(net, blob, [0, 1, 2, 3, 4, 0])(x)
        diffs = [np.abs(b.diff).sum() for blobs in net.params.values() for b in blobs]
        assert all(d == 0 for d in diffs) if freeze else all(d > 0 for d in diffs), diffs
        assert list(net.params) == list(caffe.Net(model, caffe.TEST).params)
    assert np.abs(results[True][1]).max() > 0
    np.testing.assert_array_equal(results[True][0], results[False][0])
    np.testing.assert_array_equal(results[True][1], results[False][1])


def test_diverged_chains_never_reach_the_net(tmp_path):
    """A non-finite or absurdly far chain gets NaN and leaves the others alone
    (Caffe's max pooling would write out of bounds on an all-NaN window)."""
    net = make_net(tmp_path, CONV_NET, 3, seed=9, scale=0.3)
    score = hmc.NodeScore(net, "ip", [0, 1, 2])
    x = np.random.RandomState(13).standard_normal((3, 2, 12, 12))
    f, grad = score(x)
    bad = x.copy()
    bad[1] = np.nan
    f_bad, grad_bad = score(bad)
    assert np.isnan(f_bad[1]) and np.isnan(grad_bad[1]).all()
    np.testing.assert_allclose(f_bad[[0, 2]], f[[0, 2]], rtol=1e-6)
    np.testing.assert_allclose(grad_bad[[0, 2]], grad[[0, 2]], rtol=1e-6)
    sampler = hmc.HMCSampler(score, sigma=0.5, warn=len)
    far = x.copy()
    far[2, 0, 0, 0] = 0.5 * 2 * hmc.FAR_FROM_Q
    f_far, _ = sampler.evaluate(far)
    assert np.isnan(f_far[2]) and np.isfinite(f_far[:2]).all()


def test_receptive_field_of_lenet_nodes():
    net_param = caffe_utils.read_net(LENET)
    assert receptive_field.receptive_field(net_param, "conv1", (3, 10), (1, 28, 28)) == (3, 8, 10, 15)
    # conv2 (stride 2 after pool1): 14 x 14 pixels starting at 2 * position
    assert receptive_field.receptive_field(net_param, "conv2", (4, 0), (1, 28, 28)) == (8, 22, 0, 14)
    assert receptive_field.receptive_field(net_param, "ip2", (0, 0), (1, 28, 28)) is None


def test_node_on_its_input_crop_is_the_same_function(tmp_path, lenet_weights):
    """A convolutional node sampled on its receptive field only (input_crop)
    has the same value and gradient as on the whole image."""
    net_param = caffe_utils.read_net(LENET)
    full = caffe_utils.load_net(LENET, lenet_weights, 2)
    x = np.random.RandomState(12).uniform(-1, 2, (2, 1, 28, 28))
    f, grad = hmc.NodeScore(full, "conv2", [5, 17], (3, 6))(x)
    (y0, y1, x0, x1), small_position = receptive_field.input_crop(net_param, "conv2", (3, 6), (1, 28, 28))
    assert (y1 - y0, x1 - x0) == (14, 14)
    truncated = caffe_utils.truncate_net_param(net_param, "conv2")
    assert [layer.name for layer in truncated.layer] == ["data", "conv1", "pool1", "conv2"]
    small = caffe_utils.load_net(truncated, lenet_weights, 2)
    small.blobs["data"].reshape(2, 1, y1 - y0, x1 - x0)
    small.reshape()
    f_small, grad_small = hmc.NodeScore(small, "conv2", [5, 17], small_position)(
        x[..., y0:y1, x0:x1])
    # Convolutions over a 14 x 14 vs a 28 x 28 input are GEMMs of other sizes,
    # rounded differently: measured (bench/allclose_margins.py)
    # |d f| = 1.2e-7 on our build, 6.6e-7 on upstream BVLC 1.0 (4 % of this
    # tolerance); the gradients came out identical on both.
    np.testing.assert_allclose(f_small, f, rtol=1e-5, atol=1e-5)
    assert np.abs(grad).sum() > 0
    np.testing.assert_allclose(grad_small, grad[..., y0:y1, x0:x1], atol=1e-6)
    grad[..., y0:y1, x0:x1] = 0
    assert not grad.any()                 # nothing outside the crop matters
    # a field reaching into padding, or the whole image: no crop
    assert receptive_field.input_crop(net_param, "ip2", (0, 0), (1, 28, 28)) is None


def test_sample_node_on_a_crop_puts_q_draws_outside_the_field(lenet_weights):
    """sample_node samples a conv node on its field only and fills the rest
    of each sample from q; a fully connected node gets the net's verdict."""
    q = reference.DiagonalGaussian(0.1, 0.3)
    node = node_lib.open_node(LENET, lenet_weights, "conv2", [3, 7], 2, (2, 5))
    assert node.box == (4, 18, 10, 24) and list(node.chain_units) == [3, 3, 7, 7]
    result = node_lib.sample_node(node, q, iters=3, step_size=0.05, leapfrog_steps=3,
                                  mass=1.0, seed=5, warn=len)
    assert result.crop == ((4, 18, 10, 24), (0, 0)) and result.sample_shape == (1, 14, 14)
    assert result.sampler.evaluations == 1 + 3 * 3
    samples = result.out["samples"]
    assert samples.shape == (4, 1, 28, 28) and result.predicted_fraction is None
    outside = np.ones((28, 28), bool)
    outside[4:18, 10:24] = False
    rest = samples[:, 0][:, outside]
    assert abs(rest.mean() - 0.1) < 0.03 and abs(rest.std() - 0.3) < 0.03   # q's draws
    assert np.all(result.out["chain_mean"][:, 0][:, outside] == 0.1)
    assert result.out["accepted"].any()          # the field itself moved
    with pytest.raises(ValueError, match="open_node again"):
        node_lib.sample_node(node, q, iters=1)

    node = node_lib.open_node(LENET, lenet_weights, "ip2", None, 1)
    assert node.units == list(range(10)) and node.position is None
    result = node_lib.sample_node(node, q, iters=2, step_size=0.05, leapfrog_steps=2,
                                  mass=1.0, seed=5, warn=len)
    assert result.crop is None
    net = caffe_utils.load_net(LENET, lenet_weights, 10)
    net.blobs["data"].data[...] = result.out["samples"]
    net.forward()
    predicted = net.blobs["ip2"].data.argmax(axis=1)
    assert result.predicted_fraction == np.mean(predicted == np.arange(10))


# ---------------------------------------------------------------------------
# Per-chain random streams; chains split over worker processes
# ---------------------------------------------------------------------------

def test_a_chain_does_not_depend_on_the_other_chains(lenet_weights):
    """Chain i draws from its own stream (seed, i) and is computed in the
    same slot of a block of the same size (hmc.chain_blocks): chains 3 and 4
    of a 5-chain run, run alone as a shard (first_chain 3), follow the same
    trajectories bit for bit, q's draws outside the receptive field
    included."""
    q = reference.DiagonalGaussian(0.1, 0.3)
    outs = []
    for units, first_chain in (([1, 4, 6, 8, 9], 0), ([8, 9], 3)):
        node = node_lib.open_node(LENET, lenet_weights, "conv2", units, 1, (2, 5))
        outs.append(node_lib.sample_node(node, q, iters=4, step_size=0.2, leapfrog_steps=4,
                                         mass=1.0, seed=11, warn=len,
                                         first_chain=first_chain).out)
    whole, alone = outs
    # (a step with partial acceptance: the Metropolis uniforms decide)
    assert whole["accepted"].any() and (whole["accept_prob"] < 1).any()
    for key in ("accepted", "f", "delta_h"):
        np.testing.assert_array_equal(whole[key][:, 3:], alone[key])
    np.testing.assert_array_equal(whole["samples"][3:], alone["samples"])
    # and chains 0..2 differ from 3..4 and from each other (different streams)
    flat = whole["samples"].reshape(5, -1)
    assert np.corrcoef(flat).max(where=~np.eye(5, dtype=bool), initial=-1) < 0.5


def fitted_logit_q(seed=40):
    """A full-covariance Gaussian on logit(x) fitted to 300 quantized noise
    images: the lenet-fitted preset's kind of q (its whitening is a float64
    matrix product over the chains, numpy's GEMM)."""
    rng = np.random.RandomState(seed)
    images = np.floor(rng.uniform(0, 256, (300, 1, 28, 28))) / 256.0
    return reference.fit_q(images, "full", logit=(1 / 256.0, (0.0, 1.0)), seed=seed)


SPLIT_CASES = {
    # q, sample_node's options: LeNet's white q; the lenet-fitted preset's
    # model (logit pixels, fitted q, HMC in its whitened coordinates)
    "white": (lambda: reference.DiagonalGaussian(0.1, 0.3),
              dict(step_size=0.05, mass=1.0)),
    "fitted-logit": (fitted_logit_q,
                     dict(step_size=0.3, mass=1.0, mass_convention="inverse",
                          precondition=True, bounds=(0.0, 1.0), pixel_model="logit")),
}


def same(a, b):
    """Bit for bit (NaN, e.g. a divergent trajectory's delta H, equal to NaN)."""
    a, b = np.asarray(a), np.asarray(b)
    return np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


@pytest.mark.parametrize("case", sorted(SPLIT_CASES))
def test_chains_are_bit_identical_whatever_the_split(lenet_weights, case):
    """A long run (20 iterations of 20 leapfrog steps, 400 gradients): the
    chains of ip2 units 0-7 are the same bit for bit in one process, split
    over two workers (two Dask shards), as the first 3 of a 3-chain run and as the one-chain
    shard --chain-offset 7 (alone, a batch of one: Caffe's InnerProduct
    takes its GEMV path); with step-size adaptation (the acceptance
    averaged over the chains: the same numbers in the same order), one
    process and two workers agree too (the fitted q pickled to the workers
    comes back C-contiguous: the one process must use the same copy). Blocks
    of 4 chains, so 8 chains are two blocks, and the shard at 7 pads its
    block with chains 4-6."""
    make_q, options = SPLIT_CASES[case]
    q = make_q()

    def run(units, first_chain=0, workers=1, adapt=0):
        node = node_lib.open_node(LENET, lenet_weights, "ip2", units, 1)
        result = node_lib.sample_node(node, q, iters=20, leapfrog_steps=20, seed=13,
                                      warn=len, workers=workers, first_chain=first_chain,
                                      adapt=adapt, chain_block=4, **options)
        return result

    whole = run(list(range(8)))
    out = whole.out
    # the Metropolis test decided (partial acceptance), so rounding could show
    assert out["accepted"].any() and not out["accepted"].all()
    assert 0.05 < out["accept_prob"].mean() < 0.99
    keys = ("samples", "chain_mean", "f", "delta_h", "accept_prob", "accepted", "sq_norm")
    first3 = run([0, 1, 2]).out
    shard = run([7], first_chain=7).out
    split = run(list(range(8)), workers=2)       # a fixed step: shards on a LocalCluster
    assert split.workers == 2 and split.out["shards"] == 2
    for key in keys:
        per_chain = key in ("samples", "chain_mean")       # chains first, else iterations
        for part, rows in ((first3, slice(0, 3)), (shard, slice(7, 8)),
                           (split.out, slice(0, 8))):
            expected = out[key][rows] if per_chain else out[key][:, rows]
            assert same(expected, part[key]), key
    # adaptation: the lockstep pool
    one, two = run(list(range(8)), adapt=5), run(list(range(8)), workers=2, adapt=5)
    assert two.workers == 2 and one.workers == 1
    assert len(set(one.out["step_size"])) > 2        # the step was adapted
    for key in keys + ("step_size", "snapshots"):
        assert same(one.out[key], two.out[key]), key
    assert one.out["final_step_size"] == two.out["final_step_size"]


@pytest.mark.parametrize("blob,position,pixel_model", [
    ("ip2", None, None), ("conv2", (2, 5), None), ("ip2", None, "box"), ("ip2", None, "logit")])
def test_workers_give_the_same_chains_as_one_process(lenet_weights, blob, position,
                                                     pixel_model):
    """5 chains in blocks of 3 (hmc.chain_blocks), so split 3 + 2 over two
    worker processes, with step-size adaptation (the coordinator averages
    the acceptance over all chains): the same chains, diagnostics and step
    sizes as in this process, bit for bit; conv2 is sampled on its receptive
    field (the q draws outside it are per chain too); on the pixel box,
    reflecting or in logit coordinates."""
    q = reference.DiagonalGaussian(0.0, 1.0) if pixel_model == "logit" else \
        reference.DiagonalGaussian(0.1, 0.3)
    bounds = (0.0, 1.0) if pixel_model else None
    results = {}
    for workers in (1, 2):
        node = node_lib.open_node(LENET, lenet_weights, blob, [1, 4, 6, 8, 9], 1, position)
        results[workers] = node_lib.sample_node(node, q, iters=3, adapt=3, step_size=0.05,
                                                leapfrog_steps=4, mass=1.0, seed=12,
                                                warn=len, workers=workers, bounds=bounds,
                                                pixel_model=pixel_model or "box",
                                                chain_block=3)
    one, two = results[1], results[2]
    assert one.workers == 1 and two.workers == 2
    assert one.sampler.evaluations == two.sampler.evaluations == 1 + 6 * 4
    assert one.out["samples"].shape == (5, 1, 28, 28)
    if bounds:
        assert 0 <= two.out["samples"].min() and two.out["samples"].max() <= 1
        # the walls were hit (box: reflections counted in the workers, summed,
        # the padding chain's left out)
        assert (one.sampler.reflections > 0) == (pixel_model == "box")
        assert one.sampler.reflections == two.sampler.reflections
    assert (one.crop is None) == (blob == "ip2")
    assert one.out["accepted"].any()
    for key in ("accepted", "step_size", "samples", "chain_mean", "snapshots", "f",
                "delta_h", "accept_prob"):
        np.testing.assert_array_equal(one.out[key], two.out[key])


# ---------------------------------------------------------------------------
# The CLI
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lenet_weights(tmp_path_factory):
    """LeNet deploy weights from the prototxt's fillers (the tool does not
    care whether they are trained), seeded: the same net in every run and on
    both Caffes (see test_workers_give_the_same_chains_as_one_process)."""
    path = str(tmp_path_factory.mktemp("lenet") / "lenet_random.caffemodel")
    caffe.set_random_seed(0)
    caffe.Net(LENET, caffe.TEST).save(path)
    return path


def run_tool(args, env=None):
    return subprocess.run([sys.executable, TOOL] + args, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=300,
                          env=dict(os.environ, **(env or {})))


@pytest.mark.parametrize("args,message", [
    (["--blob", "nope"], "valid blobs: conv1, pool1, conv2, pool2, ip1, ip2"),
    (["--blob", "nope", "--unit", "all"], "unknown blob 'nope'"),
    (["--blob", "ip2", "--unit", "10"], "unit 10 out of range"),
    (["--blob", "ip2", "--unit", "-1"], "out of range"),
    (["--blob", "conv1", "--position", "24,3"], "position 24,3 out of range"),
    (["--blob", "ip2", "--position", "1,1"], "no spatial map"),
    (["--blob", "ip2", "--step-size", "0"], "--step-size must be a positive number, got 0"),
    (["--blob", "ip2", "--mass", "-1"], "--mass must be a positive number, got -1"),
    (["--blob", "ip2", "--sigma", "0"], "--sigma must be a positive number, got 0"),
    (["--blob", "ip2", "--num-chains", "0"], "--num-chains must be a positive integer, got 0"),
    (["--blob", "ip2", "--num-chains", "two"],
     "--num-chains must be a positive integer, got 'two'"),
    (["--blob", "ip2", "--weights", "/nonexistent/w.caffemodel"], "weights not found"),
    (["--blob", "ip2", "--model", "/nonexistent/deploy.prototxt"], "prototxt not found"),
    # sizes checked before anything big is allocated (Caffe aborts past INT_MAX)
    (["--blob", "ip2", "--num-chains", "100000000"], "chains overflow a Caffe blob"),
    (["--blob", "ip2", "--model", os.path.join(REPO_ROOT, "prototxt", "lenet_train_test_dg.prototxt")],
     "no Input layer"),
    (["--blob", "ip2", "--display-mean", "nan"], "--display-mean must be finite"),
])
def test_cli_bad_input_is_one_line(tmp_path, lenet_weights, args, message):
    base = ["--model", LENET, "--weights", lenet_weights, "--out", str(tmp_path / "never")]
    proc = run_tool(base + args)
    assert not os.path.exists(str(tmp_path / "never"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_says_where_the_alexnet_weights_go(tmp_path):
    proc = run_tool(["--blob", "fc8", "--unit", "9", "--model", LENET],
                    env={"GENCNN_DATA": str(tmp_path)})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    expected = os.path.join(str(tmp_path), "models", "bvlc_alexnet.caffemodel")
    assert len(lines) == 1 and expected in lines[0] and "download" in lines[0]


@pytest.mark.slow
def test_cli_small_run_writes_its_outputs(tmp_path, lenet_weights):
    out = tmp_path / "run"
    proc = run_tool(["--model", LENET, "--weights", lenet_weights, "--blob", "conv2",
                     "--unit", "3,7", "--position", "2,5", "--num-chains", "3",
                     "--iters", "3", "--adapt", "2", "--leapfrog-steps", "4",
                     "--mass-convention", "inverse", "--workers", "2", "--chain-block", "3",
                     "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(str(out))) == ["grid.png", "grid_mean.png", "samples.npz",
                                            "summary.json", "trajectory.png"]
    samples = np.load(str(out / "samples.npz"))
    assert samples["x"].shape == (6, 1, 28, 28)
    assert samples["trace"].shape == samples["accepted"].shape == (5, 6)
    assert list(samples["y"]) == [3, 3, 3, 7, 7, 7]
    summary = json.load(open(str(out / "summary.json")))
    assert summary["preset"] == "lenet" and summary["mass_convention"] == "inverse"
    assert summary["iters"] == 3 and summary["adapt"] == 2 and summary["evaluations"] == 21
    assert summary["workers"] == 2 and summary["chain_block"] == 3     # 2 blocks of 3
    # the summary's statistics are those of the chains in samples.npz (sampling
    # iterations only for the acceptance)
    assert summary["acceptance_rate"] == pytest.approx(samples["accepted"][2:].mean())
    assert summary["acceptance_rate_adapt"] == pytest.approx(samples["accepted"][:2].mean())
    assert summary["divergences"] == samples["divergent"].sum()
    assert summary["f_final_mean"] == pytest.approx(samples["trace"][-1].mean())
    assert summary["f_final_per_unit"] == pytest.approx(
        [samples["trace"][-1][:3].mean(), samples["trace"][-1][3:].mean()])
    # conv2 at (2, 5) sees input rows 4..17 and columns 10..23
    assert summary["receptive_field_box"] == [4, 18, 10, 24]
    import matplotlib.pyplot as plt
    grid = plt.imread(str(out / "grid.png"))
    # 2 rows (units) x 3 columns of 14 x 14 crops zoomed x5 to 70 px, 2 px gaps
    assert grid.shape[:2] == (2 * 72 + 2, 3 * 72 + 2)


@pytest.mark.slow
def test_cli_unit_all_takes_every_channel(tmp_path, lenet_weights):
    out = tmp_path / "all"
    proc = run_tool(["--model", LENET, "--weights", lenet_weights, "--blob", "ip2",
                     "--unit", "all", "--num-chains", "1", "--iters", "1",
                     "--leapfrog-steps", "2", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    summary = json.load(open(str(out / "summary.json")))
    assert summary["units"] == list(range(10)) and summary["num_chains"] == 10


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """Three smooth 40 x 36 'photos' (blurred noise) and a file that is not one."""
    import cv2
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.RandomState(30)
    for i in range(3):
        image = cv2.GaussianBlur(rng.uniform(0, 255, (40, 36, 3)), (0, 0), 3)
        cv2.imwrite(str(folder / ("p%d.png" % i)), image.astype(np.uint8))
    (folder / "notes.txt").write_text("not an image")
    return str(folder)


def test_load_images_resizes_crops_and_subtracts_the_mean(photo_folder):
    images = reference.load_images(photo_folder, (3, 28, 28), [100, 110, 120])
    assert images.shape == (3, 3, 28, 28)
    gray = reference.load_images(photo_folder, (1, 28, 28), [0], scale=1 / 256.0)
    assert gray.shape == (3, 1, 28, 28) and 0 <= gray.min() and gray.max() < 1
    # mean-subtracted per channel: the BGR channel means shift by exactly the mean given
    plain = reference.load_images(photo_folder, (3, 28, 28), [0, 0, 0])
    np.testing.assert_allclose(plain - images, np.broadcast_to(
        np.array([100.0, 110, 120]).reshape(1, 3, 1, 1), images.shape))


@pytest.mark.slow
def test_cli_fit_spectrum_samples_the_whole_input(tmp_path, lenet_weights, photo_folder):
    out = tmp_path / "spectrum"
    proc = run_tool(["--model", LENET, "--weights", lenet_weights, "--blob", "conv2",
                     "--unit", "3", "--num-chains", "2", "--iters", "2", "--leapfrog-steps", "3",
                     "--step-size", "0.2", "--mass", "1", "--mass-convention", "inverse",
                     "--reference", "fit-spectrum", "--reference-images", photo_folder,
                     "--image-scale", "0.00390625", "--display-mean", "0", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    summary = json.load(open(str(out / "summary.json")))
    assert summary["reference"] == "fit-spectrum" and summary["mass_matrix"] == "q"
    assert summary["reference_images"] == photo_folder
    # a spectral q does not factorize: the whole 28 x 28 input is sampled
    assert summary["input_crop_box"] is None and summary["sampled_input_shape"] == [1, 28, 28]
    assert summary["receptive_field_box"] == [8, 22, 8, 22]     # the display crop stays
    assert summary["acceptance_rate"] > 0
    samples = np.load(str(out / "samples.npz"))["x"]
    assert samples.shape == (2, 1, 28, 28)


@pytest.mark.parametrize("args,message", [
    (["--reference", "fit-spectrum"], "--reference fit-spectrum needs --reference-images DIR"),
    (["--reference", "fit-spectrum", "--reference-images", "/nonexistent/photos"],
     "--reference-images /nonexistent/photos is not a folder"),
    (["--reference", "fit-spectrum", "--reference-images", "{empty}"], "holds no readable image"),
    (["--mass-matrix", "diagonal"], "invalid choice"),
])
def test_cli_fit_spectrum_bad_input_is_one_line(tmp_path, lenet_weights, args, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [a.format(empty=str(empty)) for a in args]
    proc = run_tool(["--model", LENET, "--weights", lenet_weights, "--blob", "ip2",
                     "--out", str(tmp_path / "never")] + args)
    assert proc.returncode == 2 and not os.path.exists(str(tmp_path / "never"))
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_memory_need_is_checked_before_allocating(lenet_weights, monkeypatch):
    """~0.21 MB per LeNet chain: 10,000 chains do not fit in 1 GB, 1,000 do."""
    monkeypatch.setattr(config, "available_memory", lambda: 10 ** 9)
    with pytest.raises(ValueError, match=r"10000 chains need ~2\.\d GB .* more than the 1\.0 GB"):
        node_lib.open_node(LENET, lenet_weights, "ip2", [3], 10000)
    assert node_lib.open_node(LENET, lenet_weights, "ip2", [3], 1000).num_chains == 1000
