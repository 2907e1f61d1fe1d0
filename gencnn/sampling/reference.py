"""The reference distribution q of p_y(x) = exp(f_y(x)) q(x) / Z_y (eq. 1).

Two Gaussians, both "maximum entropy distributions fitted to the observed
images" in the paper's sense (section 3.4), differing in which second
moments they match:

- `DiagonalGaussian(mean, std)`: N(mu, diag(sigma^2)); the paper's white
  noise (mu = 0, sigma = 1), or fitted to images by `fit_reference` (one
  mean and marginal std, or per pixel).
- `SpectralGaussian(mean, power)`: a stationary Gaussian whose covariance is
  diagonal in the 2-D Fourier basis of each colour channel, its power
  spectrum fitted to a folder of photos by `fit_spectrum`: natural images'
  ~1/f^2 power, where white noise has a flat one. Channels are independent.

- `EigenGaussian(mean, eigvecs, eigvals, residual)`: N(mu, Sigma) with
  Sigma = V diag(lambda) V^T + r (I - V V^T), built by `fit_gaussian` from
  training images: the full covariance (every eigenvector, section 3.4's
  "maximum entropy distribution" with all second moments matched), or its
  top principal components plus an isotropic residual (low rank).

`fit_q` is the one constructor of a q fitted to images (any of the kinds
above, on the pixels or on the logits of the logit pixel model).

Each gives what the sampler needs: energy(x) = -log q(x) + const per chain,
its gradient, draws, a whitened distance (to spot diverged chains), and the
covariance as an operator, cov_power(v, a) = Sigma^a v, for the matching
mass matrix (HMCSampler(precondition=True)).
"""
import os

import numpy as np


def _sum(a):
    """Sum over every axis but the chain axis."""
    return a.reshape(a.shape[0], -1).sum(axis=1)


def _marginal_distance(x, mean, std):
    """max |x - mu| / sigma per chain, sigma each pixel's marginal std."""
    return (np.abs(x - mean) / std).reshape(len(x), -1).max(axis=1)


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
        return _marginal_distance(x, self.mean, self.std)

    def sample(self, rng, shape):
        return self.mean + self.std * rng.standard_normal(shape)

    def cov_power(self, v, power):
        """Sigma^power v."""
        return v * self.std ** (2 * power)

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


class CorrelatedGaussian(object):
    """What a Gaussian q with correlated pixels derives from its operator
    cov_power(v, a) = Sigma^a v: energy, gradient, draws. It does not
    factorize over pixels (no `crop`)."""

    factorized = False

    def energy(self, x):
        """(x - mu)^T Sigma^-1 (x - mu) / 2 per chain."""
        d = x - self.mean
        return 0.5 * _sum(d * self.cov_power(d, -1.0))

    def grad(self, x):
        return self.cov_power(x - self.mean, -1.0)

    def sample(self, rng, shape):
        return self.mean + self.cov_power(rng.standard_normal(shape), 0.5)

    def crop(self, box):
        raise ValueError("a correlated q does not factorize over pixels: sample the full input")


