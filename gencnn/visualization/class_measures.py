"""Measures of class samples of an ImageNet net (input units: BGR pixels
minus the per-channel mean, chains x 3 x H x W).

- target_probability: the net's softmax probability of each chain's class.
- HELD_OUT: transforms that are not in the score's set S (a horizontal
  flip, rescales by 0.8 and 1.25, a 10 degree rotation, a 24-pixel shift,
  JPEG at quality 75), each applied to the image in pixel space (borders
  reflected, not wrapped), then the probability again: does the picture
  stay its class when moved in a way the sampler never saw?
- diversity: mean pairwise cosine distance of a mid-layer's features
  between the chains of one class (a set of near copies scores ~0; the 16
  photos of 16 classes are the reference), of its spatially averaged
  channels ("diversity": what is there) and of its whole maps
  ("diversity_maps": what is where).
- power_slope: the slope of the radially averaged power spectrum against
  frequency on log-log axes (photos: about -2.7, white noise: 0).
- out_of_box: the fraction of pixel values outside 0..255.
"""
import numpy as np


def to_image(x, mean):
    """C x H x W input units -> H x W x C float32 BGR pixels."""
    return (np.asarray(x, dtype=np.float64) + np.asarray(mean, dtype=np.float64)
            .reshape(-1, 1, 1)).transpose(1, 2, 0).astype(np.float32)


def from_image(image, mean):
    return image.transpose(2, 0, 1).astype(np.float64) - np.asarray(
        mean, dtype=np.float64).reshape(-1, 1, 1)


def _affine(image, matrix):
    import cv2
    h, w = image.shape[:2]
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def _zoom(scale):
    import cv2

    def apply(image):
        h, w = image.shape[:2]
        return _affine(image, cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), 0, scale))
    return apply


def _rotate(degrees):
    import cv2

    def apply(image):
        h, w = image.shape[:2]
        return _affine(image, cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0),
                                                      degrees, 1.0))
    return apply


def _shift(dx):
    def apply(image):
        return _affine(image, np.float32([[1, 0, dx], [0, 1, 0]]))
    return apply


def _jpeg(quality):
    import cv2

    def apply(image):
        ok, data = cv2.imencode(".jpg", np.clip(np.round(image), 0, 255).astype(np.uint8),
                                [cv2.IMWRITE_JPEG_QUALITY, quality])
        return cv2.imdecode(data, cv2.IMREAD_COLOR).astype(np.float32)
    return apply


# name -> pixel-space transform of an H x W x 3 BGR float image
HELD_OUT = (
    ("flip", lambda image: image[:, ::-1].copy()),
    ("scale_0.8", _zoom(0.8)),
    ("scale_1.25", _zoom(1.25)),
    ("rotate_10", _rotate(10.0)),
    ("shift_24", _shift(24)),
    ("jpeg_75", _jpeg(75)),
)


def held_out(x, mean, name):
    """x (N x C x H x W input units) under the held-out transform `name`."""
    apply = dict(HELD_OUT)[name]
    return np.stack([from_image(apply(to_image(row, mean)), mean) for row in x])


class Judge(object):
    """The class scores and mid-layer features of a deploy net, in batches:
    probabilities(x) -> N x classes softmax probabilities of `score_blob`,
    features(x) -> N x channels spatial means of `feature_blob`,
    maps(x) -> N x (channels x H x W) its whole maps."""

    def __init__(self, net, score_blob, feature_blob, batch=8):
        self.net, self.score_blob, self.feature_blob = net, score_blob, feature_blob
        self.input_blob = net.inputs[0]
        self.batch = int(batch)
        self.net.blobs[self.input_blob].reshape(
            self.batch, *self.net.blobs[self.input_blob].data.shape[1:])
        self.net.reshape()
        names = list(net._layer_names)
        self._last = max(i for i, name in enumerate(names)
                         if score_blob in net.top_names[name] or feature_blob in
                         net.top_names[name])
        self._end = names[self._last]

    def _run(self, x, maps=False):
        scores, features = [], []
        for start in range(0, len(x), self.batch):
            rows = x[start:start + self.batch]
            data = np.zeros(self.net.blobs[self.input_blob].data.shape, dtype=np.float32)
            data[:len(rows)] = rows
            self.net.blobs[self.input_blob].data[...] = data
            self.net.forward(end=self._end)
            scores.append(self.net.blobs[self.score_blob].data.reshape(self.batch, -1)
                          [:len(rows)].astype(np.float64))
            feature = self.net.blobs[self.feature_blob].data
            feature = feature.reshape(self.batch, feature.shape[1], -1)
            features.append((feature.reshape(self.batch, -1) if maps else feature.mean(axis=2))
                            [:len(rows)].astype(np.float64))
        return np.concatenate(scores), np.concatenate(features)

    def scores(self, x):
        return self._run(x)[0]

    def probabilities(self, x):
        scores, _ = self._run(x)
        scores = scores - scores.max(axis=1, keepdims=True)
        e = np.exp(scores)
        return e / e.sum(axis=1, keepdims=True)

    def features(self, x):
        return self._run(x)[1]

    def maps(self, x):
        return self._run(x, maps=True)[1]


