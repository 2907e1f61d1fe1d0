"""A pytest plugin that measures how close each float comparison of the
tests comes to its tolerance (tolerances stated from measured bounds). It wraps numpy.testing.assert_allclose and numpy.allclose, records
for every call site (file:line) the largest |a - b| and the largest
|a - b| / (atol + rtol |b|) (>= 1 fails), and prints the worst per site at
the end. Run it on each Caffe, e.g.

  . ./env.sh && python -m pytest -q -p bench.allclose_margins tests/test_hmc.py

(from the repository root). The tests' own results are unchanged.
"""
import collections
import os
import sys

import numpy as np

_records = collections.defaultdict(lambda: [0.0, 0.0, 0, ""])
_original_assert, _original_allclose = np.testing.assert_allclose, np.allclose


def _record(actual, desired, rtol, atol):
    frame = sys._getframe(2)
    site = "%s:%d" % (os.path.relpath(frame.f_code.co_filename), frame.f_lineno)
    try:
        a = np.asarray(actual, dtype=np.float64)
        b = np.broadcast_to(np.asarray(desired, dtype=np.float64), a.shape)
        finite = np.isfinite(a) & np.isfinite(b)
        diff = np.abs(a - b)[finite]
        scale = (atol + rtol * np.abs(b))[finite]
        worst_abs = float(diff.max()) if diff.size else 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(diff == 0, 0.0, diff / scale)
        worst_ratio = float(ratio.max()) if ratio.size else 0.0
    except (TypeError, ValueError):
        return
    rec = _records[site]
    rec[0] = max(rec[0], worst_abs)
    rec[1] = max(rec[1], worst_ratio)
    rec[2] += 1
    rec[3] = "rtol=%g atol=%g" % (rtol, atol)


def _assert_allclose(actual, desired, rtol=1e-7, atol=0, *args, **kwargs):
    _record(actual, desired, rtol, atol)
    return _original_assert(actual, desired, rtol, atol, *args, **kwargs)


def _allclose(a, b, rtol=1e-5, atol=1e-8, equal_nan=False):
    _record(a, b, rtol, atol)
    return _original_allclose(a, b, rtol, atol, equal_nan)


np.testing.assert_allclose = _assert_allclose
np.allclose = _allclose


def pytest_terminal_summary(terminalreporter):
    write = terminalreporter.write_line
    write("allclose margins (worst |a-b|, worst |a-b|/(atol+rtol|b|), calls, tolerance):")
    for site in sorted(_records):
        worst_abs, worst_ratio, calls, tol = _records[site]
        write("  %-40s %.3g  %.3g  %d  %s" % (site, worst_abs, worst_ratio, calls, tol))
