"""Sample measures, as the field uses them: how much a set of
samples with target classes looks like the images of those classes (MNIST
digits; CIFAR-10 images with a mean_file, in the cifar10_quick's input units).

    judge = Judge(model, weights)                 # an independent LeNet (pycaffe)
    reference = load_reference(judge, train_lmdb, test_lmdb)
    measures = measure_set(judge, reference, x, y, chain_mean)

x is n x 1 x 28 x 28 in the net's input units (pixels / 256 for the
project's LeNet), y the target classes. The measures:

- judge_accuracy: the fraction the judge assigns to its target class;
- inception_score: exp(E_x KL(p(y|x) || p(y))) of the judge's softmax, one
  split (Salimans et al., 2016);
- lenet_fid: the Frechet distance between Gaussians fitted to the judge's
  ip1 features of the set and of the reference (the MNIST test digits), the
  formula of Heusel et al. (2017) with the ImageNet Inception net replaced by
  the LeNet judge. The headline measure: judge accuracy and IS are fooled by
  a bare class template (one image per class is judged right and confidently),
  FID is not. It is biased upwards at small n: headline numbers use n >= 1,000;
  compare sets only at the same n;
- pixels_out_of_range: the fraction of pixels outside the box of valid
  images, [0, 1] for MNIST, pixel levels 0 .. 256 minus the mean image for
  CIFAR-10 (gencnn.data.transform);
- background_mean / background_sd (MNIST only): over the pixels where the
  class mean of the training digits (the sample's target class) is below 0.05;
- within_class_corr: mean pairwise Pearson correlation between samples of a
  class, averaged over classes (diversity: a template per class gives 1);
  within_class_corr_chain_mean: the same for the chain means, when given;
- nearest_train_distance_ratio: the median L2 distance of each sample to its
  nearest training image, over the same median for the test digits
  (memorization: copies of training images give 0, held-out digits ~1).

The baselines (baseline_sets) are drawn at the same n and class counts as a
set: real training digits, white q, the class template, the template plus
white q noise, and optionally a caller's q alone.
"""
import collections
import os
import warnings

import numpy as np
import scipy.linalg
import scipy.special

from gencnn.cli import UserError
from gencnn.protocols import MNIST_SCALE  # noqa: F401 (pixels -> LeNet's input units)
from gencnn.protocols import MNIST_MEAN, MNIST_STD

# The white q fitted to MNIST that the project has used so far (the training
# images' mean and marginal sd, tools/hmc_visualize.py's lenet-digits preset).
WHITE_Q_MEAN, WHITE_Q_STD = MNIST_MEAN, MNIST_STD
BACKGROUND_LEVEL = 0.05          # class mean below this: background pixel
REAL_POOL = 10000                # real digits come from the last this many training images
# Rows of the distance matrix per chunk: 500 x 60,000 float64 = 240 MB.
DISTANCE_CHUNK = 500
# The fewest images a set or the test digits may have: FID fits a covariance,
# which one image leaves undefined (NaN, on which scipy's sqrtm crawls).
MIN_SAMPLES = 2

MEASURES = ("n", "class_counts", "judge_accuracy", "inception_score", "lenet_fid",
            "pixels_out_of_range", "background_mean", "background_sd", "within_class_corr",
            "within_class_corr_chain_mean", "nearest_train_distance_ratio")

REAL, WHITE, TEMPLATE, TEMPLATE_NOISE = ("real training digits", "white q", "class template",
                                         "class template + q noise")


# ---------------------------------------------------------------------------
# The judge
# ---------------------------------------------------------------------------

