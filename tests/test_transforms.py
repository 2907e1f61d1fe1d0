"""The transformation-averaged score and the samplers built on it
(gencnn/sampling/transforms.py, gencnn/sampling/langevin.py), on Gaussian
targets with known moments (transforms.QuadraticScore, gaussian_moments).
"""
import numpy as np
import pytest

from gencnn.sampling.langevin import (ActivationMaximization, LangevinSampler, fold,
                                      image_box)
from gencnn.sampling.transforms import (QuadraticScore, Transform, TransformAveragedScore,
                                        TransformSet, gaussian_moments, resample_matrix)
from gencnn.sampling import hmc
from gencnn.sampling.reference import DiagonalGaussian

SHAPE = (2, 6, 6)


@pytest.mark.parametrize("transform", [
    Transform((2, -3)), Transform((0, 0), flip=True), Transform((0, 0), scale=1.25),
    Transform((1, 4), flip=True, scale=0.8)])
def test_adjoint_is_the_transpose(transform):
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((2, 3,) + SHAPE)
    assert np.dot(transform.apply(x).ravel(), g.ravel()) == pytest.approx(
        np.dot(x.ravel(), transform.adjoint(g).ravel()), rel=1e-12)


def test_resample_matrix_is_identity_at_scale_one_and_keeps_constants():
    assert np.array_equal(resample_matrix(7, 1.0), np.eye(7))
    for scale in (0.8, 1.25):
        assert np.allclose(resample_matrix(9, scale).sum(axis=1), 1.0)


def test_set_enumerates_the_grid_and_draws_inside_it():
    s = TransformSet.parse("shift:4,grid:2,flip")
    members = s.enumerate()
    assert len(members) == 2 * 5 * 5
    assert len(TransformSet(3).enumerate()) == 7 * 7
    assert sorted(set(t.shift[0] for t in members)) == [-4, -2, 0, 2, 4]
    rng = np.random.default_rng(1)
    draws = [s.draw(rng) for _ in range(2000)]
    assert sorted(set(v for t in draws for v in t.shift)) == [-4, -2, 0, 2, 4]
    assert 0.45 < np.mean([t.flip for t in draws]) < 0.55
    assert TransformSet.parse("none").is_identity
    assert TransformSet.parse("shift:16").describe() == "shift:16"
    for bad in ("shift:x", "rotate:3", "scale:0/1"):
        with pytest.raises(ValueError):
            TransformSet.parse(bad)


def test_enumerated_score_is_the_mean_over_the_set():
    rng = np.random.default_rng(2)
    w = rng.standard_normal(SHAPE)
    base = QuadraticScore(w, 0.5)
    transforms = TransformSet(2, flips=True)
    score = TransformAveragedScore(base, transforms)
    x = rng.standard_normal((3,) + SHAPE)
    f, grad = score(x)
    assert base.rows == [3 * len(transforms.enumerate())]      # one batch
    members = transforms.enumerate()
    f_ref = np.mean([base(t.apply(x))[0] for t in members], axis=0)
    assert np.allclose(f, f_ref)
    eps = 1e-6                                              # finite differences
    for i in range(5):
        d = np.zeros_like(x)
        d.flat[rng.integers(d.size)] = eps
        numeric = (score(x + d)[0] - score(x - d)[0]) / (2 * eps)
        assert np.allclose(numeric, (grad * d).reshape(3, -1).sum(axis=1) / eps, atol=1e-6)


def test_random_score_is_unbiased_and_follows_each_chains_stream():
    rng = np.random.default_rng(3)
    w = rng.standard_normal(SHAPE)
    transforms = TransformSet(2, flips=True)
    x = rng.standard_normal((2,) + SHAPE)
    exact = TransformAveragedScore(QuadraticScore(w, 0.5), transforms)(x)[1]

    def run(chains):
        rngs = [hmc.chain_rng(0, i, 2) for i in chains]
        score = TransformAveragedScore(QuadraticScore(w, 0.5), transforms, "random", rngs)
        return np.mean([score(x[:len(chains)])[1] for _ in range(4000)], axis=0)
    estimate = run([0, 1])
    assert np.abs(estimate - exact).max() < 0.06          # 4000 draws: sd ~0.015
    one = TransformAveragedScore(QuadraticScore(w, 0.5), transforms, "random",
                                 [hmc.chain_rng(0, 0, 2)])
    two = TransformAveragedScore(QuadraticScore(w, 0.5), transforms, "random",
                                 [hmc.chain_rng(0, 0, 2), hmc.chain_rng(0, 1, 2)])
    assert np.array_equal(one(x[:1])[1][0], two(x)[1][0])   # chain 0 alone or beside 1


def test_hmc_on_an_enumerated_score_is_exact():
    """Metropolis keeps HMC exact on f-bar: the final states of 100
    independent chains match the Gaussian target's moments. The mean
    absolute error of the 72 pixel means is 0.8 se for exact draws (sd
    0.07 se): bound 1.2 se; the mean of the 72 variance ratios has sd ~0.02:
    bound 8 %. (The single-alignment target, w instead of w-bar, is
    several se away in every pixel.)"""
    rng = np.random.default_rng(4)
    w = rng.standard_normal(SHAPE)
    transforms = TransformSet(2, flips=True)
    mean, variance = gaussian_moments(QuadraticScore(w, 0.5), transforms, 0.5, 1.5)
    chains = 100
    sampler = hmc.HMCSampler(TransformAveragedScore(QuadraticScore(w, 0.5), transforms),
                             step_size=0.3, leapfrog_steps=6, mass=1.0,
                             mass_convention="inverse", temperature=0.5,
                             reference=DiagonalGaussian(0.0, 1.5), seed=5)
    out = sampler.sample(sampler.initial_state((chains,) + SHAPE), 60)
    x = out["samples"]
    assert out["accepted"].mean() > 0.5
    se_mean = np.sqrt(variance / chains)
    assert np.abs(x.mean(axis=0) - mean).mean() < 1.2 * se_mean
    assert x.var(axis=0).mean() == pytest.approx(variance, rel=0.08)


