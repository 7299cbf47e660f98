#!/usr/bin/env bash
# Compares two revisions of Pulse with the root package's Go benchmarks
# (BenchmarkCall and BenchmarkCallParallel, Pulse's cells), run in turn
# (old, new, new, old, ...) so that the machine's drift falls on both
# alike, and prints benchstat's comparison: a change is reported only
# where it is significant (p < 0.05); "~" means none was found.
#
#   bench/benchstat-ab.sh OLD [NEW [ROUNDS]]     NEW defaults to HEAD, ROUNDS to 12
#
# Run from anywhere in the repository; it uses temporary worktrees and
# installs benchstat from the Go module proxy if it is not on PATH.
set -euo pipefail
old=${1:?usage: bench/benchstat-ab.sh OLD [NEW [ROUNDS]]}
new=${2:-HEAD}
rounds=${3:-12}
root=$(git rev-parse --show-toplevel)
dir=$(mktemp -d)
cleanup() {
	git -C "$root" worktree remove --force "$dir/old" >/dev/null 2>&1 || true
	git -C "$root" worktree remove --force "$dir/new" >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT
for side in old new; do
	rev=$old
	[ "$side" = new ] && rev=$new
	git -C "$root" worktree add --detach "$dir/$side" "$rev" >/dev/null
	(cd "$dir/$side" && go test -c -o "$dir/$side.test" .)
done
bench=(-test.run='^$' -test.bench='^BenchmarkCall(Parallel)?$/pulse' -test.benchtime=1s -test.count=1)
for i in $(seq 1 "$rounds"); do
	order="old new"
	[ $((i % 2)) = 0 ] && order="new old"
	for side in $order; do
		"$dir/$side.test" "${bench[@]}" >>"$dir/$side.txt"
	done
	echo "round $i of $rounds" >&2
done
benchstat=$(command -v benchstat || true)
if [ -z "$benchstat" ]; then
	GOBIN="$dir/bin" go install golang.org/x/perf/cmd/benchstat@latest
	benchstat="$dir/bin/benchstat"
fi
echo "old $old, new $new, $rounds interleaved runs each"
"$benchstat" old="$dir/old.txt" new="$dir/new.txt"