class Judge(object):
    """A classifier net (a LeNet deploy prototxt and caffemodel) in TEST
    phase, run in batches of `batch`. Its `feature_blob` (ip1) is the blob as
    the net leaves it: in LeNet relu1 works in place, so these are the
    500 activations after the ReLU. `score_blob` (ip2) holds class scores."""

    def __init__(self, model, weights, batch=500, feature_blob="ip1", score_blob="ip2"):
        from gencnn import caffe_utils     # imports caffe
        if not os.path.isfile(weights):
            raise UserError("judge weights %s not found" % weights)
        self.model, self.weights, self.batch = model, weights, int(batch)
        self.net = caffe_utils.load_net(model, weights, num_chains=self.batch)
        for blob in (feature_blob, score_blob):
            if blob not in self.net.blobs:
                raise UserError("judge net %s has no blob %s" % (model, blob))
        self.feature_blob, self.score_blob = feature_blob, score_blob
        self.input_blob = self.net.inputs[0]
        self.input_shape = tuple(self.net.blobs[self.input_blob].data.shape[1:])
        self.num_classes = int(np.prod(self.net.blobs[score_blob].data.shape[1:]))

    def forward(self, x):
        """(features, class probabilities) of images x, float64."""
        x = np.asarray(x)
        if x.shape[1:] != self.input_shape:
            raise UserError("images of shape %s, the judge's input is %s"
                            % (x.shape[1:], self.input_shape))
        blob = self.net.blobs[self.input_blob]
        features, scores = [], []
        for start in range(0, len(x), self.batch):
            chunk = x[start:start + self.batch]
            if blob.data.shape[0] != len(chunk):
                blob.reshape(len(chunk), *self.input_shape)
                self.net.reshape()
            blob.data[...] = chunk
            self.net.forward()
            # copies: the next batch overwrites the blobs
            features.append(self.net.blobs[self.feature_blob].data.reshape(len(chunk), -1)
                            .astype(np.float64))
            scores.append(self.net.blobs[self.score_blob].data.reshape(len(chunk), -1)
                          .astype(np.float64))
        return np.concatenate(features), softmax(np.concatenate(scores))

    def features(self, x):
        return self.forward(x)[0]

    def probs(self, x):
        return self.forward(x)[1]


def softmax(scores):
    """Row-wise softmax, float64, stable."""
    shifted = np.asarray(scores, dtype=np.float64)
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------
# The measures, each a function of arrays
# ---------------------------------------------------------------------------

def judge_accuracy(probs, y):
    return float((np.asarray(probs).argmax(axis=1) == np.asarray(y)).mean())


def inception_score(probs):
    """exp(mean_x KL(p(y|x) || p(y))), p(y) the mean of p(y|x) over the set:
    the number of classes for confident, balanced predictions, 1 for
    predictions that do not depend on x."""
    probs = np.asarray(probs, dtype=np.float64)
    marginal = probs.mean(axis=0, keepdims=True)
    # xlogy: 0 log 0 = 0 (a class the judge never gives contributes nothing)
    kl = (scipy.special.xlogy(probs, probs) - scipy.special.xlogy(probs, marginal)).sum(axis=1)
    return float(np.exp(kl.mean()))


def check_count(n, what):
    """UserError unless `what` holds at least MIN_SAMPLES images."""
    if n < MIN_SAMPLES:
        raise UserError("%s holds %d image%s; FID's covariance needs at least %d"
                        % (what, n, "" if n == 1 else "s", MIN_SAMPLES))


def gaussian_fit(features):
    """(mean, covariance) of the rows of `features` (unbiased covariance)."""
    features = np.asarray(features, dtype=np.float64)
    check_count(len(features), "a set")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2,
    sigma2): |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^1/2),
    the square root by scipy.linalg.sqrtm, real part (the usual FID code:
    rounding makes a tiny imaginary part; a singular product gets 1e-6 added
    to the diagonals, as there)."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    diff = mu1 - mu2
    with warnings.catch_warnings():
        # A covariance of fewer samples than features is singular, and sqrtm
        # warns that its root "might be inaccurate"; on LeNet's ip1 at n = 200
        # it agrees with the exact symmetric form tr (S1^1/2 S2 S1^1/2)^1/2
        # to 1e-8 relative (tests/test_sample_quality.py checks the formula).
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
        if not np.all(np.isfinite(covmean)):
            offset = np.eye(len(sigma1)) * 1e-6
            covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2)
                 - 2 * np.trace(np.real(covmean)))


def lenet_fid(features, reference_fit):
    """Frechet distance of the judge features of a set to the reference's
    (mean, covariance), e.g. Reference.feature_fit."""
    return frechet_distance(*(gaussian_fit(features) + tuple(reference_fit)))


