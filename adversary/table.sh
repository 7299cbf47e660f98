#!/usr/bin/env bash
# Prints the adversarial suite's results as a Markdown table: for each
# attack, the measured peak Go heap, peak RSS, peak goroutines and log lines
# of the attacked process, each with its bound, and pass/FAIL/DIED.
#
#   adversary/table.sh            runs the suite (about a minute), then prints the table
#   adversary/table.sh LOG        prints the table of a saved `go test -v` log
#
# The suite's full output goes to standard error when it runs here.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ $# -ge 1 ]; then
	log=$(cat "$1")
else
	log=$(go test -tags adversary -count=1 -timeout 10m -v ./adversary/ 2>&1 | tee /dev/stderr)
fi
printf '%s\n' "$log" | awk '
/ADVERSARY attack=/ {
	delete f
	for (i = 1; i <= NF; i++) {
		if (split($i, kv, "=") == 2) f[kv[1]] = kv[2]
	}
	a = f["attack"]
	if (!(a in seen)) { order[n++] = a; seen[a] = 1 }
	heap[a] = cell(f["peak_heap_mib"], f["heap_bound_mib"])
	rss[a] = cell(f["peak_rss_mib"], f["rss_bound_mib"])
	gor[a] = cell(f["peak_goroutines"], f["goroutine_bound"])
	logs[a] = cell(f["log_lines"], f["log_bound"])
	res[a] = f["result"]
	other = ""
	for (i = 1; i <= NF; i++) {
		if (split($i, kv, "=") != 2) continue
		if (kv[1] ~ /^(attack|peak_heap_mib|heap_bound_mib|peak_rss_mib|rss_bound_mib|peak_goroutines|goroutine_bound|log_lines|log_bound|result)$/) continue
		other = other (other == "" ? "" : " ") $i
	}
	notes[a] = other
}
function cell(v, b) {
	if (v == "") return "-"
	if (b == "") return v
	return v " (≤ " b ")"
}
END {
	print "| attack | peak heap, MiB | peak RSS, MiB | peak goroutines | log lines | result | details |"
	print "|---|---|---|---|---|---|---|"
	for (i = 0; i < n; i++) {
		a = order[i]
		printf "| %s | %s | %s | %s | %s | %s | %s |\n", a, heap[a], rss[a], gor[a], logs[a], res[a], notes[a]
	}
}'
