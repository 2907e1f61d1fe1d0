"""A transformation-averaged score: f-bar_y(x) = mean over tau in S of f_y(tau(x)).

A class unit of an ImageNet net answers to an object wherever it sits in the
image; a single f_y rewards any pattern that happens to excite the unit at
one alignment, and its samples at a low temperature are adversarial
textures. Averaging the score over a set S of small image transforms (integer
shifts up to J pixels, optionally horizontal flips and rescales) makes the
density

    p_y(x) ~ exp(f-bar_y(x) / T) q(x)

prefer images the net calls y however they are moved: the same model family
as the paper's eq. 1, with a score that is itself a function of x.

Every transform here is linear, tau(x) = A x, so
grad f-bar(x) = mean over tau of A^T grad f_y(A x), with A^T exact: a shift is
a circular roll (A^T rolls back), a flip is its own transpose, a rescale is a
separable bilinear resampling matrix per axis (A^T its transpose).

Two ways to use S (TransformAveragedScore's `mode`):

* "enumerate": every tau of a fixed list each evaluation, as one batch of
  chains x |S| rows through the net. f-bar is then an exact energy, and HMC or
  MALA with a Metropolis test samples p_y exactly (at |S| times the cost).
* "random": one tau drawn per chain per evaluation, from the chain's own
  random stream: f_y(tau(x)) and its gradient are unbiased estimates of
  f-bar and grad f-bar. Used by stochastic-gradient Langevin dynamics
  (gencnn.sampling.langevin), which has no Metropolis test: its samples are
  approximate (the bias is measured on a Gaussian target in
  tests/test_transforms.py and bench/langevin_bias.py).
"""
import itertools

import numpy as np


def resample_matrix(size, scale):
    """size x size matrix R of a zoom by `scale` about the centre: output
    pixel i is input position c + (i - c) / scale, c = (size - 1) / 2, by
    linear interpolation, clamped to the border."""
    centre = (size - 1) / 2.0
    source = np.clip(centre + (np.arange(size) - centre) / float(scale), 0, size - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, size - 1)
    weight = source - low
    matrix = np.zeros((size, size))
    matrix[np.arange(size), low] += 1 - weight
    matrix[np.arange(size), high] += weight
    return matrix


class Transform(object):
    """tau(x) = roll(rescale(flip(x)), shift) on the last two axes of x
    (N x C x H x W): flip (horizontal mirror), scale (zoom about the
    centre, 1 = none), shift (dy, dx) pixels, circular."""

    def __init__(self, shift=(0, 0), flip=False, scale=1.0):
        self.shift = (int(shift[0]), int(shift[1]))
        self.flip = bool(flip)
        self.scale = float(scale)
        if not self.scale > 0:
            raise ValueError("scale must be positive, got %s" % scale)
        self._matrices = {}

    def _resample(self, shape):
        if shape not in self._matrices:
            self._matrices[shape] = (resample_matrix(shape[0], self.scale),
                                     resample_matrix(shape[1], self.scale))
        return self._matrices[shape]

    def apply(self, x):
        if self.flip:
            x = x[..., ::-1]
        if self.scale != 1.0:
            rows, cols = self._resample(x.shape[-2:])
            x = np.einsum("ij,...jk,lk->...il", rows, x, cols)
        if self.shift != (0, 0):
            x = np.roll(x, self.shift, axis=(-2, -1))
        return x

    def adjoint(self, g):
        """A^T g: the gradient of f(tau(x)) from the gradient at tau(x)."""
        if self.shift != (0, 0):
            g = np.roll(g, (-self.shift[0], -self.shift[1]), axis=(-2, -1))
        if self.scale != 1.0:
            rows, cols = self._resample(g.shape[-2:])
            g = np.einsum("ji,...jk,kl->...il", rows, g, cols)
        if self.flip:
            g = g[..., ::-1]
        return g

    def describe(self):
        parts = ["shift %d,%d" % self.shift]
        if self.flip:
            parts.append("flip")
        if self.scale != 1.0:
            parts.append("scale %g" % self.scale)
        return " ".join(parts)