def pixels_out_of_range(x, low=0.0, high=1.0):
    x = np.asarray(x)
    return float(((x < low) | (x > high)).mean())


def background_stats(x, y, class_means, level=BACKGROUND_LEVEL):
    """(mean, sd) of the pixels of x where the class mean image of each
    sample's target class (class_means: {class: image}) is below `level`."""
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    masks = np.array([class_means[int(c)].ravel() < level for c in y])
    values = flat[masks]
    return float(values.mean()), float(values.std())


def _standardized_rows(a):
    """Rows centred and scaled to unit norm: their dot products are the
    Pearson correlations (a constant row correlates 0 with everything)."""
    a = a - a.mean(axis=1, keepdims=True)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def within_class_corr(x, y):
    """Mean pairwise Pearson correlation of the samples of each class
    (pixels flattened), averaged over the classes with >= 2 samples; None
    when no class has two."""
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y)
    per_class = []
    for c in np.unique(y):
        z = _standardized_rows(flat[y == c])
        k = len(z)
        if k < 2:
            continue
        corr = z.dot(z.T)
        per_class.append((corr.sum() - np.trace(corr)) / (k * (k - 1)))
    return float(np.mean(per_class)) if per_class else None


def nearest_distances(x, images, chunk=DISTANCE_CHUNK):
    """L2 distance of each row of x to its nearest row of `images` (both
    flattened), a chunk of x at a time so memory stays chunk x len(images)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    images = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    image_sq = (images ** 2).sum(axis=1)
    nearest = np.empty(len(x))
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk]
        sq = (part ** 2).sum(axis=1)[:, None] + image_sq[None, :] - 2 * part.dot(images.T)
        nearest[start:start + chunk] = np.sqrt(np.maximum(sq.min(axis=1), 0.0))
    return nearest


def nearest_train_distance_ratio(x, train_images, test_median):
    """Median distance of x to the nearest training image, over
    `test_median`, the same median for the test digits."""
    return float(np.median(nearest_distances(x, train_images)) / test_median)


# ---------------------------------------------------------------------------
# The reference data, and a whole set measured against it
# ---------------------------------------------------------------------------

class Reference(object):
    """What every set is measured against: the judge's features of the test
    digits (feature_fit for FID, test_error_pct of the judge), the training
    digits (class_means, nearest-distance pool, the real-digits baseline) and
    test_median, the median distance of a test digit to its nearest
    training image."""

    def __init__(self, judge, train_images, train_labels, test_images, test_labels,
                 bounds=(0.0, 1.0), background=True):
        # bounds: the box of valid images (input units); background: measure
        # the background of digits (a dark background is MNIST's)
        self.bounds, self.background = bounds, background
        self.train_images, self.train_labels = train_images, np.asarray(train_labels)
        self.test_n = len(test_images)
        features, probs = judge.forward(test_images)
        self.feature_fit = gaussian_fit(features)
        self.test_error_pct = 100.0 * (1.0 - judge_accuracy(probs, test_labels))
        self.class_means = {int(c): train_images[self.train_labels == c].mean(axis=0)
                            for c in np.unique(self.train_labels)}
        self.test_median = float(np.median(nearest_distances(test_images, train_images)))


def load_reference(judge, train_lmdb, test_lmdb, scale=MNIST_SCALE, mean_file=None):
    """The Reference of two LMDBs read as the judge's Data layer would:
    pixels times `scale`, minus the mean image of `mean_file` first if given
    (then the images are colour photos: no background measure)."""
    from gencnn.data.lmdb_io import lmdb_count     # imports caffe
    from gencnn.data.transform import InputTransform
    from gencnn.evaluation import load_mean_file
    check_count(lmdb_count(test_lmdb), "the test LMDB %s" % test_lmdb)
    mean = None if mean_file is None else load_mean_file(mean_file, judge.input_shape[0])
    transform = InputTransform(scale, mean)
    train, test = (transform.lmdb_images(path, input_shape=judge.input_shape,
                                         reader="the judge's input")
                   for path in (train_lmdb, test_lmdb))
    return Reference(judge, train[0], train[1], test[0], test[1], transform.bounds,
                     background=mean is None)


def check_labels(y, reference, what="y"):
    """UserError unless every label of y is a class of the training digits."""
    unknown = sorted(set(np.unique(y).tolist()) - set(reference.class_means))
    if unknown:
        raise UserError("%s: class %s is not a class of the training digits (%s)"
                        % (what, unknown[0], ", ".join(map(str, sorted(reference.class_means)))))


def measure_set(judge, reference, x, y, chain_mean=None):
    """Every measure of a set (x, y[, chain means]), as a dict in MEASURES
    order (within_class_corr_chain_mean only with chain_mean)."""
    x, y = np.asarray(x), np.asarray(y)
    features, probs = judge.forward(x)
    background_mean = background_sd = None
    if reference.background:
        background_mean, background_sd = background_stats(x, y, reference.class_means)
    measures = collections.OrderedDict([
        ("n", int(len(x))),
        ("class_counts", {str(c): int(k) for c, k in zip(*np.unique(y, return_counts=True))}),
        ("judge_accuracy", judge_accuracy(probs, y)),
        ("inception_score", inception_score(probs)),
        ("lenet_fid", lenet_fid(features, reference.feature_fit)),
        ("pixels_out_of_range", pixels_out_of_range(x, *reference.bounds)),
        ("background_mean", background_mean),
        ("background_sd", background_sd),
        ("within_class_corr", within_class_corr(x, y)),
    ])
    if chain_mean is not None:
        measures["within_class_corr_chain_mean"] = within_class_corr(chain_mean, y)
    measures["nearest_train_distance_ratio"] = nearest_train_distance_ratio(
        x, reference.train_images, reference.test_median)
    return measures


# ---------------------------------------------------------------------------
# Baselines at the same n and class counts as a set
# ---------------------------------------------------------------------------

def real_training_digits(train_images, train_labels, y, rng, pool=REAL_POOL):
    """Training images of the classes y (the same count per class, in y's
    order), drawn without replacement from the last `pool` training images:
    the end of the training set, away from the first images a q is usually
    fitted to."""
    start = max(len(train_images) - pool, 0)
    labels = np.asarray(train_labels)[start:]
    y = np.asarray(y)
    chosen = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        slots = np.flatnonzero(y == c)
        candidates = start + np.flatnonzero(labels == c)
        if len(candidates) < len(slots):
            raise UserError("real training digits: %d of class %d needed, the last %d training "
                            "images hold %d" % (len(slots), c, pool, len(candidates)))
        chosen[slots] = rng.choice(candidates, len(slots), replace=False)
    return train_images[chosen]


def white_q(shape, rng, mean=WHITE_Q_MEAN, std=WHITE_Q_STD):
    """Draws of the white q N(mean, std^2) per pixel."""
    return mean + std * rng.standard_normal(shape)


def class_template(class_means, y):
    """Each sample the mean training image of its class."""
    return np.array([class_means[int(c)] for c in y])


def class_template_noise(class_means, y, rng, std=WHITE_Q_STD):
    """The class template plus white q's noise N(0, std^2) per pixel."""
    template = class_template(class_means, y)
    return template + std * rng.standard_normal(template.shape)


