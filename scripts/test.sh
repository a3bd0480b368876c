#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: unit tests (meson test, then again
# under AddressSanitizer + UBSan) and the end-to-end lab tests (pytest, needs root).
# Exits non-zero when anything fails. Set SKIP_SANITIZE=1 to skip the sanitizer pass.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps

# Warnings are errors under CI; a newcomer's different compiler should not stop the build.
werror=false
[[ -n "${CI:-}" ]] && werror=true

configure() {  # configure DIR [meson options...]
  local dir=$1; shift
  if [[ -f $dir/build.ninja ]]; then
    meson configure "$dir" -Dwerror=$werror "$@" >/dev/null
  else
    meson setup "$dir" -Dwerror=$werror "$@" >/dev/null
  fi
}

failed=()

echo "== build"
configure build
meson compile -C build

echo "== unit tests"
meson test -C build --suite unit --print-errorlogs || failed+=("unit")

if [[ -z "${SKIP_SANITIZE:-}" ]]; then
  echo "== unit tests under AddressSanitizer and UndefinedBehaviorSanitizer"
  configure build-sanitize -Db_sanitize=address,undefined -Db_lundef=false
  meson compile -C build-sanitize
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-sanitize --suite unit --print-errorlogs || failed+=("unit (sanitizers)")
fi

echo "== end-to-end tests"
# Debian's interpreter: it is the one python3-pytest is installed for.
TANDEMD="$PWD/build/controlplane/tandemd" /usr/bin/python3 -m pytest tests/e2e -v -rs -p no:cacheprovider \
  || failed+=("end-to-end")

if [[ ${#failed[@]} -ne 0 ]]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all tests passed"
