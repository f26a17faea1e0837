#!/usr/bin/env bash
# Build the Cython extensions with AddressSanitizer and UndefinedBehaviorSanitizer
# into a separate directory (the in-place build is left alone) and run the test
# suite against that build, with the ASan runtime preloaded into Python.
#
# For contributors, not CI: it needs gcc (or clang: CC=clang) with the sanitizer
# runtimes, on Linux, and runs the suite several times slower than usual.
#
#   tools/sanitize.sh                 # the whole suite
#   tools/sanitize.sh -k layouts -x   # extra arguments go to pytest
#
# Any out-of-bounds access, use after free or undefined behaviour in the
# extensions aborts the run with a report; the exit status is pytest's.
# The leak test is left out: ASan keeps freed memory in quarantine, so the
# resident set grows by design. Leak detection at exit is off, because CPython
# does not free everything when it exits.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${CBACKPROP_SANITIZE_DIR:-$ROOT/build/sanitize}
CC=${CC:-gcc}
PYTHON=${PYTHON:-python}

LIBASAN=$("$CC" -print-file-name=libasan.so)
if [ ! -e "$LIBASAN" ]; then
    echo "sanitize.sh: $CC has no libasan.so (install the compiler's sanitizer runtime)" >&2
    exit 2
fi

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
rm -rf "$OUT"
mkdir -p "$OUT/lib"

cd "$ROOT"
echo "== building the extensions with $SAN into $OUT"
CC="$CC" CFLAGS="$SAN" LDFLAGS="$SAN" "$PYTHON" setup.py -q build_ext --force \
    --build-lib "$OUT/lib" --build-temp "$OUT/temp"
# The Python side of the package next to the instrumented extensions, and the
# project file (a test checks the package data it declares).
"$PYTHON" - "$ROOT/cbackprop" "$OUT/lib/cbackprop" <<'EOF'
import shutil, sys
shutil.copytree(sys.argv[1], sys.argv[2], dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("*.so", "*.c", "*.html", "__pycache__"))
EOF
cp "$ROOT/pyproject.toml" "$OUT/lib/"

export PYTHONPATH="$OUT/lib"
# libstdc++ too, so that ASan can intercept C++ exceptions thrown by other
# extensions (matplotlib's, torch's); reports go to files, as pytest captures stderr.
export LD_PRELOAD="$LIBASAN $("$CC" -print-file-name=libstdc++.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:log_path=$OUT/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$OUT/ubsan"
export PYTHONMALLOC=malloc    # Python's own objects through malloc, so ASan sees them too

cd "$OUT"    # not the source tree: `import cbackprop` must find the instrumented build
WHERE=$("$PYTHON" -c "import cbackprop._core._engine as e; print(e.__file__)")
case "$WHERE" in
    "$OUT"/*) echo "== testing $WHERE" ;;
    *) echo "sanitize.sh: imported $WHERE, not the sanitized build" >&2; exit 2 ;;
esac
status=0
"$PYTHON" -m pytest -q -p no:cacheprovider --ignore="$ROOT/tests/test_leaks.py" \
    "$ROOT/tests" "$@" || status=$?
if compgen -G "$OUT/asan.*" >/dev/null || compgen -G "$OUT/ubsan.*" >/dev/null; then
    echo "== sanitizer reports:" >&2
    cat "$OUT"/asan.* "$OUT"/ubsan.* 2>/dev/null >&2
    [ "$status" -ne 0 ] || status=1
fi
exit "$status"
