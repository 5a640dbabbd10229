#!/usr/bin/env bash
# Runs every test of coop: unit tests, and integration tests that start real
# multi-peer clouds of `coop` processes (and, where network namespaces work,
# a NAT test in namespaces behind nftables routers).
#
# Installs what the tests need on a fresh Debian machine: nftables, iproute2
# and conntrack (for the NAT test). Rust comes with the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v conntrack >/dev/null 2>&1 || need+=(conntrack)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need[*]}"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
      || echo "warning: could not install ${need[*]}; the NAT test will say why it skips"
  else
    echo "warning: ${need[*]} missing and cannot be installed here; the NAT test will say why it skips"
  fi
fi

# Integration tests start several peers each; on a 2-core machine they run
# one at a time so that timing checks (failover, liveness) measure coop and
# not the scheduler.
cargo build --workspace --all-targets
cargo test --workspace -- --test-threads=1
