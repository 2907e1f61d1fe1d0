"""Hamiltonian Monte Carlo for the generative visualization of a CNN node.

Section 3.4 of Dai, Lu & Wu (ICLR 2015): a node y of a trained net with score
f_y(x) defines

    p_y(x) = exp(f_y(x)) q(x) / Z_y,    q(x) = N(mu, sigma^2 I)          (eq. 1)

so p_y(x) is proportional to exp(-U(x)) with the potential energy

    U(x) = -f_y(x) + |x - mu|^2 / (2 sigma^2).

The paper takes mu = 0 and sigma = 1; section 3.4 also suggests a q fitted to
the training images (their mean and marginal variance), which
reference.fit_q computes. x is sampled by HMC (Neal, 2011): draw a momentum
phi, run L leapfrog steps (eq. 11-13), accept or reject the end point by
Metropolis.

The mass convention, made explicit because the paper's numbers depend on it.
With mass_convention="paper" (the default), `mass` is the paper's m:

    K(phi) = |phi|^2 / (2 m),   phi ~ N(0, m I),   x += eps * phi / m   (eq. 12)

With mass_convention="inverse", `mass` is the inverse mass (a velocity
variance): K(phi) = m |phi|^2 / 2, phi ~ N(0, I / m), x += eps * m * phi.
Either way the sampler only sees inv_mass = 1/m (paper) or m (inverse), and a
run with mass m and step eps moves x exactly like a unit-mass run with step
eps * sqrt(inv_mass). The paper's LeNet setting (eps 0.1, m 0.01) is thus an
effective unit-mass step of 1.0 read literally, or 0.01 read as inverse.

A correlated q (gencnn.sampling.reference.SpectralGaussian, covariance
Sigma) replaces |x - mu|^2 / (2 sigma^2) by (x - mu)^T Sigma^-1 (x - mu) / 2,
and precondition=True gives HMC the matching mass matrix m Sigma^-1:

    K(phi) = phi^T Sigma phi / (2 m),  phi ~ N(0, m Sigma^-1),  x += eps Sigma phi / m

which is unit-mass HMC in q's whitened coordinates z = Sigma^-1/2 (x - mu),
where q is N(0, I): one step size suits frequencies whose variances differ
by orders of magnitude. The Metropolis test uses this K, so it stays exact.

Valid images: with bounds=(lo, hi) the model is p_y(x) restricted to the
box lo <= x <= hi (q truncated to the pixel range), and the trajectories
reflect off its walls (Neal, 2011, section 5.5.1): where a pixel reaches a
wall, the momentum is reflected in the mass matrix's metric, which keeps K
and the phase-space volume, so the Metropolis test stays exact and no
sample leaves the box. For a diagonal mass matrix each pixel's path folds
independently (closed form); for m Sigma^-1 the reflections are followed one
event at a time, and a trajectory needing more than MAX_REFLECTIONS within
one leapfrog step is rejected (a rule symmetric under time reversal, so the
chain stays exact).

All chains share one Caffe net: its input blob holds N chains, and each
leapfrog step costs one forward (up to the node's layer) and one backward
(from that layer down to the input) for all chains together. Each chain
draws from its own random stream (chain_rng), so chains can also be split
over worker processes (gencnn.sampling.parallel, one net each) or
machines without changing them; `run_chains` is the loop either way.
"""
import math
import os
import warnings

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")   # quiet net construction
from gencnn.sampling.reference import DiagonalGaussian  # noqa: E402

# |Delta H| above this (or a non-finite H) marks a divergent trajectory.
DIVERGENCE_THRESHOLD = 1000.0
# A chain this many reference standard deviations from q's mean in some
# pixel has diverged (q's density there is exp(-5e7)); it is not evaluated.
FAR_FROM_Q = 1e4

# The default leapfrog step size: the paper's LeNet setting (section 4.2).
STEP_SIZE = 0.1

# Reflections followed within one leapfrog step of one chain (bounds with a
# full mass matrix); a trajectory needing more is rejected.
MAX_REFLECTIONS = 200


def visible_blobs(net):
    """Blob names a user may ask for: not the inputs, nor the Split copies
    Caffe inserts."""
    return [name for name in net.blobs if "_split_" not in name and name not in net.inputs]


