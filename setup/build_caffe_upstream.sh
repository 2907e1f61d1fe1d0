#!/usr/bin/env bash
# Build upstream BVLC Caffe 1.0 for CI's second route: CPU-only,
# OpenBLAS, upstream's own CMake build with pycaffe and Python layers, from
# the archive $GENCNN_SHARED/caffe-upstream/caffe-1.0.tar.gz (the tag's
# `git archive`, sha256 checked) with docs/own_caffe.md's two Debian 12 fixes
# (OpenCV 4's cv::IMREAD_* names, protobuf 3.21's one-argument
# SetTotalBytesLimit). It goes once into $GENCNN_CACHE (default
# ~/.cache/gencnn) under a key made of the archive's sha256, this script's
# hash and the Python version; a rerun finds it there (without needing the
# archive) and takes about a second.
#
#   setup/build_caffe_upstream.sh [PYTHON]
#
# Build dependencies: the Debian packages make setup installs for its own
# build (.ci/run runs make setup first). PYTHON (default: $PYTHON, else
# python3) is the interpreter pycaffe is built for, with NumPy importable
# (.ci/run passes the project's .venv/bin/python).
# Progress goes to stderr; the last line on stdout is the installed prefix
# (bin/caffe, python/caffe, lib/), a CAFFE_ROOT for `make setup CAFFE_ROOT=`.
# Only CI uses this: the product never needs ../shared or this build (a
# user's own Caffe comes from the user: docs/own_caffe.md).
set -euo pipefail

ARCHIVE_NAME=caffe-1.0.tar.gz
ARCHIVE_SHA256=63c7ac244ff649e64718e11996cbd7bfb97cb02ad753a6ea3c1b855cc056a5b8

say() { echo "[upstream caffe] $*" >&2; }
die() { echo "[upstream caffe] error: $*" >&2; exit 1; }

script="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
python="${1:-${PYTHON:-python3}}"
command -v "$python" >/dev/null || die "no '$python' found; pass the Python pycaffe is for"
pyver="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
  || die "'$python' does not run"

# The cache folder as setup/setup.sh finds it: with HOME unset, the home from
# the password database, then TMPDIR, then /tmp.
if [ -z "${HOME:-}" ]; then
  HOME="$(getent passwd "$(id -u)" 2>/dev/null | cut -d: -f6)" || true
  [ -n "$HOME" ] && [ -d "$HOME" ] || HOME="${TMPDIR:-/tmp}"
  export HOME
fi
cache="${GENCNN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gencnn}"
script_hash="$(sha256sum < "$script" | cut -c1-12)"
prefix="$cache/caffe-upstream-1.0-${ARCHIVE_SHA256:0:12}-$script_hash-py$pyver"
if [ -x "$prefix/bin/caffe" ] && [ -f "$prefix/python/caffe/__init__.py" ]; then
  say "cached: $prefix"
  echo "$prefix"
  exit 0
fi

[ -n "${GENCNN_SHARED:-}" ] \
  || die "GENCNN_SHARED is not set (the folder holding caffe-upstream/$ARCHIVE_NAME; .ci/run sets it)"
archive="$GENCNN_SHARED/caffe-upstream/$ARCHIVE_NAME"
[ -f "$archive" ] || die "$archive not found (GENCNN_SHARED=$GENCNN_SHARED)"

actual="$(sha256sum < "$archive" | cut -d' ' -f1)"
[ "$actual" = "$ARCHIVE_SHA256" ] \
  || die "$archive has sha256 $actual, expected $ARCHIVE_SHA256"
"$python" -c "import numpy" 2>/dev/null \
  || die "'$python' has no NumPy (pycaffe is built against its headers)"

mkdir -p "$cache"
log="$prefix.build.log"
jobs="${GENCNN_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"
work="$(mktemp -d "$cache/build-upstream.XXXXXX")"
trap 'rm -rf "$work"' EXIT
say "building upstream Caffe 1.0 in $work (log: $log)"
start=$(date +%s)
tar -xzf "$archive" -C "$work"
src="$work/caffe-1.0"