# Each baseline draws from its own generator, RandomState(seed + offset), so
# adding or dropping one leaves the others' draws unchanged.
BASELINE_SEED_OFFSETS = {REAL: 0, WHITE: 1, TEMPLATE: 2, TEMPLATE_NOISE: 3}


def baseline_sets(reference, y, seed, white_mean=WHITE_Q_MEAN, white_std=WHITE_Q_STD,
                  real_pool=REAL_POOL, q_alone=None):
    """{name: (x, description)} of the baselines for target classes y:
    real training digits, white q, class template, class template + q noise,
    and, with q_alone = (name, draws of q), the first len(y) draws of that q
    (the caller's q, whatever builds it)."""
    n = len(y)
    shape = (n,) + reference.train_images.shape[1:]
    rng = lambda name: np.random.RandomState(seed + BASELINE_SEED_OFFSETS[name])  # noqa: E731
    sets = collections.OrderedDict()
    sets[REAL] = (real_training_digits(reference.train_images, reference.train_labels, y,
                                       rng(REAL), real_pool),
                  "random training images of the same classes among the last %d" % real_pool)
    sets[WHITE] = (white_q(shape, rng(WHITE), white_mean, white_std),
                   "N(%g, %g^2) per pixel" % (white_mean, white_std))
    sets[TEMPLATE] = (class_template(reference.class_means, y),
                      "the mean training image of the class")
    sets[TEMPLATE_NOISE] = (class_template_noise(reference.class_means, y, rng(TEMPLATE_NOISE),
                                                 white_std),
                            "the class template + N(0, %g^2) per pixel" % white_std)
    if q_alone is not None:
        name, draws = q_alone
        if len(draws) < n:
            raise UserError("%s: %d draws of q, %d needed (the set's n)" % (name, len(draws), n))
        sets[name] = (np.asarray(draws[:n]), "the first %d draws of the given q" % n)
    return sets


