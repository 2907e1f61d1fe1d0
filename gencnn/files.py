"""How gencnn writes files: outputs that are never half-written (a fresh
temporary name beside the output, renamed when complete), a run's JSON
records and its time-stamped log. Used by the library (runs, data, figures)
and the tools alike; the command-line conventions are gencnn/cli.py's."""
import binascii
import contextlib
import errno
import json
import os
import re
import shutil
import time


def temp_name(path):
    """A fresh temporary name beside `path`: `path`.<pid>-<random>.tmp.

    Unique per writer, so two processes writing the same output never share
    a temporary (each renames its own complete copy; the last one stays).
    The pid lets a later writer recognise the leftovers of a killed one."""
    return "%s.%d-%s.tmp" % (path.rstrip("/"), os.getpid(),
                             binascii.hexlify(os.urandom(4)).decode())


def stale_temps(path):
    """Temporaries of `path` left by writers that are no longer running on
    this machine (killed mid-write); a live writer's are not listed."""
    folder, base = os.path.split(os.path.abspath(path.rstrip("/")))
    # atomic_output's temporaries may end in a suffix of their format (.png)
    pattern = re.compile(re.escape(base) + r"\.(\d+)-[0-9a-f]{8}\.tmp(\.[A-Za-z0-9]+)?$")
    stale = []
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        match = pattern.match(name)
        if match and not _running(int(match.group(1))):
            stale.append(os.path.join(folder, name))
    return stale


def _running(pid):
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno != errno.ESRCH    # EPERM: running, someone else's
    return True


def remove_stale_temps(path):
    """Remove the temporaries of `path` (files or folders) that killed
    writers left (stale_temps)."""
    for stale in stale_temps(path):
        if os.path.isdir(stale):
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(stale)


def replace_folder(new, path):
    """Rename the complete folder `new` to `path`. A folder already there (an
    older one, or a concurrent writer's just installed) is first renamed
    aside and then deleted, so `path` never holds a mix of two: a kill
    between the renames leaves it absent, both complete copies beside it
    (removed by the next writer, remove_stale_temps)."""
    while True:
        try:
            os.rename(new, path)
            return
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        old = temp_name(path)
        try:
            os.rename(path, old)
        except FileNotFoundError:      # another writer moved it first: retry
            continue
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(path):
    """atomic_output for a set of files that belong together (one run's
    outputs): yield a fresh folder beside `path` to write them in; when the
    block succeeds it replaces `path` as a whole (replace_folder), so
    `path` holds one run's complete set, never a mix of two runs'."""
    remove_stale_temps(path)
    tmp = temp_name(path)
    os.mkdir(tmp)
    try:
        yield tmp
        replace_folder(tmp, path)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_output(path, suffix=""):
    """The one way gencnn writes a file: yield a fresh temporary name beside
    `path` (ending in `suffix` for writers that pick a format by extension,
    e.g. savefig, np.savez); when the block succeeds it is renamed to `path`,
    so `path` is complete or absent (never half-written after a kill).
    Temporaries of `path` that killed writers left are removed first."""
    remove_stale_temps(path)
    tmp = temp_name(path) + suffix
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_atomic(path, text):
    """Write `text` (str, or bytes for a binary file) to `path` atomically."""
    mode = "wb" if isinstance(text, bytes) else "w"
    with atomic_output(path) as tmp:
        # O_EXCL: the name is ours alone; mode 0666 lets the umask decide, as
        # for a plain open() (mkstemp would leave the file 0600).
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), mode) as f:
            f.write(text)


def copy_atomic(src, path):
    """Copy file `src` to `path` atomically."""
    with atomic_output(path) as tmp:
        shutil.copyfile(src, tmp)


def free_bytes(path):
    """Bytes this user may still write on the file system that holds `path`
    (or, for a path not made yet, the nearest existing folder above it)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


def check_disk(path, need, what):
    """UserError (one line) when the file system of `path` has less than
    `need` bytes free for `what`: checked before writing, because Caffe aborts
    (no exception, no cleanup) when a snapshot cannot be written."""
    free = free_bytes(path)
    if need > free:
        from gencnn.cli import UserError
        raise UserError("not enough disk space for %s in %s: about %s needed, %s free"
                        % (what, path, _size(need), _size(free)))


def _size(nbytes):
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return "%d %s" % (nbytes, unit) if unit == "bytes" else "%.1f %s" % (nbytes, unit)
        nbytes /= 1024.0


def save_figure(fig, path, dpi=90):
    """Save a matplotlib figure atomically (its extension picks the format)."""
    with atomic_output(path, suffix=os.path.splitext(path)[1]) as tmp:
        fig.savefig(tmp, dpi=dpi)


def write_json(path, obj):
    """A run's JSON record (state, history), written atomically."""
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=True))


def log_line(path, message, bar=None):
    """Append a time-stamped line to a run's log file and show it: above the
    tqdm progress bar `bar` when there is one, else on stdout."""
    line = "%s %s" % (time.strftime("%Y-%m-%d %H:%M:%S"), message)
    with open(path, "a") as f:
        f.write(line + "\n")
    if bar is not None:
        bar.write(line)
    else:
        print(line, flush=True)


def die_with_parent(parent=None):
    """For subprocess.Popen(preexec_fn=...), or first thing in a child
    process: on Linux the child gets SIGTERM when the process that started
    it dies, however it dies (kill -9 included), so a tool's workers never
    outlive it. `parent`: that process's pid, for a child that calls this
    later than its start (a multiprocessing target): if the parent is gone
    by then, the child ends now. Elsewhere a no-op."""
    import ctypes
    import signal
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)
