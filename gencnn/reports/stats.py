"""Statistics of results over seeds: mean, sd and 95 % t interval; Welch's
t-test."""
import math

import numpy as np


def mean_sd_ci(values):
    """(mean, sd, half-width of the 95% t interval) of the finished values."""
    from scipy import stats
    done = np.asarray([v for v in values if v is not None], np.float64)
    if done.size == 0:
        return None, None, None
    if done.size == 1:
        return float(done[0]), None, None
    sd = float(done.std(ddof=1))
    half = float(stats.t.ppf(0.975, done.size - 1) * sd / math.sqrt(done.size))
    return float(done.mean()), sd, half


def welch_p(a, b):
    """Two-sided p of Welch's t-test (unequal variances), None below 2 + 2 runs."""
    from scipy import stats
    a = [v for v in a if v is not None]
    b = [v for v in b if v is not None]
    if len(a) < 2 or len(b) < 2:
        return None
    if np.std(a) == 0 and np.std(b) == 0:
        return 1.0 if np.mean(a) == np.mean(b) else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)