class SpectralGaussian(CorrelatedGaussian):
    """Stationary q = N(mu, Sigma), Sigma = U (F^H diag(P) F) U^T: per channel
    of y = U^T (x - mu), F the orthonormal 2-D DFT of an H x W map, so the
    covariance of two pixels depends only on their (periodic) offset and the
    Fourier coefficients are independent with variance P[c, ky, kx].

    mean:  per-channel means, shape (C,) (broadcast over the map).
    power: (C, H, W) full power spectrum, symmetric under k -> -k (as the
           spectrum of real images is); checked and kept as the rfft half.
    colour_basis: None (the channels themselves, independent) or an
           orthogonal C x C matrix U whose columns are the channels of y
           (e.g. the principal axes of the images' colours: luminance and
           two opponent channels), so Sigma^a = U (F^H diag(P^a) F) U^T.
    A circulant model: it treats the map as a torus, so q's samples wrap
    around at the edges.
    """

    def __init__(self, mean, power, colour_basis=None):
        power = np.asarray(power, dtype=np.float64)
        if power.ndim != 3:
            raise ValueError("power must be C x H x W, got shape %s" % (power.shape,))
        if not np.all(power > 0):
            raise ValueError("power spectrum must be positive")
        flipped = np.roll(power[:, ::-1, ::-1], 1, axis=(1, 2))    # P[-k]
        if not np.allclose(power, flipped, rtol=1e-9, atol=0):
            raise ValueError("power spectrum must be symmetric, P[k] = P[-k]")
        self.shape = power.shape
        self.power = power
        self.half = power[..., :power.shape[2] // 2 + 1]
        self.mean = np.asarray(mean, dtype=np.float64).reshape(-1, 1, 1)
        if self.mean.shape[0] != power.shape[0]:
            raise ValueError("mean has %d channels, power %d" % (self.mean.shape[0],
                                                                  power.shape[0]))
        self.colour_basis = None
        if colour_basis is not None:
            basis = np.asarray(colour_basis, dtype=np.float64)
            if basis.shape != (power.shape[0],) * 2 or not np.allclose(
                    basis.T.dot(basis), np.eye(len(basis)), atol=1e-9):
                raise ValueError("colour_basis must be an orthogonal %d x %d matrix"
                                 % ((power.shape[0],) * 2))
            self.colour_basis = basis

    def cov_power(self, v, power):
        """Sigma^power v for v of shape N x C x H x W: through the rfft."""
        height, width = self.shape[1:]
        if self.colour_basis is not None:
            v = np.einsum("dc,nd...->nc...", self.colour_basis, v)      # y = U^T v
        spectrum = np.fft.rfft2(v, norm="ortho") * self.half ** power
        v = np.fft.irfft2(spectrum, s=(height, width), norm="ortho")
        if self.colour_basis is not None:
            v = np.einsum("cd,nd...->nc...", self.colour_basis, v)      # U y
        return v

    def whitened_distance(self, x):
        """max |Sigma^-1/2 (x - mu)| per chain."""
        return np.abs(self.cov_power(x - self.mean, -0.5)).reshape(len(x), -1).max(axis=1)

    def marginal_std(self):
        """Per-channel standard deviation of one pixel under q."""
        variance = self.power.mean(axis=(1, 2))
        if self.colour_basis is not None:
            variance = (self.colour_basis ** 2).dot(variance)
        return np.sqrt(variance)

    @property
    def mean_value(self):
        return float(np.mean(self.mean))

    @property
    def std_value(self):
        return float(np.sqrt(np.mean(self.power)))      # the same in any colour basis

    def describe(self):
        return "spectral, marginal std %.3g" % self.std_value


class EigenGaussian(CorrelatedGaussian):
    """q = N(mu, Sigma), Sigma = V diag(lambda) V^T + r (I - V V^T), over the
    flattened input (D pixels): V (D x k) orthonormal columns, lambda > 0
    the variances along them, r > 0 the variance of every direction
    orthogonal to them (unused when k = D: the full covariance).

    Sigma^a v costs two D x k products (plus the residual); the powers the
    sampler asks for every leapfrog step (Sigma for the drift, Sigma^-1 for
    the gradient of -log q) are kept as dense D x D matrices when k = D, so
    each is one product.
    """

    def __init__(self, mean, eigvecs, eigvals, residual=None):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.dim = self.mean.size
        self.eigvecs = np.asarray(eigvecs, dtype=np.float64)
        self.eigvals = np.asarray(eigvals, dtype=np.float64)
        if self.eigvecs.shape != (self.dim, len(self.eigvals)):
            raise ValueError("eigvecs must be %d x %d, got %s"
                             % (self.dim, len(self.eigvals), self.eigvecs.shape))
        if not np.all(self.eigvals > 0):
            raise ValueError("eigenvalues must be positive (add shrinkage)")
        self.rank = len(self.eigvals)
        if self.rank < self.dim and not (residual is not None and residual > 0):
            raise ValueError("a low-rank q needs a positive residual variance")
        self.residual = float(residual) if self.rank < self.dim else None
        self._dense = {}
        if self.rank == self.dim:
            for power in (1.0, -1.0):
                self._dense[power] = (self.eigvecs * self.eigvals ** power).dot(self.eigvecs.T)
        self.variance = (self.eigvecs ** 2).dot(self.eigvals)          # diag(Sigma)
        if self.residual is not None:
            self.variance += self.residual * (1 - (self.eigvecs ** 2).sum(axis=1))
        self.std = np.sqrt(self.variance).reshape(self.mean.shape)

    def cov_power(self, v, power):
        """Sigma^power v for v of shape N x input shape."""
        flat = v.reshape(len(v), -1)
        dense = self._dense.get(float(power))
        if dense is not None:
            out = flat.dot(dense)
        else:
            coef = flat.dot(self.eigvecs)
            out = (coef * self.eigvals ** power).dot(self.eigvecs.T)
            if self.residual is not None:
                out += self.residual ** power * (flat - coef.dot(self.eigvecs.T))
        return out.reshape(v.shape)

    def dense_covariance(self):
        """Sigma as a dense D x D matrix (what a reflection off the wall of
        pixel i changes the velocity by: row i; HMCSampler bounds)."""
        if 1.0 not in self._dense:
            self._dense[1.0] = self.cov_power(np.eye(self.dim), 1.0)
        return self._dense[1.0]

    def whitened_distance(self, x):
        """max |x - mu| / (marginal std) per chain: a cheap divergence guard
        (it only has to spot chains thousands of standard deviations out)."""
        return _marginal_distance(x, self.mean, self.std)

    @property
    def mean_value(self):
        return float(np.mean(self.mean))

    @property
    def std_value(self):
        return float(np.sqrt(np.mean(self.variance)))

    def describe(self):
        if self.residual is None:
            return "full-covariance Gaussian, marginal std %.3g" % self.std_value
        return "rank-%d Gaussian + isotropic residual %.3g^2" % (self.rank,
                                                                 np.sqrt(self.residual))


# ---------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------

GAUSSIAN_KINDS = ("full", "lowrank", "diagonal")
# What fit_q fits: white noise with the images' mean and marginal std
# (global: one of each; pixel: per pixel; fit_reference), or a Gaussian of
# fit_gaussian's kinds.
Q_KINDS = ("global", "pixel") + GAUSSIAN_KINDS


def dequantization_seed(seed):
    """The RandomState seed of q's dequantization noise in a run of `seed`:
    seed + 1. One rule for every q of the logit pixel model, so that a net
    learned with it (gencnn/generative_learning.py, fitted_q, seed 0) is
    sampled by studies/class_samples_t1.py and hmc_visualize's lenet-fitted
    preset (at their default --seed 0) under the q it was trained with."""
    return int(seed) + 1


def fit_q(images, kind="global", shrinkage=1e-3, rank=50, logit=None, seed=0):
    """The q fitted to `images` (M x input shape, input units): the one
    constructor of a fitted q.

    kind:  global / pixel: a DiagonalGaussian, fit_reference's mean and
           marginal std (one of each, or per pixel); full / lowrank /
           diagonal: fit_gaussian's (with `shrinkage`, `rank`).
    logit: None, or (quantum, bounds): q of the logit pixel model (a q of
           u = logit of the box coordinates, hmc.LogitScore), fitted to the
           logits of the images dequantized in steps of `quantum`, the
           noise drawn from RandomState(dequantization_seed(seed)).
    """
    if kind not in Q_KINDS:
        raise ValueError("kind must be one of %s, got %r" % (", ".join(Q_KINDS), kind))
    if logit is not None:
        quantum, bounds = logit
        images = dequantized_logits(images, np.random.RandomState(dequantization_seed(seed)),
                                    quantum, bounds)
    if kind in ("global", "pixel"):
        return DiagonalGaussian(*fit_reference(images, per_pixel=kind == "pixel"))
    return fit_gaussian(images, kind=kind, shrinkage=shrinkage, rank=rank)


def dequantized_logits(images, rng, quantum, bounds=(0.0, 1.0)):
    """u = logit((x - lo) / (hi - lo)) of images whose values are multiples of
    `quantum` (one pixel level in input units: 1/256 for the project's LeNet),
    each first spread uniformly over its level, x + U(0, quantum): the usual
    dequantization, so every value lies strictly inside (lo, hi) and a
    Gaussian fitted to u is a density of images in the box (q of
    HMCSampler's logit pixel model, hmc.LogitScore)."""
    lo, hi = bounds
    x = (np.asarray(images, dtype=np.float64) + quantum * rng.uniform(size=np.shape(images))
         - lo) / (hi - lo)
    x = np.clip(x, 1e-7, 1 - 1e-7)
    return np.log(x) - np.log1p(-x)


def fit_gaussian(images, kind="full", shrinkage=1e-3, rank=50):
    """A Gaussian q fitted to images (M x input shape, input units).

    full:     N(mean image, S + shrinkage I), S the images' sample covariance
              (MNIST's border pixels never vary: the shrinkage makes Sigma
              invertible and sets how far q lets them move).
    lowrank:  the top `rank` principal components of S with their variances
              (+ shrinkage), the remaining variance spread evenly over the
              other directions (+ shrinkage): O(D rank) per product.
    diagonal: the mean image and each pixel's variance + shrinkage
              (a DiagonalGaussian: no pixel correlations).
    """
    if kind not in GAUSSIAN_KINDS:
        raise ValueError("kind must be one of %s, got %r" % (", ".join(GAUSSIAN_KINDS), kind))
    if not shrinkage > 0:
        raise ValueError("shrinkage must be positive, got %s" % shrinkage)
    images = np.asarray(images, dtype=np.float64)
    if len(images) < 2:
        raise ValueError("need at least 2 images to fit a Gaussian, got %d" % len(images))
    mean = images.mean(axis=0)
    centred = (images - mean).reshape(len(images), -1)
    if kind == "diagonal":
        return DiagonalGaussian(mean, np.sqrt(centred.var(axis=0, ddof=1) + shrinkage)
                                .reshape(mean.shape))
    covariance = centred.T.dot(centred) / (len(images) - 1)
    eigvals, eigvecs = np.linalg.eigh(covariance)
    eigvals, eigvecs = np.maximum(eigvals[::-1], 0), eigvecs[:, ::-1]   # largest first
    if kind == "full":
        return EigenGaussian(mean, eigvecs, eigvals + shrinkage)
    rank = int(rank)
    if not 0 < rank < centred.shape[1]:
        raise ValueError("rank must be in 1..%d, got %d" % (centred.shape[1] - 1, rank))
    residual = eigvals[rank:].mean() + shrinkage
    return EigenGaussian(mean, eigvecs[:, :rank], eigvals[:rank] + shrinkage, residual)


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
    if not images.std() > 0:
        raise ValueError("the %d images are constant (every pixel %g): a Gaussian fitted "
                         "to them has no spread; fit to other images, or use --reference "
                         "fixed" % (len(images), images.ravel()[0]))
    return float(images.mean()), float(images.std())


def fit_spectrum(images, smooth=1, floor=1e-6, decorrelate_colour=False, window=False):
    """SpectralGaussian fitted to images (M x C x H x W, input units).

    The mean is each channel's mean over images and pixels; the power
    spectrum is the average periodogram |F(x - mu)|^2 over the images (the
    maximum-likelihood circulant covariance), then averaged over a
    (2 smooth + 1)^2 periodic window of frequencies (few images give a
    noisy periodogram; docs/measurements.md) and floored at `floor` times its largest
    value, so Sigma is invertible. smooth=0 keeps the raw average.

    decorrelate_colour: first rotate the channels onto the principal axes
    of the images' colours (the eigenvectors of their C x C covariance),
    and fit a spectrum per rotated channel: q then has the photos' colour
    correlations (mostly luminance) instead of independent channels.
    window: estimate each periodogram through a 2-D Hann window (rescaled
    to keep the power), so the jump between opposite borders of a photo,
    which a periodogram sees as a horizontal and a vertical edge, does not
    put a cross of spurious power on the frequency axes.
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4:
        raise ValueError("images must be M x C x H x W, got shape %s" % (images.shape,))
    mean = images.mean(axis=(0, 2, 3))
    centred = images - mean.reshape(1, -1, 1, 1)
    basis = None
    if decorrelate_colour:
        channels = centred.transpose(1, 0, 2, 3).reshape(images.shape[1], -1)
        _, basis = np.linalg.eigh(channels.dot(channels.T) / channels.shape[1])
        basis = basis[:, ::-1]                       # largest variance (luminance) first
        centred = np.einsum("dc,nd...->nc...", basis, centred)
    if window:
        taper = np.outer(np.hanning(images.shape[2]), np.hanning(images.shape[3]))
        centred = centred * taper / np.sqrt((taper ** 2).mean())
    power = (np.abs(np.fft.fft2(centred, norm="ortho")) ** 2).mean(axis=0)
    if smooth:
        total = np.zeros_like(power)
        for dy in range(-smooth, smooth + 1):
            for dx in range(-smooth, smooth + 1):
                total += np.roll(power, (dy, dx), axis=(1, 2))
        power = total / (2 * smooth + 1) ** 2
    power = 0.5 * (power + np.roll(power[:, ::-1, ::-1], 1, axis=(1, 2)))   # exact P[k] = P[-k]
    power = np.maximum(power, floor * power.max())
    return SpectralGaussian(mean, power, basis)


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def load_images(folder, input_shape, mean, scale=1.0):
    """Photos of `folder` as the net's inputs (M x C x H x W float64).

    Each image is read as BGR 0-255 (grayscale for a 1-channel net), its
    short side resized to 256/227 of the input side (256 for a 227 input,
    as ImageNet training data), centre-cropped to H x W, minus the
    per-channel `mean`, times `scale`. ValueError (one line) if the folder
    holds no readable image.
    """
    import cv2
    channels, height, width = input_shape
    if channels not in (1, 3):
        raise ValueError("--reference-images needs a 1- or 3-channel input, the net's is %d"
                         % channels)
    if not os.path.isdir(folder):
        raise ValueError("--reference-images %s is not a folder" % folder)
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS))
    side = int(np.ceil(max(height, width) * 256.0 / 227.0))
    mean = np.broadcast_to(np.asarray(mean, dtype=np.float64)[:channels], (channels,))
    images = []
    for name in names:
        image = cv2.imread(os.path.join(folder, name),
                           cv2.IMREAD_COLOR if channels == 3 else cv2.IMREAD_GRAYSCALE)
        if image is None:
            continue
        h, w = image.shape[:2]
        ratio = float(side) / min(h, w)
        size = (max(side, int(round(w * ratio))), max(side, int(round(h * ratio))))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        y, x = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
        image = image[y:y + height, x:x + width].reshape(height, width, channels)
        images.append((image.transpose(2, 0, 1) - mean.reshape(-1, 1, 1)) * scale)
    if not images:
        raise ValueError("--reference-images %s holds no readable image (%s)"
                         % (folder, ", ".join(IMAGE_EXTENSIONS)))
    return np.array(images, dtype=np.float64)