def test_langevin_bias_on_the_gaussian_target():
    """Unadjusted Langevin with one random transform per gradient: its
    variance error is the step's O(eps^2) plus the gradient noise's, small
    at a small step and growing with it (the bias measured, not assumed)."""
    rng = np.random.default_rng(6)
    w = rng.standard_normal(SHAPE)
    transforms = TransformSet(2, flips=True)
    mean, variance = gaussian_moments(QuadraticScore(w, 0.5), transforms, 0.5, 1.5)
    chains = 200
    errors = {}
    for eps in (0.1, 0.5):
        rngs = [hmc.chain_rng(7, i, 2) for i in range(chains)]
        sampler = LangevinSampler(
            TransformAveragedScore(QuadraticScore(w, 0.5), transforms, "random", rngs),
            step_size=eps, mass=1.0, mass_convention="inverse", temperature=0.5,
            reference=DiagonalGaussian(0.0, 1.5), seed=7)
        out = sampler.sample(sampler.initial_state((chains,) + SHAPE), int(30 / eps ** 2))
        x = out["samples"]
        errors[eps] = (x.var(axis=0).mean() / variance - 1, np.abs(x.mean(axis=0) - mean).mean())
        assert out["accepted"].all()
    assert abs(errors[0.1][0]) < 0.08
    assert errors[0.5][0] > errors[0.1][0]          # the larger step is further off


def test_fold_and_image_box_keep_pixels_valid():
    lo, hi = image_box([104, 117, 123])
    assert lo.shape == (3, 1, 1) and hi[0, 0, 0] == 255 - 104
    x = np.array([-1.0, 0.5, 2.3, 7.9]).reshape(1, 1, 1, 4)
    assert np.allclose(fold(x, 0.0, 2.0), [[[[1.0, 0.5, 1.7, 0.1]]]])
    rng = np.random.default_rng(8)
    score = QuadraticScore(np.zeros((3, 5, 5)), 0.0)
    sampler = LangevinSampler(score, step_size=30.0, mass=1.0, mass_convention="inverse",
                              reference=DiagonalGaussian(0.0, 64.0), box=(lo, hi), seed=1)
    out = sampler.sample(sampler.initial_state((4, 3, 5, 5)), 20)
    assert np.all(out["samples"] >= lo) and np.all(out["samples"] <= hi)
    am = ActivationMaximization(QuadraticScore(rng.standard_normal((3, 5, 5)), 0.0),
                                step_size=50.0, reference=DiagonalGaussian(0.0, 10.0),
                                box=(lo, hi), blur_every=2, seed=1)
    out = am.sample(am.initial_state((2, 3, 5, 5)), 10)
    assert np.all(out["samples"] >= lo) and np.all(out["samples"] <= hi)
    assert np.all(np.diff(out["f"], axis=0) >= -1e-9) or out["f"][-1].min() > out["f"][0].max()


@pytest.mark.parametrize("adapt", ["0", "1"])
def test_workers_die_with_their_coordinator(tmp_path, adapt):
    """kill -9 of hmc_visualize while its workers sample: every process it
    started dies too, instead of running on to the end of its iteration
    (20,000 leapfrog steps: minutes). With a fixed step (adapt 0) they are a
    Dask LocalCluster's nannies and workers (each exits when its parent's
    pipe closes); with --adapt the pool's workers, which get SIGTERM from
    the kernel (files.die_with_parent)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import caffe
    from gencnn import config
    model = os.path.join(config.REPO_ROOT, "prototxt", "lenet_deploy.prototxt")
    weights = str(tmp_path / "lenet.caffemodel")
    caffe.Net(model, caffe.TEST).save(weights)
    env = dict(os.environ, GLOG_minloglevel="2", OPENBLAS_NUM_THREADS="1")
    tool = subprocess.Popen([sys.executable, os.path.join(config.REPO_ROOT, "tools",
                                                          "hmc_visualize.py"),
                             "--model", model, "--weights", weights, "--blob", "ip2",
                             "--unit", "0-9", "--num-chains", "4", "--iters", "1", "--leapfrog-steps", "20000",
                             "--adapt", adapt, "--workers", "2", "--out", str(tmp_path / "run")],
                            env=env, stderr=subprocess.PIPE)

    def descendants(pid):
        children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)],
                                  capture_output=True, text=True).stdout.split()
        return [p for c in children for p in [int(c)] + descendants(int(c))]

    def sampling(pid):          # a process busy on a CPU (a worker in its iteration)
        fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12]) > 100          # > 1 s of CPU

    workers = []
    for _ in range(240):                       # until two processes sample
        time.sleep(0.5)
        started = descendants(tool.pid)
        if sum(1 for p in started if os.path.exists("/proc/%d" % p) and sampling(p)) >= 2:
            workers = started
            break
    assert workers, "the workers never started"
    tool.send_signal(signal.SIGKILL)
    tool.wait()
    deadline = time.time() + 15
    alive = workers
    while alive and time.time() < deadline:
        time.sleep(0.2)
        alive = [p for p in workers if os.path.exists("/proc/%d" % p) and
                 open("/proc/%d/stat" % p).read().split()[2] != "Z"]
    assert not alive, "workers %s outlived their coordinator" % alive
