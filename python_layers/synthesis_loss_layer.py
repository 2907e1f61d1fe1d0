"""Learning from synthesized images: the paper's section 5 future work.

The model is eq. 1, p_y(x; w) = exp(f_y(x; w)) q(x) / Z_y(w). Its
log-likelihood gradient for an observed pair (x_i, y_i) is

    d log p_{y_i}(x_i) / dw = df_{y_i}(x_i)/dw - E_{p_{y_i}}[ df_{y_i}(x)/dw ],

and section 5 proposes to estimate the expectation "by simple average over
synthetic images generated from the current distribution". With a batch of N
observed images x_i (labels y_i) and M synthesized images x~_m drawn from
p_{y_m} (labels y_m, e.g. by HMC, gencnn/generative_learning.py), the loss
whose gradient is that estimate, plus an energy penalty, is

    l = -(1/N) sum_i f_{y_i}(x_i) + (1/M) sum_m f_{y_m}(x~_m)
        + alpha * (1/(N+M)) sum_{j over both halves} f_{y_j}(x_j)^2.

The penalty keeps the scores finite while the sampler lags behind the model
(without it the net can separate data from samples by scaling f up without
bound; with it the gap mean f(data) - mean f(samples) is capped near 1/alpha).
Its gradient, for row j of the N + M rows (observed rows first):

    dl/df_c(x_j) = 1{c = y_j} [ -1/N (j observed) or +1/M (j synthesized)
                                + 2 alpha f_{y_j}(x_j) / (N + M) ],

zero for every other class c. The synthesized rows are constants of the
model (their gradient is not propagated through the sampler), as in
contrastive divergence.

Optional second top: the energy gap, mean f_y over the observed rows minus
mean f_y over the synthesized rows (0 when the samples are as likely under
the model as the data; it grows while the sampler lags behind).

Usage (prototxt; the first `observed` rows of the batch are observed images,
the rest synthesized):

    layer {
      name: "synthesis_loss" type: "Python"
      bottom: "ip2" bottom: "label"
      top: "synthesis_loss"        # and optionally: top: "energy_gap"
      python_param { module: "synthesis_loss_layer" layer: "SynthesisLossLayer"
                     param_str: '{"observed": 64, "alpha": 0.001}' }
      loss_weight: 1               # (and loss_weight: 0 for the gap)
    }

param_str (JSON): "observed" (required) N, the number of observed rows,
1 <= N < batch; "alpha" (default 0.001, >= 0) the energy penalty.
"""
import json

import numpy as np

# The checks both loss layers share (python_layers/ is on Caffe's PYTHONPATH).
from generative_loss_layer import check_bottoms, check_labels

try:
    import caffe
    _Layer = caffe.Layer
except ImportError:  # the pure-numpy functions below stay importable
    caffe = None
    _Layer = object

DEFAULT_ALPHA = 0.001


def synthesis_loss(scores, labels, observed, alpha=DEFAULT_ALPHA):
    """Loss, gradient dl/dscores and energy gap for an (N+M) x C score matrix
    whose first `observed` = N rows are observed images, the rest synthesized.

    Pure numpy (float64) so it can be used and tested without Caffe.
    """
    scores = np.asarray(scores, dtype=np.float64)
    total, num_classes = scores.shape
    labels = check_labels(labels, num_classes, "SynthesisLossLayer")
    if labels.size != total:
        raise ValueError("SynthesisLossLayer: %d scores rows but %d labels" % (total, labels.size))
    n = int(observed)
    m = total - n
    if not 1 <= n < total:
        raise ValueError("SynthesisLossLayer: observed must be in [1, %d), got %d" % (total, n))
    f = scores[np.arange(total), labels]          # f_{y_j}(x_j)
    sign = np.concatenate([np.full(n, -1.0 / n), np.full(m, 1.0 / m)])
    loss = float(np.dot(sign, f) + alpha * np.mean(f ** 2))
    grad = np.zeros_like(scores)
    grad[np.arange(total), labels] = sign + 2.0 * alpha * f / total
    gap = float(f[:n].mean() - f[n:].mean())
    return loss, grad, gap


def parse_params(param_str):
    """{"observed": N, "alpha": a} from the layer's param_str, validated."""
    try:
        params = json.loads(param_str) if param_str.strip() else {}
    except ValueError as err:
        raise ValueError("SynthesisLossLayer: param_str is not JSON (%s): %r" % (err, param_str))
    if not isinstance(params, dict):
        raise ValueError("SynthesisLossLayer: param_str must be a JSON object, got %r" % param_str)
    unknown = sorted(set(params) - {"observed", "alpha"})
    if unknown:
        raise ValueError("SynthesisLossLayer: unknown param_str key(s) %s (known: observed, alpha)"
                         % ", ".join(unknown))
    observed = params.get("observed")
    if isinstance(observed, bool) or not isinstance(observed, int) or observed < 1:
        raise ValueError("SynthesisLossLayer: param_str needs \"observed\": N, a positive "
                         "integer (the number of observed rows), got %r" % (observed,))
    alpha = params.get("alpha", DEFAULT_ALPHA)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or \
            not np.isfinite(alpha) or alpha < 0:
        raise ValueError("SynthesisLossLayer: \"alpha\" must be a number >= 0, got %r" % (alpha,))
    return observed, float(alpha)


class SynthesisLossLayer(_Layer):
    """Caffe Python layer: bottoms (scores (N+M) x C [x 1 x 1], labels N+M),
    tops (loss[, energy gap]). Backward propagates the gradient above times
    loss_weight to the scores only."""

    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise ValueError("SynthesisLossLayer needs two bottoms (scores, labels), got %d"
                             % len(bottom))
        if len(top) not in (1, 2):
            raise ValueError("SynthesisLossLayer has one or two tops (loss[, energy gap]), "
                             "got %d" % len(top))
        self.observed, self.alpha = parse_params(self.param_str)

    def reshape(self, bottom, top):
        scores, labels = bottom[0], bottom[1]
        check_bottoms(scores, labels, "SynthesisLossLayer")
        if not self.observed < scores.num:
            raise ValueError("SynthesisLossLayer: observed %d leaves no synthesized rows in a "
                             "batch of %d" % (self.observed, scores.num))
        for k in range(len(top)):
            top[k].reshape()
        self._grad = np.zeros((scores.num, scores.channels), dtype=np.float64)

    def forward(self, bottom, top):
        scores = bottom[0].data.reshape(bottom[0].num, -1)
        loss, self._grad, gap = synthesis_loss(scores, bottom[1].data, self.observed, self.alpha)
        top[0].data[...] = loss
        if len(top) > 1:
            top[1].data[...] = gap

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            loss_weight = top[0].diff.flat[0]
            bottom[0].diff[...] = (loss_weight * self._grad).reshape(bottom[0].diff.shape)
