"""Two samplers that share HMCSampler's state, streams and loop (run_chains)
but not its Metropolis test.

LangevinSampler: unadjusted Langevin dynamics on U(x) = -f_y(x)/T - log q(x),

    x' = x - (eps^2 / 2) M^-1 grad U(x) + eps M^-1/2 xi,    xi ~ N(0, I),

M the mass matrix (I, or Sigma^-1 preconditioned: steps in q's whitened
coordinates). That is MALA's proposal (one leapfrog step from a fresh
momentum) accepted every time. With a stochastic gradient (one random
transform per evaluation, gencnn.sampling.transforms) it is
stochastic-gradient Langevin dynamics (Welling & Teh, 2011): no energy is
ever evaluated exactly, so there is no Metropolis test, and its samples
carry a bias of order eps^2 plus the gradient noise's (measured on a Gaussian
target: tests/test_transforms.py, bench/langevin_bias.py). With a box, a
step that leaves the box is folded back into it (reflected Langevin, whose
small-step limit is the box-truncated density).

ActivationMaximization: the field's regularised gradient ascent on f_y, no
density (Yosinski et al., 2015; the jitter + L2 + blur recipe): each step
x += lr g / mean|g| (g = grad f_y, at a random shift when the score has one),
x *= 1 - decay, every `blur_every` steps a Gaussian blur of `blur_sigma`
pixels, clipped to the box (per channel). Different chains differ only by their start.
"""
import numpy as np

from gencnn.sampling.hmc import HMCSampler


def taken(x, f, grad, x1, f1, grad1):
    """HMCSampler.transition's tuple for a step that is always taken, but
    where f is not finite: that chain stays where it was, counted divergent."""
    divergent = ~np.isfinite(f1)
    moved = ~divergent
    keep = moved.reshape((-1,) + (1,) * (x.ndim - 1))
    return (np.where(keep, x1, x), np.where(moved, f1, f), np.where(keep, grad1, grad),
            moved, moved.astype(float), np.zeros(len(f)), divergent)


class LangevinSampler(HMCSampler):
    """HMCSampler's options (step_size = eps, mass, reference q,
    precondition, temperature, seed, chain_ids) and box (lo, hi: per-channel
    walls of valid pixels, image_box); leapfrog_steps is
    1 and no proposal is rejected. A chain whose step is not finite (or lands
    FAR_FROM_Q out) stays where it was and is counted as divergent."""

    kind = "langevin"

    def __init__(self, score, box=None, **options):
        options["leapfrog_steps"] = 1
        super(LangevinSampler, self).__init__(score, **options)
        self.box = None if box is None else check_box(box)

    def move(self, x, phi, step_size):
        """The step, folded back into `box` (per-channel walls) when given."""
        if self.box is None:
            return super(LangevinSampler, self).move(x, phi, step_size)
        return fold(x + self.drift(phi, step_size), *self.box), phi

    def initial_state(self, shape):
        x = super(LangevinSampler, self).initial_state(shape)
        return x if self.box is None else np.clip(x, *self.box)

    def transition(self, x, f, grad, step_size):
        phi = self.sample_momentum(x.shape)
        with np.errstate(all="ignore"):
            x1, _, f1, grad1 = self.leapfrog(x, phi, grad, step_size, 1)
        return taken(x, f, grad, x1, f1, grad1)


def check_box(box):
    """(lo, hi) as float arrays (scalars or per channel, C x 1 x 1), lo < hi."""
    lo, hi = (np.asarray(b, dtype=np.float64) for b in box)
    if not np.all(lo < hi):
        raise ValueError("box must have lo < hi, got %s" % (box,))
    return lo, hi


def image_box(mean, channels=3, lo=0.0, hi=255.0):
    """The walls of valid pixels in a net's input units (pixels minus the
    per-channel `mean`): arrays of shape C x 1 x 1."""
    mean = np.broadcast_to(np.asarray(mean, dtype=np.float64)[:channels], (channels,))
    return ((lo - mean).reshape(-1, 1, 1), (hi - mean).reshape(-1, 1, 1))


def fold(x, lo, hi):
    """x folded into [lo, hi] by reflection at the walls (any distance out)."""
    width = hi - lo
    folded = np.mod(x - lo, 2 * width)
    return lo + np.where(folded > width, 2 * width - folded, folded)


def gaussian_blur(x, sigma):
    """Each map of x (N x C x H x W) blurred by a Gaussian of `sigma` pixels
    (separable, reflected borders)."""
    import cv2
    size = 2 * int(np.ceil(3 * sigma)) + 1
    out = np.empty_like(x)
    for n in range(len(x)):
        for c in range(x.shape[1]):
            out[n, c] = cv2.GaussianBlur(x[n, c], (size, size), sigma,
                                         borderType=cv2.BORDER_REFLECT)
    return out


class ActivationMaximization(HMCSampler):
    """Regularised activation maximisation through HMCSampler's loop: the
    `temperature`, `mass` and q's energy play no part; q only draws the
    start (the recipe starts from N(0, 10^2) noise). step_size = lr in input
    units per step on the normalised gradient."""

    kind = "activation-maximization"

    def __init__(self, score, decay=1e-3, blur_every=10, blur_sigma=0.5, box=None, **options):
        options["leapfrog_steps"] = 1
        super(ActivationMaximization, self).__init__(score, **options)
        self.box = None if box is None else check_box(box)
        if not 0 <= decay < 1:
            raise ValueError("decay must be in [0, 1), got %s" % decay)
        self.decay, self.blur_every, self.blur_sigma = float(decay), int(blur_every), \
            float(blur_sigma)
        self.steps_taken = 0

    def grad_potential(self, x, dfdx):
        return -dfdx            # ascent on f_y alone

    def initial_state(self, shape):
        x = super(ActivationMaximization, self).initial_state(shape)
        return x if self.box is None else np.clip(x, *self.box)

    def transition(self, x, f, grad, step_size):
        ascent = -grad
        scale = np.abs(ascent).reshape(len(x), -1).mean(axis=1)
        scale = np.where(scale > 0, scale, 1.0).reshape((-1,) + (1,) * (x.ndim - 1))
        x1 = (x + step_size * ascent / scale) * (1 - self.decay)
        self.steps_taken += 1
        if self.blur_every and self.blur_sigma > 0 and self.steps_taken % self.blur_every == 0:
            x1 = gaussian_blur(x1, self.blur_sigma)
        if self.box is not None:
            x1 = np.clip(x1, *self.box)
        f1, grad1 = self.evaluate(x1)
        return taken(x, f, grad, x1, f1, grad1)

    def evaluate(self, x):
        self.evaluations += 1
        f, dfdx = self.score(x)
        return f, self.grad_potential(x, dfdx)


SAMPLERS = {"hmc": HMCSampler, "langevin": LangevinSampler,
            "activation-maximization": ActivationMaximization}