class TransformSet(object):
    """The set S: shifts (dy, dx) with dy, dx in -max_shift, -max_shift +
    grid, ..., max_shift (grid 1: every integer shift; the end points always
    included), times (flips: no flip and a horizontal flip), times `scales`.

    enumerate(): S as a list (the exact form: grid 8 and max_shift 16 give
    5 x 5 shifts). draw(rng): one member of S, uniformly.
    """

    def __init__(self, max_shift=0, flips=False, scales=(1.0,), grid=None):
        self.max_shift = int(max_shift)
        if self.max_shift < 0:
            raise ValueError("max shift must be >= 0, got %s" % max_shift)
        self.flips = bool(flips)
        self.scales = tuple(float(s) for s in scales)
        if not self.scales or not all(s > 0 for s in self.scales):
            raise ValueError("scales must be positive, got %s" % (scales,))
        self.grid = int(grid) if grid is not None else 1
        if self.grid < 1:
            raise ValueError("shift grid must be >= 1, got %s" % grid)
        self._cache = {}

    @classmethod
    def parse(cls, text):
        """From 'shift:16', 'shift:16,flip', 'shift:16,flip,scale:0.9/1/1.1',
        'shift:16,grid:8' or 'none'; ValueError with the reason otherwise."""
        options = dict(max_shift=0, flips=False, scales=(1.0,), grid=None)
        if text.strip() in ("", "none"):
            return cls(**options)
        for part in text.split(","):
            key, _, value = part.strip().partition(":")
            try:
                if key == "shift":
                    options["max_shift"] = int(value)
                elif key == "grid":
                    options["grid"] = int(value)
                elif key == "flip" and not value:
                    options["flips"] = True
                elif key == "scale":
                    options["scales"] = tuple(float(v) for v in value.split("/"))
                else:
                    raise ValueError
            except ValueError:
                raise ValueError("transforms must look like shift:16[,grid:8][,flip]"
                                 "[,scale:0.9/1/1.1] or none; got '%s'" % text)
        return cls(**options)

    def describe(self):
        parts = ["shift:%d" % self.max_shift]
        if self.grid != 1:
            parts.append("grid:%d" % self.grid)
        if self.flips:
            parts.append("flip")
        if self.scales != (1.0,):
            parts.append("scale:" + "/".join("%g" % s for s in self.scales))
        return ",".join(parts)

    @property
    def is_identity(self):
        return self.max_shift == 0 and not self.flips and self.scales == (1.0,)

    def _transform(self, shift, flip, scale):
        key = (shift, flip, scale)
        if key not in self._cache:       # (keeps each rescale's matrices)
            self._cache[key] = Transform(shift, flip, scale)
        return self._cache[key]

    def offsets(self):
        offsets = list(range(-self.max_shift, self.max_shift + 1, self.grid))
        if self.max_shift and offsets[-1] != self.max_shift:
            offsets.append(self.max_shift)
        return offsets

    def enumerate(self):
        offsets = self.offsets()
        flips = (False, True) if self.flips else (False,)
        return [self._transform((dy, dx), flip, scale) for scale, flip, dy, dx in
                itertools.product(self.scales, flips, offsets, offsets)]

    def draw(self, rng):
        offsets = self.offsets()
        dy, dx = (offsets[int(i)] for i in rng.integers(len(offsets), size=2)) \
            if self.max_shift else (0, 0)
        flip = bool(rng.integers(2)) if self.flips else False
        scale = self.scales[int(rng.integers(len(self.scales)))] if len(self.scales) > 1 \
            else self.scales[0]
        return self._transform((dy, dx), flip, scale)


