#!/usr/bin/env bash
# Where the memory of idle containers goes: starts one peer of the given
# `coop` binary in a scratch data dir, runs N idle busybox containers one
# after the other, and prints the /proc/meminfo fields that move (before
# and after), then removes everything. Needs root, busybox-static and the
# container runtime's tools, as the container tests do.
#
#   ./scripts/memory-per-container.sh BIN LABEL [N]
#
# Uses the API on 127.0.0.1:7400, S3 on 17401, the mesh on 17402 and its
# own bridge, nft table and cgroup names, so it does not clash with a
# default `coop up` on other ports.
set -u
BIN=$1; LABEL=$2; N=${3:-40}
D=$(mktemp -d /tmp/memexp-$LABEL-XXXX)
export COOP_DATA_DIR=$D
$BIN up --name p0 --no-mdns --listen 127.0.0.1:17402 --s3 127.0.0.1:17401 --container-bridge mexp0 --container-subnet 10.77.0.0/16 --container-nft-table mexp --container-veth-prefix mexv --container-netns-prefix mexp- --container-cgroup mexp --capacity-cpus 4 > $D/up.log 2>&1 &
UPPID=$!
export COOP_API=http://127.0.0.1:7400
for i in $(seq 1 50); do [ -f $D/api.json ] && break; sleep 0.2; done
sleep 2
ROOTFS=$(mktemp -d); mkdir -p $ROOTFS/bin; cp /bin/busybox $ROOTFS/bin/; for a in sh sleep; do ln -s busybox $ROOTFS/bin/$a; done
$BIN --data-dir $D template import busybox $ROOTFS >/dev/null
$BIN --data-dir $D container run --name warm -d --cpus 10m --memory 16M --disk 64M busybox -- sleep 100000 >/dev/null
sleep 2
snap() { grep -E "^(MemAvailable|MemFree|Cached|Slab|SReclaimable|SUnreclaim|KernelStack|PageTables|Shmem|AnonPages|Mapped):" /proc/meminfo | awk '{printf "%s %s ", $1, $2} END {print ""}'; }
B=$(snap)
for i in $(seq 1 $N); do $BIN --data-dir $D container run --name c$i -d --cpus 10m --memory 16M --disk 64M busybox -- sleep 100000 >/dev/null; done
sleep 3
A=$(snap)
echo "$LABEL before: $B"
echo "$LABEL after:  $A"
echo "$LABEL holders alive: $(pgrep -fc 'shim userns')"
$BIN --data-dir $D container ls --json | python3 -c 'import json,sys; print("running", len(json.load(sys.stdin)))'
for name in warm $(seq -f 'c%g' 1 $N); do $BIN --data-dir $D container rm -f $name >/dev/null; done
kill $UPPID; wait $UPPID 2>/dev/null
rm -rf $D $ROOTFS
