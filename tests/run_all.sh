#!/usr/bin/env bash
# Runs every test of rules_shiko: installs what a fresh Debian machine lacks (as root), then
#   1. `./bazelw test //...`  — tool unit tests (pytest), rule analysis tests, bad-input checks;
#   2. pytest tests/e2e       — real builds, a real registry, dockerd and podman, reproducibility.
# Prints `N passed, N failed` as its last line and exits non-zero on any failure.
#
#   ./tests/run_all.sh                 everything
#   ./tests/run_all.sh -k static_c     only e2e tests matching (pytest -k); bazel tests still run
#   SHIKO_SKIP_INSTALL=1 ./tests/run_all.sh   don't apt/pip install anything (nor build
#                                             tests/e2e/tools/build_skopeo_sigstore.sh's skopeo)
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$PATH:/usr/sbin:/sbin"

apt_pkgs=(
  bazel-bootstrap bazel-skylib bazel-platforms bazel-rules-java
  gcc libc6-dev git python3 python3-venv python3-pip
  docker-registry skopeo umoci runc podman docker.io uidmap bubblewrap busybox-static
  apache2-utils isal zstd pigz xz-utils openssl ca-certificates nginx-light
  gpg gpg-agent gpgv debian-archive-keyring debootstrap
  # linux/arm64: the cross toolchain (//toolchains/cc) and qemu to run arm64 programs here.
  gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static binfmt-support
  chromium chromium-driver
  # Remote execution (tests/e2e/test_remote_execution.py): BuildGrid's scheduler database.
  postgresql
)

install_deps() {
  local missing=()
  for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "run_all: missing Debian packages (run as root to install): ${missing[*]}" >&2
      return 1
    fi
    echo "run_all: apt-get install ${missing[*]}" >&2
    apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 || return 1
  fi
}

# The e2e suite runs in a venv (Debian's python3 is externally managed) holding pytest (from
# the tools' lock) and the independent checkers (tests/e2e/requirements_lock.txt), hash-checked.
venv="${SHIKO_VENV:-$HOME/.cache/rules_shiko/venv}"
locks=(python_tools/requirements_lock.txt python_tools/requirements_run_lock.txt
       python_tools/requirements_test_lock.txt tests/e2e/requirements_lock.txt)
setup_venv() {
  if [ ! -x "$venv/bin/python" ]; then
    /usr/bin/python3 -m venv "$venv" || return 1
  fi
  local stamp="$venv/.shiko-locks" want
  want="$(cat "${locks[@]}" | sha256sum)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    local reqs=()
    for l in "${locks[@]}"; do reqs+=(-r "$l"); done
    "$venv/bin/python" -m pip install -q --no-deps --require-hashes "${reqs[@]}" >&2 || return 1
    echo "$want" > "$stamp"
  fi
}

# BuildGrid (the REAPI engine of the remote-execution tests) and its bots run from a venv of
# their own, from tests/remote/requirements_lock.txt alone (hash-checked): its dependency tree
# must not mix with the tools' or the e2e checkers'. tests/e2e/services.py finds it here.
bg_venv="${SHIKO_BUILDGRID_VENV:-$HOME/.cache/rules_shiko/buildgrid-venv}"
export SHIKO_BUILDGRID_VENV="$bg_venv"
bg_lock=tests/remote/requirements_lock.txt
setup_buildgrid_venv() {
  if [ ! -x "$bg_venv/bin/python" ]; then
    /usr/bin/python3 -m venv "$bg_venv" || return 1
  fi
  local stamp="$bg_venv/.shiko-locks" want
  want="$(sha256sum < "$bg_lock")"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$bg_venv/bin/python" -m pip install -q --no-deps --require-hashes -r "$bg_lock" >&2 || return 1
    echo "$want" > "$stamp"
  fi
}

passed=0
failed=0

if [ -z "${SHIKO_SKIP_INSTALL:-}" ]; then
  if ! install_deps || ! setup_venv || ! setup_buildgrid_venv; then
    echo "run_all: could not install the test dependencies" >&2
    echo "0 passed, 1 failed"
    exit 1
  fi
  # The judge of tests/e2e/test_sign.py: Debian's skopeo rebuilt with sigstore verification
  # (cached; a few minutes the first time). If it can't be built, test_sign.py fails loudly.
  tests/e2e/tools/build_skopeo_sigstore.sh >/dev/null \
    || echo "run_all: could not build the sigstore-verifying skopeo (tests/e2e/test_sign.py will fail)" >&2
else
  { setup_venv && setup_buildgrid_venv; } || { echo "0 passed, 1 failed"; exit 1; }
fi

# 1. Bazel tests.
log="$(mktemp)"
./bazelw test //... --test_output=errors 2>&1 | tee "$log"
bazel_rc=${PIPESTATUS[0]}
b_pass=$(grep -cE '^//[^ ]+ +(\(cached\) )?PASSED' "$log")
b_fail=$(grep -cE '^//[^ ]+ +(\(cached\) )?(FAILED|TIMEOUT|NO STATUS|FLAKY|INCOMPLETE)' "$log")
if [ "$bazel_rc" != 0 ] && [ "$b_fail" = 0 ]; then
  b_fail=1  # the build itself failed
fi
if [ "$b_pass" = 0 ] && [ "$b_fail" = 0 ]; then
  echo "run_all: bazel test ran no test" >&2
  b_fail=1
fi
echo "run_all: bazel tests: $b_pass passed, $b_fail failed" >&2
passed=$((passed + b_pass))
failed=$((failed + b_fail))

# 2. End-to-end tests.
junit="$(mktemp --suffix=.xml)"
"$venv/bin/python" -m pytest tests/e2e -v -rfE -p no:cacheprovider --durations=20 --junitxml="$junit" "$@"
pytest_rc=$?
read -r e_pass e_fail < <(/usr/bin/python3 - "$junit" <<'EOF'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print(0, 1); sys.exit()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = f = s = 0
for x in suites:
    t += int(x.get("tests", 0)); f += int(x.get("failures", 0)) + int(x.get("errors", 0))
    s += int(x.get("skipped", 0))
# A skipped e2e test is a failure here: e2e tests must run.
print(t - f - s, f + s)
EOF
)
if [ "$pytest_rc" != 0 ] && [ "$e_fail" = 0 ]; then
  e_fail=1
fi
if [ "$e_pass" = 0 ] && [ "$e_fail" = 0 ]; then
  echo "run_all: pytest ran no e2e test" >&2
  e_fail=1
fi
echo "run_all: e2e tests: $e_pass passed, $e_fail failed" >&2
passed=$((passed + e_pass))
failed=$((failed + e_fail))

rm -f "$log" "$junit"
if [ -n "${CI:-}" ]; then
  # CI runs in a throw-away clone: drop its output base (the repository cache stays shared) so
  # runs don't pile up gigabytes on the machine.
  ./bazelw clean --expunge >/dev/null 2>&1 || true
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
