#!/usr/bin/env bash
# Prints coop's figures measured with the release binary on loopback. See
# BENCHMARKS.md for recorded runs.
#
#   ./scripts/bench.sh          cloud figures: join, detection, failover,
#                               idle RSS, binary size
#   ./scripts/bench.sh s3       S3 on 1, 3 and 6 peers with boto3, next to
#                               dd's raw disk bandwidth (needs the venv that
#                               ./scripts/test.sh prepares)
#   ./scripts/bench.sh erasure  Reed-Solomon coding per core, 1 MiB blocks
#   ./scripts/bench.sh containers  start latency next to runc, memory per
#                               idle container, first start that fetches a
#                               100 MiB template (needs root, busybox-static
#                               and runc)
#   ./scripts/bench.sh storage-status  `coop storage status` on a peer
#                               holding 100,000 objects (needs the venv;
#                               filling takes minutes)
#   ./scripts/bench.sh nat      the NAT matrix in network namespaces: path
#                               kind, time to direct, RTT and 64 MiB
#                               throughput per pair of routers (needs root)
#   ./scripts/bench.sh heal     kill -9 of a peer to a healthy replacement of
#                               its environment replica elsewhere, five
#                               rounds on a 5-peer cloud (needs root)
#   ./scripts/bench.sh net      private networks' data plane: TCP through
#                               the TUN devices of two peers against the
#                               raw QUIC stream, RTT added (needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-cloud}" in
  cloud) cargo bench -p coop --bench cloud ;;
  s3) cargo bench -p coop --bench s3 ;;
  erasure) cargo bench -p coop-store --bench erasure ;;
  containers) cargo bench -p coop --bench containers ;;
  storage-status) cargo bench -p coop --bench storage_status ;;
  nat) cargo bench -p coop --bench nat ;;
  heal) cargo bench -p coop --bench heal ;;
  net) cargo bench -p coop-net --bench dataplane ;;
  *) echo "usage: $0 [cloud|s3|erasure|containers|storage-status|nat|heal|net]" >&2; exit 2 ;;
esac
