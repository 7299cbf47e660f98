// Command abcompare measures two builds of Pulse against each other on
// this machine: the side-by-side benchmark of each, run in turn (old, new,
// new, old, ...) so that the machine's drift falls on both alike, and a
// table of the medians with the ratio new/old. Each run also measures the
// raw TCP echo, whose figures should not move between the builds: its
// ratio says how much of a difference is the machine's.
//
//	go -C bench run ./abcompare -old aa7239a -new HEAD -rounds 4 -- -cells 64B/1x1,64B/32x1 -idle-hold 10s
//
// -old and -new are git revisions of this repository (or "." for the
// working tree). The arguments after -- go to each benchmark run, after
// "-runs 1 -systems pulse,raw".
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// result is the part of the benchmark's results file that is compared.
type result struct {
	Cells []struct {
		Name    string
		Systems []struct {
			System string
			Runs   []struct {
				CallsPerS   float64 `json:"calls_per_s"`
				P99         float64 `json:"p99_ns"`
				AllocsPerCl float64 `json:"allocs_per_call"`
				SrvCPU      float64 `json:"server_cpu_us_per_call"`
			}
		}
	}
	Idle []struct {
		System    string
		SrvRSS    float64 `json:"server_rss_bytes_per_conn"`
		SrvCPU    float64 `json:"server_cpu_percent"`
		CliRSS    float64 `json:"client_rss_bytes_per_conn"`
		SrvHeapSt float64 `json:"server_heap_stack_bytes_per_conn"`
	}
}

func main() {
	oldRev := flag.String("old", "", "git revision of the old build")
	newRev := flag.String("new", ".", `git revision of the new build ("." for the working tree)`)
	rounds := flag.Int("rounds", 4, "rounds; each runs both builds once, in alternating order")
	keep := flag.String("dir", "", "directory for the builds and results (default a temporary one)")
	flag.Parse()
	if *oldRev == "" || *rounds < 1 {
		fmt.Fprintln(os.Stderr, "abcompare: -old is required and -rounds must be positive")
		os.Exit(2)
	}
	dir := *keep
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "abcompare"); err != nil {
			fatal(err)
		}
	}
	top, err := output("git", "rev-parse", "--show-toplevel")
	if err != nil {
		fatal(err)
	}
	bins := map[string]string{}
	for _, b := range []struct{ name, rev string }{{"old", *oldRev}, {"new", *newRev}} {
		bins[b.name] = build(top, dir, b.name, b.rev)
	}
	samples := map[string]map[string][]float64{"old": {}, "new": {}}
	for r := range *rounds {
		order := []string{"old", "new"}
		if r%2 == 1 {
			order = []string{"new", "old"}
		}
		for _, which := range order {
			out := filepath.Join(dir, fmt.Sprintf("%s-%d.json", which, r))
			args := append([]string{"-runs", "1", "-systems", "pulse,raw", "-json", out, "-out", filepath.Join(dir, "pages")}, flag.Args()...)
			fmt.Fprintf(os.Stderr, "round %d: %s %s\n", r+1, which, strings.Join(args, " "))
			cmd := exec.Command(bins[which], args...)
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				fatal(fmt.Errorf("%s build: %v", which, err))
			}
			for k, v := range read(out) {
				samples[which][k] = append(samples[which][k], v)
			}
		}
	}
	fmt.Printf("old %s, new %s, %d rounds each, interleaved; medians, and the median of the rounds' new/old ratios with their range\n\n", *oldRev, *newRev, *rounds)
	fmt.Printf("| figure | old | new | new/old | range |\n|---|---|---|---|---|\n")
	keys := slices.Sorted(maps.Keys(samples["old"]))
	for _, k := range keys {
		o, n := samples["old"][k], samples["new"][k]
		if len(o) != len(n) {
			continue // a figure missing from some runs
		}
		ratios := make([]float64, len(o))
		for i := range o {
			ratios[i] = n[i] / o[i]
		}
		fmt.Printf("| %s | %.4g | %.4g | %.3f | %.3f–%.3f |\n", k, median(o), median(n), median(ratios), slices.Min(ratios), slices.Max(ratios))
	}
}

// build builds the benchmark of revision rev into dir and returns its path.
func build(top, dir, name, rev string) string {
	src := top
	if rev != "." {
		src = filepath.Join(dir, "src-"+name)
		os.RemoveAll(src)
		if _, err := output("git", "-C", top, "worktree", "add", "--detach", "-f", src, rev); err != nil {
			fatal(err)
		}
		defer exec.Command("git", "-C", top, "worktree", "remove", "--force", src).Run()
	}
	bin := filepath.Join(dir, "bench-"+name)
	if _, err := output("go", "-C", filepath.Join(src, "bench"), "build", "-o", bin, "."); err != nil {
		fatal(err)
	}
	return bin
}

// read returns the figures of one results file by name.
func read(path string) map[string]float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		fatal(err)
	}
	var r result
	if err := json.Unmarshal(b, &r); err != nil {
		fatal(err)
	}
	out := map[string]float64{}
	for _, c := range r.Cells {
		cps := map[string]float64{}
		for _, s := range c.Systems {
			if len(s.Runs) == 0 {
				continue
			}
			run := s.Runs[0]
			cps[s.System] = run.CallsPerS
			out[c.Name+" "+s.System+" calls/s"] = run.CallsPerS
			if s.System == "pulse" {
				out[c.Name+" pulse p99 µs"] = run.P99 / 1e3
				out[c.Name+" pulse server CPU µs/call"] = run.SrvCPU
				out[c.Name+" pulse allocs/call"] = run.AllocsPerCl
			}
		}
		if cps["raw"] > 0 {
			out[c.Name+" pulse÷raw calls/s"] = cps["pulse"] / cps["raw"]
		}
	}
	for _, i := range r.Idle {
		out["idle "+i.System+" server RSS B/conn"] = i.SrvRSS
		out["idle "+i.System+" server CPU %"] = i.SrvCPU
		if i.System == "pulse" {
			out["idle pulse client RSS B/conn"] = i.CliRSS
			out["idle pulse server heap+stack B/conn"] = i.SrvHeapSt
		}
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func output(name string, args ...string) (string, error) {
	b, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
	}
	return strings.TrimSpace(string(b)), nil
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "abcompare:", err)
	os.Exit(1)
}
