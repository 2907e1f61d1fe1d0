"""Run Caffe's own command-line tools (convert_imageset, compute_image_mean).

Found as $CAFFE_BIN/<tool> when env.sh is sourced, else on PATH, like
gencnn.config.caffe_binary() finds `caffe`.
"""
import os
import shutil
import subprocess

from gencnn.cli import UserError


class ToolError(UserError, RuntimeError):
    """A Caffe tool is missing or failed; the message is one line (a
    UserError: the environment or the data, not a bug, is to blame)."""


def tool_path(name):
    caffe_bin = os.environ.get("CAFFE_BIN")
    if caffe_bin and os.path.exists(os.path.join(caffe_bin, name)):
        return os.path.join(caffe_bin, name)
    found = shutil.which(name)
    if found is None:
        raise ToolError("Caffe tool %s not found: source env.sh (or put Caffe's tools on PATH)"
                        % name)
    return found


def run_tool(name, args, log_path=None):
    """Run a Caffe tool; its glog output goes to `log_path` (or is kept in
    memory). Raises ToolError with the tool's last log line on failure."""
    env = dict(os.environ, GLOG_logtostderr="1")
    cmd = [tool_path(name)] + [str(a) for a in args]
    if log_path:
        with open(log_path, "w") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        with open(log_path) as log:
            lines = log.read().splitlines()
    else:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=env, universal_newlines=True)
        lines = proc.stdout.splitlines()
    if proc.returncode != 0:
        last = next((l for l in reversed(lines) if l.strip()), "(no output)")
        raise ToolError("%s failed (exit %d): %s" % (name, proc.returncode, last.strip()))
    return lines


def compute_image_mean(lmdb_path, mean_path, log_path=None):
    """Mean image of an LMDB with Caffe's compute_image_mean, written under a
    temporary name and renamed, so `mean_path` is complete or absent."""
    tmp = mean_path + ".tmp"
    if os.path.exists(tmp):
        os.remove(tmp)
    try:
        run_tool("compute_image_mean", ["-backend", "lmdb", lmdb_path, tmp], log_path)
        os.replace(tmp, mean_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def finish_dataset(train_lmdb, mean_path, snapshots, log_path=None):
    """The last step of every data tool: the training set's mean image (what
    the nets' transform_param subtracts) and the solvers' snapshot folder,
    without which `caffe train` aborts."""
    compute_image_mean(train_lmdb, mean_path, log_path)
    print("wrote %s" % mean_path)
    os.makedirs(snapshots, exist_ok=True)
