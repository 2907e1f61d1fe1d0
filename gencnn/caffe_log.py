"""Parse the glog output of `caffe train` (BVLC Caffe 1.0 format)."""
import re

# "Iteration 100 (12.3 iter/s, 8.1s/100 iters), loss = 0.2345"  (1.0)
# "Iteration 100, loss = 0.2345"                                  (older)
_TRAIN_LOSS = re.compile(r"Iteration (\d+)(?: \([^)]*\))?, loss = ([-+0-9.eEnaif]+)")
# "Iteration 500, Testing net (#0)" then "    Test net output #0: accuracy = 0.98"
_TEST_START = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)")
_TEST_OUTPUT = re.compile(r"Test net output #\d+: (\S+) = ([-+0-9.eEnaif]+)")


def train_losses(text):
    """[(iteration, smoothed loss)] in log order."""
    return [(int(it), float(loss)) for it, loss in _TRAIN_LOSS.findall(text)]


def test_outputs(text):
    """[(iteration, {output name: value})] for test net #0, in log order."""
    results, current = [], None
    for line in text.splitlines():
        start = _TEST_START.search(line)
        if start:
            current = {} if start.group(2) == "0" else None
            if current is not None:
                results.append((int(start.group(1)), current))
            continue
        out = _TEST_OUTPUT.search(line)
        if out and current is not None:
            current[out.group(1)] = float(out.group(2))
    return results