# ---------------------------------------------------------------------------
# The score f_y(x) of one node, and its gradient from pycaffe
# ---------------------------------------------------------------------------

class NodeScore(object):
    """f_y(x) and df_y/dx for a node (blob, unit[, position]) of a net.

    For a blob N x C (or N x C x 1 x 1) the node is channel `unit`; for a
    convolutional blob N x C x H x W it is channel `unit` at `position`
    (y, x), by default the centre of the map. `units` may be one unit or one
    per chain, so different nodes can share the net in one batch.

    The forward pass stops at the layer that produces the blob and the
    backward pass starts there: layers above it (a Softmax, a loss) never
    run, so they can neither cost time nor overwrite the diff we set.
    """

    def __init__(self, net, blob, units, position=None, input_blob=None):
        self.net = net
        self.input_blob = input_blob or net.inputs[0]
        if blob not in net.blobs or "_split_" in blob:
            raise ValueError("unknown blob '%s'; valid blobs: %s"
                             % (blob, ", ".join(visible_blobs(net))))
        if blob == self.input_blob:
            raise ValueError("blob '%s' is the net's input, not a node" % blob)
        self.blob = blob
        self.layer = self._producer(blob)
        shape = net.blobs[blob].data.shape
        self.num_chains = net.blobs[self.input_blob].data.shape[0]
        channels = shape[1] if len(shape) > 1 else 1
        self.units = np.broadcast_to(np.asarray(units, dtype=int), (self.num_chains,)).copy()
        bad = [int(u) for u in self.units if not 0 <= u < channels]
        if bad:
            raise ValueError("unit %d out of range: blob '%s' has %d channels (0..%d)"
                             % (bad[0], blob, channels, channels - 1))
        spatial = tuple(shape[2:])
        self.is_conv = int(np.prod(spatial)) > 1
        if not self.is_conv:
            if position is not None and any(p != 0 for p in position):
                raise ValueError("blob '%s' has no spatial map (shape %s); drop --position"
                                 % (blob, "x".join(map(str, shape[1:]))))
            self.position = (0,) * len(spatial)
        else:
            if position is None:
                position = tuple(s // 2 for s in spatial)
            position = tuple(int(p) for p in position)
            if len(position) != len(spatial) or any(
                    not 0 <= p < s for p, s in zip(position, spatial)):
                raise ValueError("position %s out of range: blob '%s' is %s (positions 0..%s)"
                                 % (",".join(map(str, position)), blob,
                                    "x".join(map(str, spatial)),
                                    ",".join(str(s - 1) for s in spatial)))
            self.position = position
        self._index = (np.arange(self.num_chains), self.units) + tuple(
            np.full(self.num_chains, p) for p in self.position)

    def _producer(self, blob):
        """Name of the last layer writing `blob` (an in-place ReLU after a
        convolution: the node is the rectified value)."""
        producer = None
        for name in self.net._layer_names:
            if blob in self.net.top_names[name]:
                producer = name
        return producer

    def __call__(self, x):
        """(f_y(x) per chain, df_y/dx) for x of shape N x input shape; NaN for
        the chains whose x is not finite."""
        net = self.net
        finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if not finite.all():
            # Never hand Caffe a NaN: its max pooling keeps the argmax mask at
            # -1 for an all-NaN window, and the backward pass then writes
            # before the start of the diff (heap corruption, an abort later).
            x = np.where(finite.reshape((-1,) + (1,) * (x.ndim - 1)), x, 0)
        net.blobs[self.input_blob].data[...] = x
        net.forward(end=self.layer)
        top = net.blobs[self.blob]
        f = top.data[self._index].astype(np.float64)
        # One-hot top diff: chain n asks for d top[n, unit_n, pos] / d x_n.
        top.diff[...] = 0
        top.diff[self._index] = 1
        net.backward(start=self.layer)
        grad = net.blobs[self.input_blob].diff.astype(np.float64)
        f[~finite] = np.nan
        grad[~finite] = np.nan
        return f, grad


def _bound(value):
    """A box bound: a Python float when it is one number (float32 chains then
    stay float32), else a float64 array."""
    value = np.asarray(value, dtype=np.float64)
    return float(value) if value.ndim == 0 else value


def logit_to_pixels(u, bounds):
    """x = lo + (hi - lo) sigmoid(u): the logit pixel model's image of u."""
    lo, hi = bounds
    with np.errstate(over="ignore"):
        return lo + (hi - lo) / (1 + np.exp(-u))


class LogitScore(object):
    """A score of u = logit((x - lo) / (hi - lo)): f(x(u)) and df/du, for the
    logit pixel model. With q a Gaussian on u (fitted to dequantized images,
    reference.dequantized_logits), p_y(x) = exp(f_y(x)) q(x) / Z_y is a
    density of images inside the box lo < x < hi; in u the Jacobian of q's
    change of variables cancels, so HMC samples p(u) = exp(f_y(x(u))) N(u)
    exactly and every sample x(u) is a valid image (no clipping)."""

    def __init__(self, score, bounds=(0.0, 1.0)):
        # bounds: numbers, or arrays of one image's shape (a box per pixel,
        # e.g. 0 .. 256 minus a mean image)
        self.score, (self.lo, self.hi) = score, (_bound(bounds[0]), _bound(bounds[1]))

    def to_pixels(self, u):
        return logit_to_pixels(u, (self.lo, self.hi))

    def __call__(self, u):
        x = self.to_pixels(u)
        f, grad = self.score(x)
        return f, grad * (x - self.lo) * (self.hi - x) / (self.hi - self.lo)


# ---------------------------------------------------------------------------
# HMC
# ---------------------------------------------------------------------------

def chain_rng(seed, chain_id, *substream):
    """The random stream of chain `chain_id` of a run with `seed`: a PCG64
    Generator on SeedSequence(seed, spawn_key=(chain_id,)), which is
    SeedSequence(seed).spawn(n)[chain_id] for any n > chain_id (`substream`,
    e.g. 1, names another stream of the same chain, its spawn()[1]). The chain
    draws its initial state, its momenta and its Metropolis uniforms from it
    alone, so its trajectory does not depend on how many chains run, nor on
    how they are split across processes (gencnn.sampling.parallel).
    (Before chains had streams of their own, all shared one
    RandomState(seed): results committed before then came from that stream.)"""
    sequence = np.random.SeedSequence(int(seed), spawn_key=(int(chain_id),) + substream)
    return np.random.Generator(np.random.PCG64(sequence))


class DualAveraging(object):
    """Step-size adaptation by dual averaging (Hoffman & Gelman, 2014,
    Algorithm 5): pushes the mean acceptance probability toward `target`.

    The statistic fed each iteration is the acceptance probability averaged
    over all chains, far less noisy than one chain's, so gamma defaults to
    0.2 rather than Stan's 0.05, with which the step kept oscillating around
    the answer and the frozen step accepted far more than the target
    (docs/measurements.md).

    The step frozen for sampling, `final_step`, is the geometric mean of the
    iterates of the second half of the adaptation, not the paper's
    t^-kappa-weighted average of all of them: with the short warm-ups used
    here (50-150 iterations) that average still leans on the first iterates,
    which can be orders of magnitude off.
    """

    def __init__(self, step_size, target=0.7, gamma=0.2, t0=10.0):
        self.mu = math.log(10.0 * step_size)     # bias the steps toward larger ones
        self.target, self.gamma, self.t0 = target, gamma, t0
        self.t = 0
        self.error_sum = 0.0          # H-bar_t: averaged (target - acceptance)
        self.log_steps = []

    def update(self, accept_prob):
        """Feed one iteration's mean acceptance probability; returns the next step."""
        self.t += 1
        eta = 1.0 / (self.t + self.t0)
        self.error_sum = (1 - eta) * self.error_sum + eta * (self.target - accept_prob)
        log_step = self.mu - math.sqrt(self.t) / self.gamma * self.error_sum
        self.log_steps.append(log_step)
        return math.exp(log_step)

    @property
    def final_step(self):
        second_half = self.log_steps[len(self.log_steps) // 2:]
        return math.exp(sum(second_half) / len(second_half))


class HMCSampler(object):
    """HMC on U(x) = -f_y(x) / T - log q(x), one chain per row of x.

    score:   callable x -> (f_y(x) per chain, df_y/dx), e.g. a NodeScore.
    mass:    the particle mass in `mass_convention` ("paper": K = |phi|^2/2m;
             "inverse": mass is 1/m); see the module docstring.
    sigma, ref_mean: the reference q = N(ref_mean, sigma^2), scalars or
             arrays broadcastable to one chain's input shape; ignored when
             `reference` is given.
    reference: a q of gencnn.sampling.reference (DiagonalGaussian,
             SpectralGaussian); default DiagonalGaussian(ref_mean, sigma).
    precondition: False (default): the mass matrix is m I. True: it is
             m Sigma^-1, Sigma the covariance of q: phi ~ N(0, m Sigma^-1),
             K = phi^T Sigma phi / 2m, x += eps Sigma phi / m. That is HMC
             with unit mass in q's whitened coordinates z = Sigma^-1/2 (x - mu)
             (for a SpectralGaussian: the whitened Fourier basis), where q
             is N(0, I) and one step size suits every frequency. Still exact:
             the Metropolis test uses this K.
    temperature: T, 1 in the paper; T < 1 sharpens p_y toward the modes of
             f_y - |x - mu|^2 / (2 sigma^2 T) (an extension, off by default).
    bounds:  None, or (lo, hi): p_y restricted to the box lo <= x <= hi
             (valid pixel values), trajectories reflecting off its walls;
             chains start from q's draws clipped into the box.
    seed, chain_ids: row n is chain chain_ids[n] (default n), and draws its
             initial state, momenta and Metropolis uniforms from its own
             stream chain_rng(seed, chain_ids[n]): a chain's trajectory is
             the same in any batch of chains, in one process or several.
    rng:     instead, one stream (a numpy RandomState or Generator) shared by
             all rows, for callers whose rows are not fixed chains
             (gencnn/generative_learning.py draws them from a buffer).
    """

    def __init__(self, score, step_size=STEP_SIZE, leapfrog_steps=50, mass=0.01,
                 mass_convention="paper", sigma=1.0, ref_mean=0.0, seed=0,
                 temperature=1.0, warn=warnings.warn, reference=None, precondition=False,
                 bounds=None, chain_ids=None, rng=None):
        if mass_convention not in ("paper", "inverse"):
            raise ValueError("mass_convention must be 'paper' or 'inverse'")
        for name, value in (("step size", step_size), ("mass", mass)):
            if not value > 0:
                raise ValueError("%s must be positive, got %s" % (name, value))
        if not temperature > 0:
            raise ValueError("temperature must be positive, got %s" % temperature)
        if int(leapfrog_steps) < 1:
            raise ValueError("leapfrog steps must be >= 1, got %s" % leapfrog_steps)
        self.reference = reference if reference is not None else DiagonalGaussian(ref_mean, sigma)
        self.precondition = bool(precondition)
        self.bounds = None
        if bounds is not None:
            lo, hi = (float(b) for b in bounds)
            if not lo < hi:
                raise ValueError("bounds must be lo < hi, got %s" % (bounds,))
            if self.precondition and not isinstance(self.reference, DiagonalGaussian) \
                    and not hasattr(self.reference, "dense_covariance"):
                raise ValueError("bounds with a %s mass matrix are not supported: use a "
                                 "fitted Gaussian q or the identity mass matrix"
                                 % type(self.reference).__name__)
            self.bounds = (lo, hi)
        self.reflections = 0           # wall reflections followed (bounds)
        self.rejected_reflecting = 0   # chain-steps past MAX_REFLECTIONS
        # the same two per row (a ChainBlock reports its real rows' only)
        self.row_counters = {"reflections": 0, "rejected_reflecting": 0}
        self.score = score
        self.step_size = float(step_size)
        self.leapfrog_steps = int(leapfrog_steps)
        self.mass, self.mass_convention = float(mass), mass_convention
        self.inv_mass = 1.0 / mass if mass_convention == "paper" else float(mass)
        self.ref_mean = self.reference.mean
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.chain_ids = None if chain_ids is None else np.asarray(chain_ids, dtype=int)
        self.rng = rng
        self._chain_rngs = None
        self.warn = warn
        self.evaluations = 0           # forward+backward passes (all chains)

    # -- energies ----------------------------------------------------------
    def _sum(self, a):
        """Sum over every axis but the chain axis."""
        return a.reshape(a.shape[0], -1).sum(axis=1)

    def potential_energy(self, x, f):
        """U(x) = -f_y(x) / T - log q(x) (|x - mu|^2 / (2 sigma^2) for white q), per chain."""
        return -f / self.temperature + self.reference.energy(x)

    def grad_potential(self, x, dfdx):
        """dU/dx = -(df_y/dx) / T + Sigma^-1 (x - mu)."""
        return -dfdx / self.temperature + self.reference.grad(x)

    def kinetic_energy(self, phi):
        """K(phi) = inv_mass |phi|^2 / 2, or inv_mass phi^T Sigma phi / 2
        preconditioned; per chain."""
        if self.precondition:
            return 0.5 * self.inv_mass * self._sum(phi * self.reference.cov_power(phi, 1.0))
        return 0.5 * self.inv_mass * self._sum(phi ** 2)

    def drift(self, phi, step_size):
        """The position step of eq. 12: eps dK/dphi = eps inv_mass phi, or
        eps inv_mass Sigma phi preconditioned."""
        if self.precondition:
            phi = self.reference.cov_power(phi, 1.0)
        return step_size * self.inv_mass * phi

    def move(self, x, phi, step_size):
        """The position step of eq. 12 for every chain: x += eps dK/dphi,
        reflecting off the walls of `bounds` (which also turns phi).
        Returns (x, phi); a chain past MAX_REFLECTIONS comes back as NaN
        (evaluate() gives it NaN, and the Metropolis test rejects it)."""
        if self.bounds is None:
            return x + self.drift(phi, step_size), phi
        if not self.precondition or isinstance(self.reference, DiagonalGaussian):
            return self._fold(x, phi, step_size)
        return self._reflect(x, phi, step_size)

    def _fold(self, x, phi, step_size):
        """Reflection with a diagonal mass matrix: each pixel moves on its own
        and its straight path folds between the walls; phi turns once per
        reflection (closed form for any number of them)."""
        lo, hi = self.bounds
        width = hi - lo
        free = x + self.drift(phi, step_size) - lo      # the path without walls
        folded = np.mod(free, 2 * width)
        turned = folded > width                         # an odd number of reflections
        with np.errstate(invalid="ignore"):
            per_row = np.nansum(np.abs(np.floor(free / width)).reshape(len(x), -1), axis=1)
        self._count("reflections", per_row.astype(np.int64))
        return (lo + np.where(turned, 2 * width - folded, folded),
                np.where(turned, -phi, phi))

    def _reflect(self, x, phi, step_size):
        """Reflection with the mass matrix m Sigma^-1 (velocity inv_mass
        Sigma phi): the walls one event at a time, per chain
        (gencnn.sampling.reflection)."""
        from gencnn.sampling import reflection
        shape, n = x.shape, len(x)
        velocity = self.inv_mass * self.reference.cov_power(phi, 1.0)
        x, phi, events = reflection.reflect(
            x.reshape(n, -1), phi.reshape(n, -1), velocity.reshape(n, -1),
            self.reference.dense_covariance(), self.bounds, self.inv_mass, step_size,
            MAX_REFLECTIONS)
        rejected = events > MAX_REFLECTIONS
        self._count("reflections", np.where(rejected, 0, events).astype(np.int64))
        self._count("rejected_reflecting", rejected.astype(np.int64))
        return x.reshape(shape), phi.reshape(shape)

    def _count(self, name, per_row):
        """Add per-row counts to counter `name` and to its per-row tally."""
        setattr(self, name, getattr(self, name) + int(per_row.sum()))
        self.row_counters[name] = self.row_counters[name] + per_row

    # -- random streams ----------------------------------------------------
    def chain_rngs(self, num_chains):
        """The chains' own random streams, one per row (see `chain_rng`);
        chain_ids defaults to 0..num_chains-1."""
        if self._chain_rngs is None:
            ids = self.chain_ids if self.chain_ids is not None else np.arange(num_chains)
            self._chain_rngs = [chain_rng(self.seed, i) for i in ids]
        if len(self._chain_rngs) != num_chains:
            raise ValueError("this sampler's chains are %d, got %d rows"
                             % (len(self._chain_rngs), num_chains))
        return self._chain_rngs

    def _per_chain(self, num_chains, draw):
        """draw(rng) from each chain's own stream, stacked along the chain axis."""
        return np.stack([draw(rng) for rng in self.chain_rngs(num_chains)])

    def standard_normal(self, shape):
        """N(0, 1) noise of `shape` (chains first): from each chain's stream, or
        from the shared `rng` when one was given."""
        if self.rng is not None:
            return self.rng.standard_normal(shape)
        return self._per_chain(shape[0], lambda rng: rng.standard_normal(shape[1:]))

    def uniform(self, num_chains):
        """One U(0, 1) per chain: the Metropolis test's."""
        if self.rng is not None:
            return self.rng.uniform(size=num_chains)
        return self._per_chain(num_chains, lambda rng: rng.uniform())

    def sample_momentum(self, shape):
        """phi ~ N(0, m I) = N(0, I / inv_mass), or N(0, m Sigma^-1) preconditioned."""
        noise = self.standard_normal(shape)
        if self.precondition:
            noise = self.reference.cov_power(noise, -0.5)
        return noise / math.sqrt(self.inv_mass)

    def evaluate(self, x):
        """(f_y(x), dU/dx) from one forward + backward for all chains.

        A chain more than FAR_FROM_Q reference standard deviations out (or
        not finite) has diverged: it gets NaN, and is rejected at the end of
        its trajectory, instead of being fed to the net, where float32 would
        overflow into inf and NaN.
        """
        self.evaluations += 1
        with np.errstate(all="ignore"):
            distance = self.reference.whitened_distance(x)
        far = ~(distance <= FAR_FROM_Q)
        if far.any():
            x = np.where(far.reshape((-1,) + (1,) * (x.ndim - 1)), np.nan, x)
        f, dfdx = self.score(x)
        return f, self.grad_potential(x, dfdx)

    def initial_state(self, shape):
        """x ~ q, as the paper initializes its chains (each from its own stream)."""
        if self.rng is not None:
            return self.reference.sample(self.rng, shape)
        one = (1,) + tuple(shape[1:])
        return self._per_chain(shape[0], lambda rng: self.reference.sample(rng, one)[0])

    # -- dynamics ----------------------------------------------------------
    def leapfrog(self, x, phi, grad, step_size, steps):
        """`steps` leapfrog steps (eq. 11-13) from (x, phi) with dU/dx(x) = grad.

        The two half kicks between consecutive steps are merged into one
        full kick, so each step costs a single gradient evaluation.
        Returns (x, phi, f_y(x), grad) at the end point.
        """
        phi = phi - 0.5 * step_size * grad                          # eq. 11
        for step in range(steps):
            x, phi = self.move(x, phi, step_size)                    # eq. 12
            f, grad = self.evaluate(x)
            kick = step_size if step < steps - 1 else 0.5 * step_size
            phi = phi - kick * grad                                  # eq. 13 (+ next eq. 11)
        return x, phi, f, grad

    def transition(self, x, f, grad, step_size):
        """One HMC iteration for all chains: momentum, leapfrog, Metropolis.

        Returns the new (x, f, grad) and per-chain accepted, accept_prob,
        delta_H, divergent.
        """
        phi = self.sample_momentum(x.shape)
        h0 = self.potential_energy(x, f) + self.kinetic_energy(phi)
        with np.errstate(all="ignore"):   # a divergent chain may overflow
            x1, phi1, f1, grad1 = self.leapfrog(x, phi, grad, step_size, self.leapfrog_steps)
            h1 = self.potential_energy(x1, f1) + self.kinetic_energy(phi1)
            delta_h = h1 - h0
            divergent = ~np.isfinite(delta_h) | (np.abs(delta_h) > DIVERGENCE_THRESHOLD)
            accept_prob = np.where(divergent, 0.0, np.minimum(1.0, np.exp(-delta_h)))
        accepted = self.uniform(len(f)) < accept_prob
        keep = accepted.reshape((-1,) + (1,) * (x.ndim - 1))
        return (np.where(keep, x1, x), np.where(accepted, f1, f), np.where(keep, grad1, grad),
                accepted, accept_prob, delta_h, divergent)

    def sample(self, x0, iters, adapt=0, target_accept=0.7, callback=None,
               snapshot_iters=(), snapshot_chain=0):
        """Run `adapt` warm-up iterations (dual-averaging step size, then
        frozen) and `iters` sampling iterations from x0 (N x input shape).

        Returns a dict of per-iteration diagnostics (arrays (adapt+iters) x N:
        f, sq_norm = |x|^2, accepted, accept_prob, delta_h, divergent; step
        sizes per iteration), the final states `samples`, their average over
        the sampling iterations `chain_mean`, and `snapshots` of chain
        `snapshot_chain` at iterations `snapshot_iters` (0 = the start).
        callback(it, diagnostics) is called after every iteration.
        """
        return run_chains(ChainBlock(self, x0), self.step_size, iters, adapt, target_accept,
                          self.warn, callback, snapshot_iters, snapshot_chain)


# ---------------------------------------------------------------------------
# The iteration loop, over chains held here or in worker processes
# ---------------------------------------------------------------------------

# The rows one Caffe batch holds: every chain is computed in a block of this
# many rows, padded, whatever the number of chains and their split over
# processes or machines (see chain_blocks).
CHAIN_BLOCK = 8


def chain_blocks(chain_ids, block=CHAIN_BLOCK):
    """The blocks that compute the chains `chain_ids` (contiguous ids): a
    list of (ids, real), `ids` the `block` chain ids of one block, aligned to
    multiples of `block` (block k holds chains k*block .. k*block+block-1),
    `real` the mask of those that are in `chain_ids`; the others are padding,
    computed and dropped.

    Why: Caffe's InnerProduct is one float32 GEMM over the batch, and the BLAS
    rounds a row's dot products differently for other batch sizes (and the
    float64 products of a dense q, numpy's GEMMs, likewise), which HMC's
    trajectories amplify until accept decisions differ. A chain computed in
    the same slot of a block of the same size gets the same arithmetic in a
    run of 3 chains or 1,000, in one process or spread over workers,
    `--chain-offset` shards or Dask tasks (bench/float32_batch_rounding.py
    measures the rounding; tests/test_hmc.py the identity)."""
    chain_ids = np.asarray(chain_ids, dtype=np.int64)
    if not len(chain_ids):
        return []
    if np.any(np.diff(chain_ids) != 1):
        raise ValueError("chain ids must be contiguous")
    block = int(block)
    first, last = int(chain_ids[0]), int(chain_ids[-1])
    layout = []
    for start in range(first - first % block, last + 1, block):
        ids = np.arange(start, start + block)
        layout.append((ids, (ids >= first) & (ids <= last)))
    return layout


class ChainBlock(object):
    """Chains of one HMCSampler held in this process: their state (x, f,
    dU/dx) and the sum of x over the sampling iterations. The loop
    (`run_chains`) drives it, or a pool of them in worker processes
    (gencnn.sampling.parallel), through `step`, `state` and `finish`.

    real: a mask of the rows that are chains of the run (default all); the
    others pad a block (chain_blocks) and are computed but never reported,
    their diagnostics and counters included."""

    def __init__(self, sampler, x0, real=None):
        self.sampler = sampler
        self.x = np.array(x0, dtype=np.float64)
        if sampler.bounds is not None:
            self.x = np.clip(self.x, *sampler.bounds)     # chains start inside the box
        self.real = np.ones(len(self.x), bool) if real is None else np.asarray(real, bool)
        self.num_chains = int(self.real.sum())
        self.f, self.grad = sampler.evaluate(self.x)
        self.chain_sum = np.zeros_like(self.x)

    def step(self, step_size, accumulate):
        """One HMC iteration of every row; adds the new x to the chain sums
        if `accumulate`. Returns the real chains' diagnostics (a dict)."""
        self.x, self.f, self.grad, accepted, accept_prob, delta_h, divergent = \
            self.sampler.transition(self.x, self.f, self.grad, step_size)
        if accumulate:
            self.chain_sum += self.x
        real = self.real
        return {"f": self.f[real], "sq_norm": self.sampler._sum(self.x[real] ** 2),
                "accepted": accepted[real], "accept_prob": accept_prob[real],
                "delta_h": delta_h[real], "divergent": divergent[real]}

    def state(self, chain):
        """x of chain `chain` (the chain-th real row of this block) now."""
        return self.x[np.flatnonzero(self.real)[chain]].copy()

    def finish(self):
        """(final x, chain sums, the sampler's counters: forward+backward
        passes, wall reflections, chain-steps rejected past MAX_REFLECTIONS),
        of the real chains."""
        counters = {"evaluations": self.sampler.evaluations}
        for name, per_row in self.sampler.row_counters.items():
            counters[name] = int(np.sum(np.broadcast_to(per_row, self.real.shape)[self.real]))
        return self.x[self.real], self.chain_sum[self.real], counters


class ChainGroup(object):
    """Several ChainBlocks (or groups of them in other processes) behind one
    ChainBlock interface, their chains in order: what run_chains drives
    when the chains are computed in blocks (chain_blocks) or in workers
    (gencnn.sampling.parallel)."""

    def __init__(self, parts):
        self.parts = list(parts)
        self.num_chains = sum(part.num_chains for part in self.parts)

    def step(self, step_size, accumulate):
        return join_diagnostics([part.step(step_size, accumulate) for part in self.parts])

    def state(self, chain):
        for part in self.parts:
            if chain < part.num_chains:
                return part.state(chain)
            chain -= part.num_chains
        raise IndexError("chain out of range (%d chains)" % self.num_chains)

    def finish(self):
        return join_finished([part.finish() for part in self.parts])


def join_diagnostics(parts):
    """Per-chain diagnostics of consecutive groups of chains, joined."""
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def join_finished(parts):
    """ChainBlock.finish's results of consecutive groups of chains, joined:
    forward+backward passes of one group (each ran as many, in turn or at
    once), the other counters summed."""
    counters = {name: sum(part[2][name] for part in parts) for name in parts[0][2]}
    counters["evaluations"] = parts[0][2]["evaluations"]
    return (np.concatenate([part[0] for part in parts]),
            np.concatenate([part[1] for part in parts]), counters)


# HMCSampler's counters, as ChainBlock.finish reports them: passes (one per
# leapfrog step, whatever the chains: the same in every block and worker),
# and counts over chains (summed over blocks and workers).
COUNTERS = ("evaluations", "reflections", "rejected_reflecting")


# The per-iteration, per-chain diagnostics of run_chains, and their types.
DIAGNOSTICS = (("f", float), ("sq_norm", float), ("accept_prob", float), ("delta_h", float),
               ("accepted", bool), ("divergent", bool))


def warn_divergences(divergent, warn, first_iteration=0):
    """warn() once per iteration of `divergent` (iterations x chains) in
    which some chain diverged."""
    for it in np.flatnonzero(divergent.any(axis=1)):
        warn("HMC iteration %d: %d of %d chains diverged (|dH| > %g or non-finite), "
             "rejected" % (first_iteration + it + 1, divergent[it].sum(), divergent.shape[1],
                           DIVERGENCE_THRESHOLD))


def run_chains(chains, step_size, iters, adapt=0, target_accept=0.7, warn=warnings.warn,
               callback=None, snapshot_iters=(), snapshot_chain=0):
    """HMCSampler.sample's loop over `chains` (a ChainBlock, or anything
    with its step/state/finish, e.g. chains in worker processes): the step
    size is adapted here from the mean acceptance probability over all
    chains, divergences are warned of and callback(it, out) is called here."""
    total, n = adapt + iters, chains.num_chains
    out = {key: np.zeros((total, n), dtype=kind) for key, kind in DIAGNOSTICS}
    out["step_size"] = np.zeros(total)
    snapshot_iters = sorted(set(int(i) for i in snapshot_iters))
    snapshots = {}
    if 0 in snapshot_iters:
        snapshots[0] = chains.state(snapshot_chain)
    adapter = DualAveraging(step_size, target_accept) if adapt > 0 else None
    for it in range(total):
        diagnostics = chains.step(step_size, it >= adapt)
        out["step_size"][it] = step_size
        for key, _ in DIAGNOSTICS:
            out[key][it] = diagnostics[key]
        warn_divergences(diagnostics["divergent"][None], warn, it)
        if adapter is not None and it < adapt:
            step_size = adapter.update(float(diagnostics["accept_prob"].mean()))
            if it == adapt - 1:
                step_size = adapter.final_step   # frozen from here on
        if it + 1 in snapshot_iters:
            snapshots[it + 1] = chains.state(snapshot_chain)
        if callback is not None:
            callback(it, out)
    x, chain_sum, counters = chains.finish()
    out.update(counters)
    out["samples"] = x
    out["chain_mean"] = chain_sum / max(iters, 1)
    out["final_step_size"] = step_size
    out["snapshot_iters"] = np.array(sorted(snapshots), dtype=int)
    out["snapshots"] = np.array([snapshots[i] for i in sorted(snapshots)])
    return out
