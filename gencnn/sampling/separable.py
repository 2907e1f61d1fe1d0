"""A smooth reference q whose covariance is a blur: q = N(mu, Sigma) with

    Sigma = std^2 (K_rows (x) K_cols)   on every colour channel,

K a symmetric positive definite matrix per image axis. With K = B^2, B the
circular Gaussian blur of `blur` pixels, q is the law of white noise of
`std` blurred by B: a stationary image prior with the power spectrum
std^2 exp(-|omega|^2 blur^2) (smooth at the scale of `blur`, white beyond
it), the smoothness that activation maximisation adds by blurring every few
steps, written as q's covariance so that the target stays a density.

Sigma^a v = std^(2a) K_rows^a v K_cols^a per map: two small matrix products
per axis pair (K^a from K's eigendecomposition, computed once), so any
power, the whitening Sigma^-1/2 and the preconditioner Sigma included, costs
two GEMMs of side H or W, whatever H and W are (a 2-D FFT of a prime side
such as ImageNet's 227 is ten times slower than of 228).
"""
import numpy as np

from gencnn.sampling.reference import CorrelatedGaussian

# Eigenvalues of K below FLOOR times the largest are raised to it (K^-1 is
# then bounded): the blur's highest frequencies keep a little variance.
FLOOR = 1e-6


def circular_blur_matrix(size, blur):
    """size x size symmetric matrix B of the circular Gaussian blur of
    `blur` pixels (the kernel wrapped around the axis, rows summing to 1)."""
    offsets = np.arange(size)
    distance = np.minimum(offsets, size - offsets)          # circular distance
    kernel = np.exp(-0.5 * (distance / float(blur)) ** 2)
    kernel /= kernel.sum()
    return np.array([np.roll(kernel, i) for i in range(size)])


class SeparableGaussian(CorrelatedGaussian):
    """q = N(mean, std^2 K_rows (x) K_cols) over C x H x W inputs (each
    channel independent). mean: per-channel (C,) or a scalar."""

    def __init__(self, mean, std, rows, cols, channels=3, label="separable"):
        self.std = float(std)
        if not self.std > 0:
            raise ValueError("std must be positive, got %s" % std)
        self.mean = np.broadcast_to(np.asarray(mean, dtype=np.float64).reshape(-1),
                                    (channels,)).reshape(-1, 1, 1).copy()
        self.label = label
        self._axes = []
        for matrix in (rows, cols):
            matrix = np.asarray(matrix, dtype=np.float64)
            if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or \
                    not np.allclose(matrix, matrix.T, atol=1e-12):
                raise ValueError("each axis covariance must be a symmetric square matrix")
            values, vectors = np.linalg.eigh(matrix)
            values = np.maximum(values, FLOOR * values.max())
            self._axes.append((values, vectors))
        self.shape = (channels, len(self._axes[0][0]), len(self._axes[1][0]))
        self._powers = {}

    def _axis_power(self, axis, power):
        key = (axis, power)
        if key not in self._powers:
            values, vectors = self._axes[axis]
            self._powers[key] = (vectors * values ** power).dot(vectors.T)
        return self._powers[key]

    def cov_power(self, v, power):
        """Sigma^power v for v of shape N x C x H x W."""
        rows, cols = self._axis_power(0, power), self._axis_power(1, power)
        v = np.asarray(v, dtype=np.float64)
        scaled = cols * self.std ** (2 * power)
        # K_r^a v K_c^a (both symmetric): two GEMMs per chain, of one shape
        # whatever the number of chains, so a chain's arithmetic does not
        # depend on the batch it is in (or on the worker split)
        out = np.empty_like(v)
        for n in range(len(v)):
            maps = v[n].reshape(-1, v.shape[-1]).dot(scaled).reshape(v.shape[1:])
            out[n] = np.matmul(rows, maps)
        return out

    def whitened_distance(self, x):
        return np.abs(self.cov_power(x - self.mean, -0.5)).reshape(len(x), -1).max(axis=1)

    def marginal_std(self):
        """Standard deviation of one pixel under q (the same everywhere)."""
        rows, cols = self._axis_power(0, 1.0), self._axis_power(1, 1.0)
        return self.std * float(np.sqrt(np.mean(np.diag(rows)) * np.mean(np.diag(cols))))

    @property
    def mean_value(self):
        return float(np.mean(self.mean))

    @property
    def std_value(self):
        return self.marginal_std()

    def describe(self):
        return "%s, marginal std %.3g" % (self.label, self.marginal_std())


def blur_gaussian(input_shape, std, blur, mean=0.0):
    """q = white noise of `std` (input units) blurred by a circular Gaussian
    of `blur` pixels: SeparableGaussian with K = B^2 on each axis."""
    channels, height, width = input_shape
    rows = circular_blur_matrix(height, blur)
    cols = rows if width == height else circular_blur_matrix(width, blur)
    return SeparableGaussian(mean, std, rows.dot(rows), cols.dot(cols), channels,
                             label="white std %g blurred %g px" % (std, blur))