def target_probability(judge, x, y):
    return judge.probabilities(np.asarray(x))[np.arange(len(y)), np.asarray(y)]


def diversity(features, y=None):
    """Mean pairwise cosine distance (1 - cos) between feature rows of the
    same class (y), averaged over classes; y None: over all pairs."""
    f = np.asarray(features, dtype=np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    groups = [np.arange(len(f))] if y is None else [np.flatnonzero(np.asarray(y) == c)
                                                     for c in np.unique(y)]
    values = []
    for rows in groups:
        if len(rows) < 2:
            continue
        cos = f[rows].dot(f[rows].T)
        upper = np.triu_indices(len(rows), 1)
        values.append(float(np.mean(1 - cos[upper])))
    if not values:
        raise ValueError("diversity needs at least two samples of a class")
    return float(np.mean(values))


def power_slope(images):
    """Slope of log radially averaged power against log frequency, per image
    and channel of `images` (N x C x H x W; a square centre crop, Hann
    window); (mean, std) over them."""
    images = np.asarray(images, dtype=np.float64)
    side = min(images.shape[-2:])
    images = images[..., :side, :side]
    window = np.outer(np.hanning(side), np.hanning(side))
    k = np.fft.fftfreq(side) * side
    radius = np.sqrt(k.reshape(-1, 1) ** 2 + k.reshape(1, -1) ** 2)
    lo, hi = (4, 90) if side >= 100 else (2, max(3, int(0.4 * side)))
    bins = np.arange(lo, hi + 1)
    rings = [(radius >= b - 0.5) & (radius < b + 0.5) for b in bins]
    slopes = []
    for image in images.reshape(-1, side, side):
        power = np.abs(np.fft.fft2((image - image.mean()) * window)) ** 2
        mean_power = np.array([power[ring].mean() for ring in rings])
        slopes.append(np.polyfit(np.log(bins), np.log(mean_power), 1)[0])
    return float(np.mean(slopes)), float(np.std(slopes))


def out_of_box(x, mean):
    pixels = np.asarray(x, dtype=np.float64) + np.asarray(mean, dtype=np.float64).reshape(
        -1, 1, 1)
    return float(((pixels < -0.5) | (pixels > 255.5)).mean())


def measure(judge, x, y, mean):
    """Every measure of one sample set: a dict of plain numbers."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=int)
    probability = target_probability(judge, x, y)
    result = {"n": int(len(x)), "classes": sorted(int(c) for c in np.unique(y)),
              "p_target": float(probability.mean()),
              "p_target_per_class": {str(int(c)): float(probability[y == c].mean())
                                     for c in np.unique(y)},
              "top1_is_target": float((judge.probabilities(x).argmax(axis=1) == y).mean())}
    held = {name: float(target_probability(judge, held_out(x, mean, name), y).mean())
            for name, _ in HELD_OUT}
    result["p_target_held_out"] = held
    result["p_target_held_out_mean"] = float(np.mean(list(held.values())))
    if len(x) > 1 and any((y == c).sum() > 1 for c in np.unique(y)):
        result["diversity"] = diversity(judge.features(x), y)
        result["diversity_maps"] = diversity(judge.maps(x), y)
    slope = power_slope(x)
    result["power_slope"], result["power_slope_sd"] = slope
    result["out_of_box"] = out_of_box(x, mean)
    return result
