package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
)

type machineInfo struct {
	CPU         string `json:"cpu"`
	Cores       int    `json:"cores"`
	Kernel      string `json:"kernel"`
	MemTotalKiB int64  `json:"mem_total_kib"`
	GOOS        string `json:"goos"`
	GOARCH      string `json:"goarch"`
	NoFileLimit uint64 `json:"nofile_hard_limit"`
	PortRange   string `json:"ip_local_port_range"`
}

type versionInfo struct {
	Go          string `json:"go"`
	GRPC        string `json:"grpc_go"`
	Pulse       string `json:"pulse"`
	PulseCommit string `json:"pulse_commit,omitempty"`
}

func readMachine() machineInfo {
	m := machineInfo{Cores: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.MemTotalKiB = int64(procField(b, "MemTotal:"))
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		m.PortRange = strings.Join(strings.Fields(string(b)), "-")
	}
	m.NoFileLimit = hardNoFile()
	return m
}

// readVersions tells the Go version, grpc-go's version from the build
// information, and Pulse's commit when the repository can tell it.
func readVersions(repoRoot string) versionInfo {
	v := versionInfo{Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "google.golang.org/grpc":
				v.GRPC = d.Version
				if d.Replace != nil {
					v.GRPC += " => " + d.Replace.Path + " " + d.Replace.Version
				}
			case "github.com/pulse-rpc/pulse":
				v.Pulse = d.Version
				if d.Replace != nil {
					v.Pulse += " => " + d.Replace.Path
				}
			}
		}
	}
	v.PulseCommit = gitHead(repoRoot)
	return v
}

// gitHead returns the commit checked out in repoRoot: read from .git
// directly when possible, else from `git rev-parse HEAD`, else "".
func gitHead(repoRoot string) string {
	if repoRoot == "" {
		return ""
	}
	gitDir := filepath.Join(repoRoot, ".git")
	if head, err := os.ReadFile(filepath.Join(gitDir, "HEAD")); err == nil {
		h := strings.TrimSpace(string(head))
		ref, isRef := strings.CutPrefix(h, "ref: ")
		if !isRef && isHexSHA(h) {
			return h
		}
		if isRef {
			if b, err := os.ReadFile(filepath.Join(gitDir, filepath.FromSlash(ref))); err == nil && isHexSHA(strings.TrimSpace(string(b))) {
				return strings.TrimSpace(string(b))
			}
			if b, err := os.ReadFile(filepath.Join(gitDir, "packed-refs")); err == nil {
				for line := range bytes.SplitSeq(b, []byte("\n")) {
					if sha, name, ok := strings.Cut(string(line), " "); ok && name == ref && isHexSHA(sha) {
						return sha
					}
				}
			}
		}
	}
	cmd := exec.Command("git", "rev-parse", "HEAD")
	cmd.Dir = repoRoot
	if out, err := cmd.Output(); err == nil && isHexSHA(strings.TrimSpace(string(out))) {
		return strings.TrimSpace(string(out))
	}
	return ""
}

func isHexSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
