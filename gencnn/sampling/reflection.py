"""Reflecting position steps of HMC in a box, for a full mass matrix.

HMCSampler(bounds=(lo, hi), precondition=True) moves each chain along
x(t) = x + t v, v = inv_mass Sigma phi, for one step time; where a pixel i
reaches a wall, phi is reflected in the mass matrix's metric:

    phi_i -= 2 v_i / (inv_mass Sigma_ii),   so   v -= 2 v_i Sigma_i / Sigma_ii

(v_i turns, K = inv_mass phi^T Sigma phi / 2 is unchanged, the map is its own
inverse with the momentum turned: volume-preserving and reversible, so the
Metropolis test stays exact). Every reflection changes every pixel's
velocity, so the walls are met one event at a time: on MNIST a chain meets
dozens of walls per leapfrog step (the background pixels sit at 0), which a
numpy loop over events runs at several times the cost of the net's forward
and backward (docs/measurements.md). This module runs the event loop per
chain, compiled by numba.
"""
import numpy as np
from numba import njit


@njit(cache=True)
def _reflect_chains(x, phi, velocity, sigma, lo, hi, inv_mass, step, max_events, events):
    n, d = x.shape
    for c in range(n):
        finite = True
        for i in range(d):
            if not (np.isfinite(x[c, i]) and np.isfinite(velocity[c, i])):
                finite = False
                break
        if not finite:
            continue
        time_left = step
        count = 0
        while True:
            first, wall = time_left, -1
            for i in range(d):
                v = velocity[c, i]
                if v > 0:
                    t = (hi - x[c, i]) / v
                elif v < 0:
                    t = (lo - x[c, i]) / v
                else:
                    continue
                if t < first:
                    first, wall = t, i
            if first < 0:
                first = 0.0                     # a pixel at its wall moving out
            for i in range(d):
                x[c, i] += first * velocity[c, i]
            time_left -= first
            if wall < 0:
                break
            count += 1
            if count > max_events:              # rejected (see HMCSampler)
                for i in range(d):
                    x[c, i] = np.nan
                break
            v = velocity[c, wall]
            x[c, wall] = hi if v > 0 else lo
            phi[c, wall] -= 2 * v / (inv_mass * sigma[wall, wall])
            scale = 2 * v / sigma[wall, wall]
            for j in range(d):
                velocity[c, j] -= scale * sigma[wall, j]
        events[c] = count
        for i in range(d):                      # rounding at the walls
            if x[c, i] < lo:
                x[c, i] = lo
            elif x[c, i] > hi:
                x[c, i] = hi


def reflect(x, phi, velocity, sigma, bounds, inv_mass, step, max_events):
    """Move x (N x D) for `step` time at `velocity` (N x D), reflecting off
    the walls of `bounds`; sigma is the dense D x D covariance. Returns
    (x, phi, events per chain); a chain past `max_events` walls comes back
    as NaN."""
    x = np.array(x, dtype=np.float64, order="C")
    phi = np.array(phi, dtype=np.float64, order="C")
    velocity = np.array(velocity, dtype=np.float64, order="C")
    events = np.zeros(len(x), dtype=np.int64)
    _reflect_chains(x, phi, velocity, np.ascontiguousarray(sigma, dtype=np.float64),
                    float(bounds[0]), float(bounds[1]), float(inv_mass), float(step),
                    int(max_events), events)
    return x, phi, events