class TransformAveragedScore(object):
    """(f-bar_y(x), grad f-bar_y) per chain, from a score of the batch.

    score:  callable rows -> (f per row, df/d row), e.g. a NodeScore; in
            "enumerate" mode over num_chains x |S| rows (row n |S| + k is
            chain n under transform k), in "random" mode over num_chains rows.
    transforms: a TransformSet.
    mode:   "enumerate" (exact f-bar) or "random" (one tau per chain and
            evaluation, drawn from rngs[n]: an unbiased estimate).
    rngs:   "random" mode: one numpy Generator per chain (the chain's own
            stream, so a chain draws the same taus in any batch or worker).
    """

    def __init__(self, score, transforms, mode="enumerate", rngs=None):
        if mode not in ("enumerate", "random"):
            raise ValueError("mode must be 'enumerate' or 'random', got %r" % mode)
        if mode == "random" and rngs is None:
            raise ValueError("random transforms need one random stream per chain")
        self.score, self.transforms, self.mode, self.rngs = score, transforms, mode, rngs
        self.members = transforms.enumerate() if mode == "enumerate" else None

    @property
    def batch_per_chain(self):
        """Rows of the net's batch per chain."""
        return len(self.members) if self.mode == "enumerate" else 1

    def __call__(self, x):
        if self.mode == "random":
            if len(self.rngs) != len(x):
                raise ValueError("%d random streams for %d chains" % (len(self.rngs), len(x)))
            taus = [self.transforms.draw(rng) for rng in self.rngs]
            f, grad = self.score(np.stack([t.apply(row[None])[0] for t, row in zip(taus, x)]))
            return f, np.stack([t.adjoint(g[None])[0] for t, g in zip(taus, grad)])
        k = len(self.members)
        batch = np.stack([t.apply(x) for t in self.members], axis=1)   # N x K x ...
        f, grad = self.score(batch.reshape((len(x) * k,) + x.shape[1:]))
        grad = grad.reshape(batch.shape)
        total = sum(t.adjoint(grad[:, i]) for i, t in enumerate(self.members))
        return f.reshape(len(x), k).mean(axis=1), total / k


def rows_per_chain(transforms, mode):
    """The net's batch rows per chain for a TransformSet in `mode` (None: no
    transforms)."""
    if transforms is None or mode != "enumerate":
        return 1
    return len(transforms.enumerate())



# The substream of a chain's random stream (hmc.chain_rng(seed, chain, 2))
# that draws its random transforms: 0 is the sampler's, 1 fills the pixels
# outside a receptive field (gencnn.visualization.node).
TRANSFORM_STREAM = 2


def node_score(net, blob, chain_units, position=None, input_blob=None, transforms=None,
               mode="random", seed=0, chain_ids=None):
    """The score of a node for chains of `chain_units` (one unit per chain):
    a plain hmc.NodeScore, or with `transforms` (a TransformSet) the
    TransformAveragedScore over it, the net's batch reshaped to the rows the
    mode needs (chains x |S| to enumerate S). Random transforms come from
    each chain's own stream (chain_ids: its ids, default 0..N-1)."""
    from gencnn.sampling import hmc
    input_blob = input_blob or net.inputs[0]
    chain_units = np.asarray(chain_units)
    if transforms is None or transforms.is_identity:
        return hmc.NodeScore(net, blob, chain_units, position, input_blob)
    rows = rows_per_chain(transforms, mode)
    shape = net.blobs[input_blob].data.shape
    if shape[0] != len(chain_units) * rows:
        net.blobs[input_blob].reshape(len(chain_units) * rows, *shape[1:])
        net.reshape()
    base = hmc.NodeScore(net, blob, np.repeat(chain_units, rows), position, input_blob)
    rngs = None
    if mode == "random":
        ids = np.arange(len(chain_units)) if chain_ids is None else np.asarray(chain_ids)
        rngs = [hmc.chain_rng(seed, int(i), TRANSFORM_STREAM) for i in ids]
    return TransformAveragedScore(base, transforms, mode, rngs)


class QuadraticScore(object):
    """f(z) = w . z - c |z|^2 / 2 per row, and its gradient: the check of the
    samplers. With orthogonal transforms (shifts, flips), f-bar(x) =
    w-bar . x - c |x|^2 / 2 with w-bar = mean over S of tau^T w, so
    exp(f-bar / T) N(0, s^2 I) is a Gaussian with known moments
    (gaussian_moments)."""

    def __init__(self, w, c):
        self.w, self.c = np.asarray(w, dtype=np.float64), float(c)
        self.rows = []          # the batch sizes it was called with

    def __call__(self, z):
        self.rows.append(len(z))
        flat = z.reshape(len(z), -1)
        f = flat.dot(self.w.ravel()) - 0.5 * self.c * (flat ** 2).sum(axis=1)
        return f, self.w - self.c * z


def gaussian_moments(score, transforms, temperature, sigma):
    """(mean map, variance) of exp(f-bar / T) N(0, sigma^2 I) for a
    QuadraticScore and a TransformSet of orthogonal transforms."""
    w_bar = np.mean([t.adjoint(score.w[None])[0] for t in transforms.enumerate()], axis=0)
    variance = 1.0 / (score.c / temperature + 1.0 / sigma ** 2)
    return variance * w_bar / temperature, variance
