"""Outputs written under a temporary name of their own: two
writers of one output both finish, and the output is one writer's complete
copy. Each test makes the two writers overlap for certain with a barrier
(the race once hit by chance: two get_mnist.py runs into one --out)."""
import multiprocessing
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from gencnn import files
from gencnn.data import lmdb_io

FORK = multiprocessing.get_context("fork")


def _write_lmdb_meeting_halfway(path, barrier, value, count):
    def examples():
        for i in range(count):
            if i == count // 2:
                barrier.wait(timeout=60)       # both writers are mid-way
            yield np.full((1, 4, 4), value, np.uint8), i
    lmdb_io.write_lmdb(path, examples(), map_size=1 << 24, commit_every=7)


def _write_atomic_meeting_before_rename(path, barrier, text):
    real_replace = os.replace

    def replace(src, dst):
        barrier.wait(timeout=60)               # both temporaries are written
        real_replace(src, dst)
    os.replace = replace                       # in this child process only
    files.write_atomic(path, text)


def run_two(target, args_a, args_b):
    barrier = FORK.Barrier(2)
    procs = [FORK.Process(target=target, args=args[:1] + (barrier,) + args[1:])
             for args in (args_a, args_b)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    return [proc.exitcode for proc in procs]


def leftovers(folder):
    return [name for name in os.listdir(folder) if ".tmp" in name]


def test_two_lmdb_writers_of_one_path_both_finish(tmp_path):
    path = str(tmp_path / "db_lmdb")
    assert run_two(_write_lmdb_meeting_halfway, (path, 1, 50), (path, 2, 50)) == [0, 0]
    entries = list(lmdb_io.read_lmdb(path))
    assert [label for _, label in entries] == list(range(50))
    values = {int(image.max()) for image, _ in entries} | {int(image.min())
                                                           for image, _ in entries}
    assert values in ({1}, {2})                # one writer's copy, not a mix
    assert leftovers(str(tmp_path)) == []


def test_two_write_atomic_writers_of_one_file_both_finish(tmp_path):
    path = str(tmp_path / "out.json")
    texts = ("a" * 100000, "b" * 50)
    assert run_two(_write_atomic_meeting_before_rename, (path, texts[0]),
                   (path, texts[1])) == [0, 0]
    assert open(path).read() in texts
    assert leftovers(str(tmp_path)) == []


def test_write_atomic_keeps_the_umask_permissions(tmp_path):
    path = str(tmp_path / "f.txt")
    files.write_atomic(path, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_a_killed_writers_temporary_is_removed_a_live_ones_kept(tmp_path):
    path = str(tmp_path / "db_lmdb")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = "%s.%d-0123abcd.tmp" % (path, dead.pid)
    live = "%s.%d-0123abcd.tmp" % (path, os.getppid())
    for folder in (stale, live):
        os.makedirs(folder)
    lmdb_io.write_lmdb(path, [(np.zeros((1, 2, 2), np.uint8), 0)], map_size=1 << 20)
    assert not os.path.exists(stale) and os.path.isdir(live)


@pytest.mark.slow
def test_two_get_mnist_runs_into_one_out(shared_dir, tmp_path):
    """That case end to end: both runs succeed, the LMDBs are whole."""
    out = str(tmp_path / "mnist")
    cmd = [sys.executable, os.path.join(REPO, "tools", "get_mnist.py"), "--from",
           os.path.join(shared_dir, "data", "mnist"), "--out", out,
           "--train-limit", "3000", "--test-limit", "500"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True) for _ in range(2)]
    results = [proc.communicate(timeout=300) + (proc.returncode,) for proc in procs]
    assert [code for _, _, code in results] == [0, 0], results
    assert lmdb_io.lmdb_count(os.path.join(out, "mnist_train_lmdb")) == 3000
    assert lmdb_io.lmdb_count(os.path.join(out, "mnist_test_lmdb")) == 500
    assert leftovers(out) == []
