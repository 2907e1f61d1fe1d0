"""Generative loss layer of Dai, Lu & Wu (ICLR 2015), section 3.3, eq. 10.

The generative model (eq. 1) is p_y(x) = exp(f_y(x)) q(x) / Z_y. With the
batch {x_j} standing in for samples of the reference q(x), the batch estimate
of the negative generative log-likelihood, averaged over the batch, is

    l = -(1/N) sum_i [ f_{y_i}(x_i) - log( (1/N) sum_k exp f_{y_i}(x_k) ) ].

So for each example i the softmax runs *across the batch* over the true-class
column f_{y_i}(x_.), where SoftmaxWithLoss runs across the classes of row i.
Its gradient (eq. 10, with the sign flipped for a loss and summed over i) is

    dl/df_c(x_j) = (1/N) [ n_c * W_c(j) - 1{y_j = c} ],
    W_c(j) = exp f_c(x_j) / sum_k exp f_c(x_k),

where n_c is the number of examples of class c in the batch; columns of
classes absent from the batch get zero gradient. Each column's gradient sums
to zero, so adding a constant per class (the paper's alpha_y, i.e. the last
layer's bias) changes neither loss nor gradient.

Optional second top: the effective sample size of the importance weights W_c
of section 3.2, as a fraction of the batch,

    ess = mean over classes c present in the batch of 1 / (N * sum_j W_c(j)^2),

which is 1 when the weights are uniform (p_y close to q) and 1/N when one
image takes all the weight. The paper suggests switching from generative to
discriminative training once it dwindles.

Usage (prototxt):

    layer {
      name: "loss" type: "Python"
      bottom: "ip2" bottom: "label"
      top: "loss"           # and optionally: top: "ess"
      python_param { module: "generative_loss_layer" layer: "GenerativeLossLayer" }
      loss_weight: 1        # (and loss_weight: 0 for "ess" if given)
    }
"""
import json
import sys

import numpy as np

try:
    import caffe
    _Layer = caffe.Layer
except ImportError:  # the pure-numpy functions below stay importable
    caffe = None
    _Layer = object


def _batch_softmax(scores):
    """Column-wise softmax over the batch axis (axis 0), in float64, stable."""
    shifted = scores - scores.max(axis=0, keepdims=True)
    weights = np.exp(shifted)
    weights /= weights.sum(axis=0, keepdims=True)
    return weights


def check_labels(labels, num_classes, layer="GenerativeLossLayer"):
    """Labels as int64, or ValueError: integers in [0, num_classes)."""
    labels = np.asarray(labels, dtype=np.float64).ravel()
    if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
        raise ValueError("%s: labels must be integers, got %r"
                         % (layer, labels[~(labels == np.round(labels))][:5].tolist()))
    labels = labels.astype(np.int64)
    bad = (labels < 0) | (labels >= num_classes)
    if np.any(bad):
        raise ValueError("%s: label %d out of range [0, %d)" % (layer, labels[bad][0],
                                                               num_classes))
    return labels


def check_bottoms(scores, labels, layer):
    """Blob shapes at reshape: N x C scores (or N x C x 1 x 1), N labels."""
    if scores.data.ndim < 2 or scores.count != scores.num * scores.channels:
        raise ValueError("%s: scores must be N x C (or N x C x 1 x 1), got shape %s"
                         % (layer, scores.data.shape,))
    if labels.count != scores.num:
        raise ValueError("%s: %d scores rows but %d labels" % (layer, scores.num, labels.count))


def generative_loss(scores, labels):
    """Loss, gradient dl/dscores and ESS fraction for an N x C score matrix.

    Pure numpy (float64) so it can be used and tested without Caffe.
    """
    scores = np.asarray(scores, dtype=np.float64)
    num, num_classes = scores.shape
    labels = check_labels(labels, num_classes)
    rows = np.arange(num)

    present = np.unique(labels)
    col = scores[:, present]                       # N x P, P = classes present
    col_max = col.max(axis=0)
    log_mean_exp = col_max + np.log(np.exp(col - col_max).mean(axis=0))
    where = np.searchsorted(present, labels)       # column of y_i within `present`
    loss = -np.mean(scores[rows, labels] - log_mean_exp[where])

    weights = _batch_softmax(col)                  # W_c(j) for each present c
    counts = np.bincount(where, minlength=present.size)
    grad = np.zeros_like(scores)
    grad[:, present] = counts * weights
    grad[rows, labels] -= 1.0
    grad /= num

    ess = np.mean(1.0 / (num * np.sum(weights ** 2, axis=0)))
    return loss, grad, ess


class GenerativeLossLayer(_Layer):
    """Caffe Python layer: bottoms (scores N x C [x 1 x 1], labels N), tops
    (loss[, ess]). Backward propagates eq. 10 times loss_weight to the scores
    only."""

    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise ValueError("GenerativeLossLayer needs two bottoms (scores, labels), "
                             "got %d" % len(bottom))
        if len(top) not in (1, 2):
            raise ValueError("GenerativeLossLayer has one or two tops (loss[, ess]), "
                             "got %d" % len(top))
        params = json.loads(self.param_str) if self.param_str.strip() else {}
        if params:
            raise ValueError("GenerativeLossLayer takes no param_str, got %r"
                             % self.param_str)

    def reshape(self, bottom, top):
        # Index the blob vectors: pycaffe cannot iterate or unpack them.
        scores, labels = bottom[0], bottom[1]
        check_bottoms(scores, labels, "GenerativeLossLayer")
        if scores.num == 1:
            self._single_example()
        for k in range(len(top)):
            top[k].reshape()  # scalars, as Caffe's own loss layers
        self._grad = np.zeros((scores.num, scores.channels), dtype=np.float64)

    def _single_example(self):
        """A batch of one is its own reference q: loss 0 and gradient 0
        whatever the scores. Training on it would silently learn nothing, so
        TRAIN refuses; TEST (e.g. scoring one image at a time) warns once."""
        message = ("GenerativeLossLayer: batch size 1: the batch is its own reference "
                   "distribution, so loss and gradient are always 0")
        if caffe is not None and getattr(self, "phase", None) == caffe.TRAIN:
            raise ValueError(message + "; use a batch of at least 2 (the paper: 64)")
        if not getattr(self, "_warned", False):
            self._warned = True
            print("warning: %s (TEST phase: reported as 0)" % message, file=sys.stderr)

    def forward(self, bottom, top):
        scores = bottom[0].data.reshape(bottom[0].num, -1)
        loss, self._grad, ess = generative_loss(scores, bottom[1].data)
        top[0].data[...] = loss
        if len(top) > 1:
            top[1].data[...] = ess

    def backward(self, top, propagate_down, bottom):
        # Labels get no gradient (propagate_down[1] may still be set when the
        # net uses force_backward: Python layers allow it on every bottom).
        if propagate_down[0]:
            loss_weight = top[0].diff.flat[0]
            bottom[0].diff[...] = (loss_weight * self._grad).reshape(bottom[0].diff.shape)
