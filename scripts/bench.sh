#!/usr/bin/env bash
# Prints coop's cloud figures (join, detection, failover, idle RSS, binary
# size) measured with the release binary on loopback. See BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p coop --bench cloud
