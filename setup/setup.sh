#!/usr/bin/env bash
# make setup: everything gencnn needs, idempotent (a second run takes seconds).
#
#  1. Caffe: use the user's own if CAFFE_ROOT is set (recorded in the
#     git-ignored .caffe_root, so later runs keep using it; CAFFE_ROOT= set
#     but empty forgets it), or if `caffe` is on PATH and `import caffe`
#     works; otherwise build the pinned sdist once into $GENCNN_CACHE (default
#     ~/.cache/gencnn) under a key made of the Caffe version, the hash of our
#     patch/build files and the Python version.
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
# The user's own Caffe is sticky: CAFFE_ROOT=DIR is recorded in .caffe_root and
# used by every later run (make test and make demo rerun make setup) until
# CAFFE_ROOT is given again: a new DIR switches, an empty one
# (`make setup CAFFE_ROOT=`) forgets it and goes back to the default choice.
recorded="$root/.caffe_root"
caffe_root="" origin="" caffe_from=CAFFE_ROOT
if [ -n "${CAFFE_ROOT+set}" ]; then
  if [ -n "$CAFFE_ROOT" ]; then
    caffe_root="$(cd "$CAFFE_ROOT" 2>/dev/null && pwd)" || die "CAFFE_ROOT=$CAFFE_ROOT is not a folder"
    origin="CAFFE_ROOT=$caffe_root"
  elif [ -f "$recorded" ]; then
    rm -f "$recorded"
    say "CAFFE_ROOT is empty: forgot the recorded Caffe; back to the default choice"
  fi
elif [ -f "$recorded" ]; then
  caffe_root="$(cat "$recorded")"
  origin="CAFFE_ROOT=$caffe_root recorded in .caffe_root by an earlier 'make setup CAFFE_ROOT=...'"
fi
caffe_bin="" pycaffe=""
if [ -n "$caffe_root" ]; then
  for d in "$caffe_root/build/tools" "$caffe_root/build/install/bin" "$caffe_root/bin"; do
    if [ -x "$d/caffe" ]; then caffe_bin="$d"; break; fi
  done
  for d in "$caffe_root/python" "$caffe_root/build/install/python"; do
    if [ -f "$d/caffe/__init__.py" ]; then pycaffe="$d"; break; fi
  done
  reset="(make setup CAFFE_ROOT=DIR to use another Caffe, make setup CAFFE_ROOT= for the default)"
  [ -n "$caffe_bin" ] || die "$origin: no build/tools/caffe or bin/caffe there $reset"
  [ -n "$pycaffe" ] || die "$origin: no python/caffe there $reset"
  if [ "$(cat "$recorded" 2>/dev/null)" != "$caffe_root" ]; then
    echo "$caffe_root" > "$recorded.tmp" && mv "$recorded.tmp" "$recorded"
  fi
  say "using your Caffe: $origin"
  say "  (kept for later runs; 'make setup CAFFE_ROOT=' goes back to the default)"
elif command -v caffe >/dev/null && [[ "$(command -v caffe)" != "$cache"/* ]] \
     && ! { [ "${GENCNN_CAFFE_FROM:-}" = CAFFE_ROOT ] && [ "$(command -v caffe)" = "${CAFFE_BIN:-}/caffe" ]; } \
     && "$python" -c "import caffe" >/dev/null 2>&1; then
  # (a caffe under $cache is our own build, and one that a sourced env.sh put
  # on PATH from a forgotten CAFFE_ROOT is not "installed": both are skipped)
  caffe_bin="$(dirname "$(command -v caffe)")"
  pycaffe="$(dirname "$(dirname "$("$python" -c 'import caffe; print(caffe.__file__)')")")"
  caffe_from=PATH
  say "using the Caffe already installed ($caffe_bin/caffe, pycaffe in $pycaffe)"
fi
own_caffe=""
if [ -z "$caffe_bin" ]; then own_caffe=1 caffe_from=build; fi

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
site_in_venv="${site#"$venv"/}"
cat > "$tmp" <<ENV
# Generated by 'make setup' (setup/setup.sh); not tracked by git.
# Source it:  . ./env.sh   (from bash; from another shell, in the repository root)
# The repository's paths follow env.sh's own location, so a copied or moved
# clone uses its own code, python_layers/ and .venv (not the original's).
GENCNN_ROOT="\$(cd "\$(dirname "\${BASH_SOURCE[0]:-./env.sh}")" && pwd)"
export GENCNN_ROOT
export CAFFE_BIN="$caffe_bin"
export PYCAFFE="$pycaffe"
export GENCNN_CAFFE_FROM="$caffe_from"   # CAFFE_ROOT (.caffe_root), PATH or build (ours)
# The venv, as its activate script would (which names the original's path).
export VIRTUAL_ENV="\$GENCNN_ROOT/.venv"
export PATH="\$CAFFE_BIN:\$VIRTUAL_ENV/bin:\$PATH"
# The caffe binary embeds Python for Python layers: it needs pycaffe, our
# layers and the venv's packages (numpy, scipy, scikit-image, protobuf, six).
export PYTHONPATH="$pycaffe:\$GENCNN_ROOT/python_layers:\$GENCNN_ROOT:\$VIRTUAL_ENV/$site_in_venv\${PYTHONPATH:+:\$PYTHONPATH}"
ENV
mv "$tmp" "$root/env.sh"

# ---- check ---------------------------------------------------------------------
# shellcheck source=/dev/null  # env.sh is generated just above
. "$root/env.sh"
version="$(caffe --version 2>&1 | tail -1)"
python -c "import caffe, generative_loss_layer" || die "pycaffe does not import with env.sh"
say "ready: $version, pycaffe from $pycaffe. Run: . ./env.sh"
