#!/usr/bin/env bash
# Scenario 7 of the fault suite (TestDeepQueue: TCP Reno, 1 Mbit/s, a 3 s
# queue, a 2 MiB reply) before and after flow control: runs it RUNS times
# (default 2) on BEFORE (default ca030a9, the last commit without flow
# control) and on this tree, alternating, and prints a Markdown table of
# the bytes in flight and round trips of each run, per heartbeat setting,
# with the mean of each side and after/before. As root, from anywhere in
# the repository; needs jq. About 45 s per run.
#
#   sudo faults/deepq-compare.sh [RUNS]
#
# BEFORE is checked out in a temporary worktree (removed at the end) and
# gets this tree's scenario test files, which add the measurement
# (faults/ is otherwise the same there). Results and logs go to $OUT
# (default a new temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-2}
before=${BEFORE:-ca030a9}
out=${OUT:-$(mktemp -d -t deepq.XXXXXX)}
mkdir -p "$out"
tmp=$(mktemp -d -t deepq-before.XXXXXX)
wt=$tmp/tree
trap 'git worktree remove --force "$wt"; rmdir "$tmp"' EXIT
git worktree add -q --detach "$wt" "$before"
cp faults/inflight_test.go faults/faults_test.go faults/scenario_test.go "$wt/faults/"

run() { # name dir
	echo "$1: $2" >&2
	PULSE_FAULTS_RESULTS="$out/$1/results.json" go -C "$2" test -tags faults -count=1 -timeout 20m -v \
		-run 'TestDeepQueue$' ./faults/ >"$out/$1.log" 2>&1 || echo "$1: the test failed (see $out/$1.log)" >&2
}
for i in $(seq "$runs"); do
	run "before-$i" "$wt"
	run "after-$i" "$PWD"
done

echo "results and logs in $out" >&2
jq -rn '
def kib: if . == null then "-" else (. / 1024 | round | tostring) end;
def sec: if . == null then "-" else (. / 10 | round / 100 | tostring) end;
def mean: map(select(. != null)) | if length == 0 then null else add / length end;
def ratio($a; $b): if $a == null or $b == null or $b == 0 then "-" else ($a / $b * 100 | round / 100 | tostring) end;
[inputs | (input_filename | test("/before-[0-9]+/")) as $b | .results[]
 | {side: (if $b then "before" else "after" end), hb: .heartbeat,
    maxq: .max_inflight_bytes, medq: .median_inflight_bytes, rtt: .max_rtt_ms, tcp: .max_tcp_rtt_ms}] as $rs
| "| setting | measure | before (each run) | after (each run) | before, mean | after, mean | after / before |",
  "|---|---|---|---|---|---|---|",
  ($rs | group_by(.hb)[] as $g
   | [["bytes in flight, max, KiB", "maxq", "kib"], ["bytes in flight, median, KiB", "medq", "kib"],
      ["heartbeat RTT, max, s", "rtt", "sec"], ["server TCP RTT, max, s", "tcp", "sec"]][] as [$what, $k, $f]
   | [$g[] | select(.side == "before") | .[$k]] as $bv
   | [$g[] | select(.side == "after") | .[$k]] as $av
   | def fmt: if $f == "kib" then kib else sec end;
     "| \($g[0].hb) | \($what) | \($bv | map(fmt) | join(", ")) | \($av | map(fmt) | join(", ")) | \($bv | mean | fmt) | \($av | mean | fmt) | \(ratio($av | mean; $bv | mean)) |")
' "$out"/*/results.json