# ---------------------------------------------------------------------------
# Sample files, the report, and its recomputation
# ---------------------------------------------------------------------------

def npz_arrays(path, what):
    """{name: array} of an .npz (no pickles); one UserError naming `what`."""
    import zipfile
    if not os.path.isfile(path):
        raise UserError("%s: %s not found" % (what, path))
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise UserError("%s: %s is not a readable .npz (%s)" % (what, path, err))


def image_array(arrays, key, input_shape, what, role):
    """arrays[key] as float64, checked: n x input_shape finite numbers."""
    if key not in arrays:
        raise UserError('%s: no "%s" (%s)' % (what, key, role))
    x = arrays[key]
    if x.ndim != 4 or x.shape[1:] != tuple(input_shape) or not np.issubdtype(x.dtype, np.number):
        raise UserError('%s: "%s" has shape %s, expected n x %s numbers'
                        % (what, key, x.shape, " x ".join(map(str, input_shape))))
    if not np.all(np.isfinite(x)):
        raise UserError('%s: "%s" holds non-finite values' % (what, key))
    return x.astype(np.float64)


def read_sample_set(path, input_shape, num_classes, what):
    """{"x", "y", "chain_mean" (or None), "meta" (dict)} of a samples .npz:
    "x" n x C x H x W floats in the judge's input units, "y" n integer
    classes of the judge, optional "chain_mean" like x, optional "meta" a
    JSON object string. Every fault is one UserError naming `what`."""
    import json
    arrays = npz_arrays(path, what)
    x = image_array(arrays, "x", input_shape, what, "the samples")
    check_count(len(x), what)
    if "y" not in arrays:
        raise UserError('%s: no "y" (the target classes)' % what)
    y = arrays["y"]
    if y.ndim != 1 or len(y) != len(x):
        raise UserError('%s: "x" holds %d samples, "y" %s labels' % (
            what, len(x), len(y) if y.ndim == 1 else "shape %s of" % (y.shape,)))
    if not np.issubdtype(y.dtype, np.number) or np.any(y != np.round(y)):
        raise UserError('%s: "y" must hold integer classes' % what)
    bad = (y < 0) | (y >= num_classes)
    if np.any(bad):
        raise UserError('%s: unknown class label %g in "y" (the judge has classes 0..%d)'
                        % (what, y[bad][0], num_classes - 1))
    chain_mean = None
    if "chain_mean" in arrays:
        chain_mean = image_array(arrays, "chain_mean", input_shape, what, "")
        if len(chain_mean) != len(x):
            raise UserError('%s: "chain_mean" holds %d images, "x" %d'
                            % (what, len(chain_mean), len(x)))
    meta = {}
    if "meta" in arrays:
        try:
            meta = json.loads(str(arrays["meta"]))
        except ValueError:
            meta = None
        if not isinstance(meta, dict):
            raise UserError('%s: "meta" is not a JSON object' % what)
        clash = sorted(set(meta) & (set(MEASURES) | {"samples"}))
        if clash:
            raise UserError('%s: "meta" key %s is a measure of the report' % (what, clash[0]))
    return {"x": x, "y": y.astype(np.int64), "chain_mean": chain_mean, "meta": meta}
