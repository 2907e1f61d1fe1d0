"""The reference distribution q of p_y(x) = exp(f_y(x)) q(x) / Z_y (eq. 1).

`DiagonalGaussian(mean, std)`: N(mu, diag(sigma^2)); the paper's white noise
(mu = 0, sigma = 1), or fitted to images by `fit_reference` (one mean and
marginal std, or per pixel): a "maximum entropy distribution fitted to the
observed images" (section 3.4).

A q gives what the sampler needs: energy(x) = -log q(x) + const per chain,
its gradient, draws, and a whitened distance (to spot diverged chains).
"""
import numpy as np


def _sum(a):
    """Sum over every axis but the chain axis."""
    return a.reshape(a.shape[0], -1).sum(axis=1)


class DiagonalGaussian(object):
    """q = N(mean, diag(std^2)); mean and std scalars or arrays broadcastable
    to one chain's input shape. Factorizes over pixels, so a node may be
    sampled on its receptive field alone (`crop`)."""

    factorized = True

    def __init__(self, mean=0.0, std=1.0):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        if not np.all(self.std > 0):
            raise ValueError("sigma must be positive")

    def energy(self, x):
        """|x - mu|^2 / (2 sigma^2) per chain."""
        return _sum((x - self.mean) ** 2 / (2 * self.std ** 2))

    def grad(self, x):
        return (x - self.mean) / self.std ** 2

    def whitened_distance(self, x):
        """max |x - mu| / sigma per chain."""
        return (np.abs(x - self.mean) / self.std).reshape(len(x), -1).max(axis=1)

    def sample(self, rng, shape):
        return self.mean + self.std * rng.standard_normal(shape)

    def crop(self, box):
        """q of the pixels in box (y0, y1, x0, x1) of a C x H x W input."""
        y0, y1, x0, x1 = box
        return DiagonalGaussian(*[a[..., y0:y1, x0:x1] if np.ndim(a) == 3 else a
                                  for a in (self.mean, self.std)])

    @property
    def mean_value(self):
        return float(np.mean(self.mean))

    @property
    def std_value(self):
        return float(np.mean(self.std))

    def describe(self):
        return "N(%.3g, %.3g^2)" % (self.mean_value, self.std_value)


# ---------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------

def fit_reference(images, per_pixel=False, min_std=1e-2):
    """(mean, std) of a Gaussian q fitted to images (M x input shape).

    per_pixel=False: one mean and one marginal std over all pixels, the
    "white noise with the images' marginal variance" of section 3.4.
    per_pixel=True: the mean image and each pixel's std (floored at
    `min_std`, since MNIST's border pixels never vary).
    """
    images = np.asarray(images, dtype=np.float64)
    if per_pixel:
        return images.mean(axis=0), np.maximum(images.std(axis=0), min_std)
    return float(images.mean()), float(images.std())
