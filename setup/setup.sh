#!/usr/bin/env bash
# make setup: everything gencnn needs, idempotent (a second run takes seconds).
#
#  1. Caffe: use the user's own if CAFFE_ROOT is set, or if `caffe` is on PATH
#     and `import caffe` works; otherwise build the pinned sdist once into
#     $GENCNN_CACHE (default ~/.cache/gencnn) under a key made of the Caffe
#     version, the hash of our patch/build files and the Python version.
#  2. Debian build dependencies (only when building): apt-get as root, else
#     print the exact apt line and exit non-zero.
#  3. The project's virtual environment .venv with requirements.txt.
#  4. env.sh (git-ignored): source it to get caffe on PATH, pycaffe,
#     python_layers/ and the project on PYTHONPATH, and the venv active.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
# With HOME unset (some CI runners, `env -i`), fall back to the user's home
# from the password database, then to /tmp.
if [ -z "${HOME:-}" ]; then
  HOME="$(getent passwd "$(id -u)" 2>/dev/null | cut -d: -f6)"
  [ -n "$HOME" ] && [ -d "$HOME" ] || HOME="${TMPDIR:-/tmp}"
  export HOME
fi
cache="${GENCNN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gencnn}"
venv="$root/.venv"
APT_PACKAGES="libprotobuf-dev protobuf-compiler libgoogle-glog-dev libgflags-dev libhdf5-dev
liblmdb-dev libleveldb-dev libsnappy-dev libopencv-dev libboost-system-dev libboost-thread-dev
libboost-filesystem-dev libboost-regex-dev libboost-python-dev libopenblas-dev cmake g++ make patch"
APT_PACKAGES="${APT_PACKAGES//$'\n'/ }"

say() { echo "[setup] $*"; }
die() { echo "[setup] error: $*" >&2; exit 1; }

command -v "$python" >/dev/null || die "no '$python' found; set PYTHON=/path/to/python3"
pyver="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# ---- 1. which Caffe --------------------------------------------------------
caffe_bin="" pycaffe=""
if [ -n "${CAFFE_ROOT:-}" ]; then
  for d in "$CAFFE_ROOT/build/tools" "$CAFFE_ROOT/build/install/bin" "$CAFFE_ROOT/bin"; do
    if [ -x "$d/caffe" ]; then caffe_bin="$d"; break; fi
  done
  for d in "$CAFFE_ROOT/python" "$CAFFE_ROOT/build/install/python"; do
    if [ -f "$d/caffe/__init__.py" ]; then pycaffe="$d"; break; fi
  done
  [ -n "$caffe_bin" ] || die "CAFFE_ROOT=$CAFFE_ROOT has no build/tools/caffe or bin/caffe"
  [ -n "$pycaffe" ] || die "CAFFE_ROOT=$CAFFE_ROOT has no python/caffe"
  say "using your Caffe from CAFFE_ROOT=$CAFFE_ROOT"
elif command -v caffe >/dev/null && [[ "$(command -v caffe)" != "$cache"/* ]] \
     && "$python" -c "import caffe" >/dev/null 2>&1; then
  # (a caffe under $cache is our own build, reached through a sourced env.sh)
  caffe_bin="$(dirname "$(command -v caffe)")"
  pycaffe="$(dirname "$(dirname "$("$python" -c 'import caffe; print(caffe.__file__)')")")"
  say "using the Caffe already installed ($caffe_bin/caffe, pycaffe in $pycaffe)"
fi
own_caffe=""
[ -n "$caffe_bin" ] || own_caffe=1

# ---- 2. Debian packages (only needed to build Caffe) -----------------------
if [ -n "$own_caffe" ] && command -v dpkg-query >/dev/null; then
  missing=""
  for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
      say "installing build dependencies with apt:$missing"
      export DEBIAN_FRONTEND=noninteractive
      mkdir -p "$cache"
      apt_log="$cache/apt.log"
      # shellcheck disable=SC2086  # $missing is a list of package names
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; } \
        > "$apt_log" 2>&1 || { tail -5 "$apt_log" >&2; die "apt-get install failed; see $apt_log"; }
    else
      echo "[setup] Caffe's build dependencies are missing. Install them, then rerun make setup:" >&2
      echo "  sudo apt-get install -y $APT_PACKAGES" >&2
      exit 1
    fi
  fi
elif [ -n "$own_caffe" ]; then
  say "not a Debian/Ubuntu system: make sure the equivalents of these are installed: $APT_PACKAGES"
fi

# ---- 3. virtual environment --------------------------------------------------
req_hash="$(sha256sum < requirements.txt | cut -c1-16)-py$pyver"
if [ "$(cat "$venv/.gencnn-stamp" 2>/dev/null)" != "$req_hash" ]; then
  say "creating the virtual environment .venv (Python $pyver)"
  venv_flags=""
  # A user's own pycaffe was built against their site's numpy: keep it visible.
  [ -z "$own_caffe" ] && venv_flags="--system-site-packages"
  rm -rf "$venv"
  "$python" -m venv $venv_flags "$venv" || die "'$python -m venv' failed (on Debian: apt-get install python3-venv)"
  pip_log="$venv/pip-install.log"
  { "$venv/bin/python" -m pip install --upgrade pip && \
    "$venv/bin/python" -m pip install -r requirements.txt; } > "$pip_log" 2>&1 \
    || { tail -5 "$pip_log" >&2; die "pip install -r requirements.txt failed; see $pip_log"; }
  echo "$req_hash" > "$venv/.gencnn-stamp"
fi
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

# ---- 1b. build our Caffe if needed -------------------------------------------
if [ -n "$own_caffe" ]; then
  build_hash="$(cat setup/build_caffe.sh setup/caffe/CMakeLists.txt setup/caffe/*.patch | sha256sum | cut -c1-12)"
  prefix="$cache/caffe-1.0.0-brocolli9.0.2-$build_hash-py$pyver"
  if [ ! -x "$prefix/bin/caffe" ]; then
    say "building Caffe (once; about 7 minutes on 2 cores) into $prefix"
    mkdir -p "$cache"
    start=$(date +%s)
    bash setup/build_caffe.sh "$venv/bin/python" "$prefix"
    say "Caffe built in $(( $(date +%s) - start )) s"
  fi
  caffe_bin="$prefix/bin" pycaffe="$prefix/python"
fi

# ---- 4. env.sh -----------------------------------------------------------------
tmp="$(mktemp "$root/.env.sh.XXXXXX")"
cat > "$tmp" <<ENV
# Generated by 'make setup' (setup/setup.sh); not tracked by git.
# Source it:  . ./env.sh
export GENCNN_ROOT="$root"
export CAFFE_BIN="$caffe_bin"
export PYCAFFE="$pycaffe"
. "$venv/bin/activate"
export PATH="\$CAFFE_BIN:\$PATH"
# The caffe binary embeds Python for Python layers: it needs pycaffe, our
# layers and the venv's packages (numpy, scipy, scikit-image, protobuf, six).
export PYTHONPATH="$pycaffe:$root/python_layers:$root:$site\${PYTHONPATH:+:\$PYTHONPATH}"
ENV
mv "$tmp" "$root/env.sh"

# ---- check ---------------------------------------------------------------------
# shellcheck source=/dev/null  # env.sh is generated just above
. "$root/env.sh"
version="$(caffe --version 2>&1 | tail -1)"
python -c "import caffe, generative_loss_layer" || die "pycaffe does not import with env.sh"
say "ready: $version, pycaffe from $pycaffe. Run: . ./env.sh"
