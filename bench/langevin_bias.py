#!/usr/bin/env python
"""The bias of the stochastic form of the transformation-averaged score, on a
Gaussian target whose moments are known (gencnn.sampling.transforms:
QuadraticScore, gaussian_moments): f(z) = w . z - |z|^2 / 4 on 2 x 6 x 6
inputs, S = shifts up to 2 px x flips (50 members), T = 0.5, q = N(0, 1.5^2).

Unadjusted Langevin (gencnn.sampling.langevin) with one random member of S
per gradient, at several steps, and with S enumerated (the exact gradient,
so what is left is the discretisation's bias), against HMC with S
enumerated and Metropolis (exact). Printed: the variance of the final
states over the target's (1 = unbiased) and the mean absolute error of the
pixel means in the target's standard deviations, 100 chains, each run
for 20 / eps^2 steps (~ 14 relaxation times).

    python bench/langevin_bias.py
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import _init_paths  # noqa: F401,E402
import numpy as np  # noqa: E402

from gencnn.sampling import hmc  # noqa: E402
from gencnn.sampling.langevin import LangevinSampler  # noqa: E402
from gencnn.sampling.reference import DiagonalGaussian  # noqa: E402
from gencnn.sampling.transforms import (QuadraticScore, TransformAveragedScore,  # noqa: E402
                                        TransformSet, gaussian_moments)

SHAPE, CHAINS, TEMPERATURE, SIGMA = (2, 6, 6), 100, 0.5, 1.5


def errors(x, mean, variance):
    return x.var(axis=0).mean() / variance, np.abs(x.mean(axis=0) - mean).mean() / np.sqrt(
        variance)


def main():
    w = np.random.default_rng(6).standard_normal(SHAPE)
    transforms = TransformSet(2, flips=True)
    mean, variance = gaussian_moments(QuadraticScore(w, 0.5), transforms, TEMPERATURE, SIGMA)
    options = dict(mass=1.0, mass_convention="inverse", temperature=TEMPERATURE,
                   reference=DiagonalGaussian(0.0, SIGMA), seed=7)
    print("target: variance %.4f per pixel; %d chains" % (variance, CHAINS))
    print("%-44s %6s %10s %14s" % ("sampler", "eps", "var ratio", "|mean err|/sd"))
    for eps in (0.1, 0.2, 0.4):
        for mode in ("random", "enumerate"):
            rngs = [hmc.chain_rng(7, i, 2) for i in range(CHAINS)] if mode == "random" else None
            score = TransformAveragedScore(QuadraticScore(w, 0.5), transforms, mode, rngs)
            sampler = LangevinSampler(score, step_size=eps, **options)
            out = sampler.sample(sampler.initial_state((CHAINS,) + SHAPE), int(20 / eps ** 2))
            ratio, err = errors(out["samples"], mean, variance)
            print("%-44s %6.2f %10.3f %14.3f" % ("Langevin, S " + ("one random member per "
                                                 "gradient" if mode == "random" else
                                                 "enumerated"), eps, ratio, err))
    sampler = hmc.HMCSampler(TransformAveragedScore(QuadraticScore(w, 0.5), transforms),
                             step_size=0.3, leapfrog_steps=6, **options)
    out = sampler.sample(sampler.initial_state((CHAINS,) + SHAPE), 60)
    ratio, err = errors(out["samples"], mean, variance)
    print("%-44s %6.2f %10.3f %14.3f   (acceptance %.2f)" % (
        "HMC + Metropolis, S enumerated (exact)", 0.3, ratio, err, out["accepted"].mean()))
    print("(exact draws: var ratio 1 +- %.3f, |mean err|/sd %.3f +- %.3f)"
          % (np.sqrt(2.0 / CHAINS / np.prod(SHAPE)), 0.8 / np.sqrt(CHAINS),
             0.6 / np.sqrt(CHAINS * np.prod(SHAPE))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
