#!/usr/bin/env bash
# Runs every test of coop: unit tests, and integration tests that start real
# multi-peer clouds of `coop` processes (and, where network namespaces work,
# a NAT test in namespaces behind nftables routers).
#
# Installs what the tests need on a fresh Debian machine: nftables, iproute2
# and conntrack (for the NAT tests), busybox-static, runc and e2fsprogs (for
# the container tests), restic (it reads the backups coop writes), curl, Debian's chromium and chromium-driver (the
# console's browser test), and a Python venv with boto3, aws-cli and pytest
# for the S3 tests and Selenium for the browser test (target/s3-venv, from
# tests/s3/requirements.txt). Rust comes with the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v conntrack >/dev/null 2>&1 || need+=(conntrack)
command -v curl >/dev/null 2>&1 || need+=(curl)
# Containers: a static busybox for test rootfs, runc for the fallback runtime.
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
# Backups: restic reads the repositories coop writes.
command -v restic >/dev/null 2>&1 || need+=(restic)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# The console's browser test: headless Chromium through WebDriver.
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need[*]}"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
      || echo "warning: could not install ${need[*]}; the tests that need them will say so"
  else
    echo "warning: ${need[*]} missing and cannot be installed here; the tests that need them will say so"
  fi
fi

# The S3 tests drive real clients (boto3, aws-cli) from a venv, rebuilt only
# when the pinned requirements change.
venv=target/s3-venv
stamp="$venv/.requirements"
if ! cmp -s tests/s3/requirements.txt "$stamp" 2>/dev/null; then
  echo "preparing the Python venv for the S3 tests in $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/s3/requirements.txt
  cp tests/s3/requirements.txt "$stamp"
fi
export COOP_TEST_PYTHON="$PWD/$venv/bin/python"

# Integration tests start several peers each; on a 2-core machine they run
# one at a time so that timing checks (failover, liveness) measure coop and
# not the scheduler.
cargo build --workspace --all-targets
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace -- --test-threads=1 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run (cargo prints one per test binary).
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '; ([0-9]+) failed' "$log" | grep -Eo '[0-9]+' | awk '{s+=$1} END {print s+0}')
echo
echo "tests: $passed passed, $failed failed"
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "cargo test stopped with status $status before every test ran (a build or doctest error above)"
fi
exit "$status"