# docs/own_caffe.md's two fixes (Caffe's own tests in src/caffe/test are not
# built, so they are left alone).
sed -i 's/CV_LOAD_IMAGE_COLOR/cv::IMREAD_COLOR/g; s/CV_LOAD_IMAGE_GRAYSCALE/cv::IMREAD_GRAYSCALE/g' \
    "$src/src/caffe/util/io.cpp" "$src/src/caffe/layers/window_data_layer.cpp"
sed -i 's/SetTotalBytesLimit(kProtoReadBytesLimit, 536870912)/SetTotalBytesLimit(kProtoReadBytesLimit)/' \
    "$src/src/caffe/util/io.cpp"
if grep -rn 'CV_LOAD_IMAGE\|SetTotalBytesLimit(.*,' "$src/src/caffe" "$src/tools" "$src/python" \
     | grep -v "/src/caffe/test/" >&2; then
  die "the two source fixes did not apply everywhere (lines above)"
fi

# Show progress on the terminal, keep the full compiler output in the log.
progress() { awk '/^\[ *[0-9]+%\]/ { printf "\r  make: %s ", $1 $2; fflush() } END { print "" }'; }
: > "$log"
pyexe="$("$python" -c 'import sys; print(sys.executable)')"
# Upstream's CMake uses the old FindPythonLibs, which does not ask the
# interpreter: give it the interpreter's own headers and libpython.
pyinc="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
pylib="$("$python" -c 'import os, sysconfig; v = sysconfig.get_config_var
print(os.path.join(v("LIBDIR") or "", v("LDLIBRARY") or ""))')"
pyflags=(-DPYTHON_INCLUDE_DIR="$pyinc")
[ -f "$pylib" ] && pyflags+=(-DPYTHON_LIBRARY="$pylib")
# The install prefix is the final one (upstream's CMake writes it into the
# RPATHs); `make install` goes to a staging DESTDIR, moved into place last.
cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DCPU_ONLY=ON -DBLAS=Open \
      -Dpython_version=3 -DPYTHON_EXECUTABLE="$pyexe" "${pyflags[@]}" -DBUILD_docs=OFF \
      -DCMAKE_INSTALL_PREFIX="$prefix" >> "$log" 2>&1 \
  || { tail -20 "$log" >&2; die "cmake configure failed; see $log"; }
if ! { grep -q "^-- Python:" "$log" && grep "Interpreter *:" "$log" | grep -qF "$pyexe"; }; then
  grep -i "python\|boost" "$log" | tail -10 >&2
  die "cmake found no pycaffe dependencies (Python $pyexe, NumPy, Boost.Python); see $log"
fi
set +o pipefail
make -C "$src/build" -j"$jobs" all 2>&1 | tee -a "$log" | progress >&2
status=${PIPESTATUS[0]}
set -o pipefail
if [ "$status" -ne 0 ]; then
  grep -m5 -B2 -A5 "error" "$log" >&2 || true
  die "the build failed; see $log"
fi
stage="$work/stage"
make -C "$src/build" install DESTDIR="$stage" >> "$log" 2>&1 || die "make install failed; see $log"
staged="$stage$prefix"
[ -f "$staged/python/caffe/_caffe.so" ] && [ -f "$staged/python/caffe/proto/caffe_pb2.py" ] \
  || die "the install has no pycaffe (_caffe.so, proto/caffe_pb2.py); see $log"

# Smoke test before the prefix is published under its final name.
LD_LIBRARY_PATH="$staged/lib" "$staged/bin/caffe" --version >> "$log" 2>&1 \
  || die "the built caffe does not run; see $log"
LD_LIBRARY_PATH="$staged/lib" PYTHONPATH="$staged/python" "$python" -c "import caffe" >> "$log" 2>&1 \
  || { tail -5 "$log" >&2; die "the built pycaffe does not import; see $log"; }
rm -rf "$prefix"
mv "$staged" "$prefix"
say "installed in $prefix ($(( $(date +%s) - start )) s)"
echo "$prefix"
