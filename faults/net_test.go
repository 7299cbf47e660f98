//go:build linux && faults

package faults

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The virtual network of one scenario:
//
//	namespace <p>-cli          namespace <p>-rtr                 namespace <p>-srv
//	eth0 10.231.1.2/24 ---- to-cli 10.231.1.1/24
//	                            to-srv 10.231.2.1/24 ---- eth0 10.231.2.2/24
//
// The endpoints route everything through the router, which forwards. The
// addresses exist only inside these namespaces, which each scenario
// creates and removes: nothing is routed anywhere else. Faults are set in
// the router only: an nftables table with a forward chain (blackhole,
// one-way drops) and a prerouting chain (random loss of every packet that
// enters the router, forwarded or for the relay), and tbf qdiscs on the
// router's two interfaces (each shapes the direction towards its
// endpoint).
const (
	nsFamily   = "pulsef" // every namespace of this suite starts with it
	cliIP      = "10.231.1.2"
	rtrCliIP   = "10.231.1.1"
	rtrSrvIP   = "10.231.2.1"
	srvIP      = "10.231.2.2"
	serverPort = "7000"
	relayPort  = "7001"
	// Interfaces, each inside its namespace.
	endpointDev = "eth0"
	rtrCliDev   = "to-cli" // router side of the client's link; its qdisc shapes server→client
	rtrSrvDev   = "to-srv" // router side of the server's link; its qdisc shapes client→server
	nftTable    = "pulsefault"
)

var (
	serverAddr = srvIP + ":" + serverPort
	relayAddr  = rtrCliIP + ":" + relayPort
	netSeq     atomic.Int32
)

// vnet is the network of one scenario.
type vnet struct {
	t             *testing.T
	cli, rtr, srv string    // namespace names
	start         time.Time // for the log
}

// newNet builds the network and removes it when the test ends.
func newNet(t *testing.T) *vnet {
	t.Helper()
	prefix := fmt.Sprintf("%s%d-%d", nsFamily, os.Getpid(), netSeq.Add(1))
	n := &vnet{t: t, cli: prefix + "-cli", rtr: prefix + "-rtr", srv: prefix + "-srv", start: time.Now()}
	t.Cleanup(n.teardown)
	for _, ns := range []string{n.cli, n.rtr, n.srv} {
		n.must("ip", "netns", "add", ns)
		n.must("ip", "-n", ns, "link", "set", "lo", "up")
	}
	n.must("ip", "-n", n.rtr, "link", "add", rtrCliDev, "type", "veth", "peer", "name", endpointDev, "netns", n.cli)
	n.must("ip", "-n", n.rtr, "link", "add", rtrSrvDev, "type", "veth", "peer", "name", endpointDev, "netns", n.srv)
	for _, a := range []struct{ ns, dev, cidr string }{
		{n.cli, endpointDev, cliIP + "/24"},
		{n.rtr, rtrCliDev, rtrCliIP + "/24"},
		{n.rtr, rtrSrvDev, rtrSrvIP + "/24"},
		{n.srv, endpointDev, srvIP + "/24"},
	} {
		n.must("ip", "-n", a.ns, "addr", "add", a.cidr, "dev", a.dev)
		n.must("ip", "-n", a.ns, "link", "set", a.dev, "up")
	}
	n.must("ip", "-n", n.cli, "route", "add", "default", "via", rtrCliIP)
	n.must("ip", "-n", n.srv, "route", "add", "default", "via", rtrSrvIP)
	n.must("ip", "netns", "exec", n.rtr, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	n.nft(`table inet ` + nftTable + ` {
	chain fwd_faults { type filter hook forward priority 0; policy accept; }
	chain pre_faults { type filter hook prerouting priority 0; policy accept; }
}`)
	// The endpoints keep the host's default congestion control (a
	// namespace may only set one the host allows, and Reno always is):
	// log it.
	cc, _ := n.run("ip", "netns", "exec", n.cli, "sysctl", "-n", "net.ipv4.tcp_congestion_control")
	t.Logf("network: namespaces %s, %s, %s; TCP congestion control %s", n.cli, n.rtr, n.srv, strings.TrimSpace(cc))
	return n
}

// run runs a command and returns its combined output.
func (n *vnet) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(buf.String()))
	}
	return buf.String(), err
}

func (n *vnet) must(args ...string) string {
	n.t.Helper()
	out, err := n.run(args...)
	if err != nil {
		n.t.Fatal(err)
	}
	return out
}

// nft runs an nftables script in the router namespace.
func (n *vnet) nft(script string) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.rtr, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		n.t.Fatalf("nft in %s: %v: %s\nscript:\n%s", n.rtr, err, out, script)
	}
}

// fault applies an nftables script and returns when it was applied: the
// moment before the command ran, so that times measured from it are never
// shorter than the truth.
func (n *vnet) fault(what, script string) time.Time {
	n.t.Helper()
	at := time.Now()
	n.nft(script)
	n.t.Logf("+%.3fs fault: %s (nft took %v)", at.Sub(n.start).Seconds(), what, time.Since(at).Round(time.Millisecond))
	return at
}

// blackhole drops every forwarded packet, both ways.
func (n *vnet) blackhole() time.Time {
	return n.fault("blackhole both ways", "add rule inet "+nftTable+" fwd_faults counter drop\n")
}

// dropFrom drops every forwarded packet that arrives from the client
// (fromClient) or from the server.
func (n *vnet) dropFrom(fromClient bool) time.Time {
	dev, what := rtrSrvDev, "drop server→client"
	if fromClient {
		dev, what = rtrCliDev, "drop client→server"
	}
	return n.fault(what, fmt.Sprintf("add rule inet %s fwd_faults iifname %q counter drop\n", nftTable, dev))
}

// loss drops pct % of the packets entering the router, at random.
func (n *vnet) loss(pct int) time.Time {
	return n.fault(fmt.Sprintf("%d %% random loss", pct),
		fmt.Sprintf("add rule inet %s pre_faults numgen random mod 100 < %d counter drop\n", nftTable, pct))
}

// heal removes every nftables fault and returns when.
func (n *vnet) heal() time.Time {
	at := time.Now()
	n.nft(fmt.Sprintf("flush chain inet %s fwd_faults\nflush chain inet %s pre_faults\n", nftTable, nftTable))
	n.t.Logf("+%.3fs fault: healed", at.Sub(n.start).Seconds())
	return at
}

// dropped returns how many packets the fault rules dropped so far.
func (n *vnet) dropped() int {
	n.t.Helper()
	out := n.must("ip", "netns", "exec", n.rtr, "nft", "list", "table", "inet", nftTable)
	total := 0
	fields := strings.Fields(out)
	for i := 0; i+1 < len(fields); i++ {
		if fields[i] == "packets" {
			if v, err := strconv.Atoi(fields[i+1]); err == nil {
				total += v
			}
		}
	}
	return total
}

// shape limits both directions to rate (tc's syntax, such as "1mbit")
// with a queue holding latency's worth of data, on the router's
// interfaces.
func (n *vnet) shape(rate, burst, latency string) {
	n.t.Helper()
	for _, dev := range []string{rtrCliDev, rtrSrvDev} {
		n.must("ip", "netns", "exec", n.rtr, "tc", "qdisc", "replace", "dev", dev, "root", "tbf",
			"rate", rate, "burst", burst, "latency", latency)
	}
	n.t.Logf("link: tbf rate %s burst %s latency %s, both directions", rate, burst, latency)
}

// setCC sets the TCP congestion control of both endpoints.
func (n *vnet) setCC(algo string) {
	n.t.Helper()
	for _, ns := range []string{n.cli, n.srv} {
		n.must("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.tcp_congestion_control="+algo)
	}
}

// teardown kills whatever still runs in the namespaces and deletes them.
func (n *vnet) teardown() {
	for _, ns := range []string{n.cli, n.rtr, n.srv} {
		removeNamespace(ns)
	}
}

// removeNamespace kills the processes in ns and deletes it.
func removeNamespace(ns string) {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	exec.Command("ip", "netns", "del", ns).Run()
}

// removeLeftovers deletes the namespaces of earlier runs of this suite
// whose test process is gone (a run that was killed cannot clean up).
func removeLeftovers() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, nsFamily)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil {
			continue
		}
		if pid != os.Getpid() && syscall.Kill(pid, 0) == nil {
			continue // another run, still going
		}
		if pid == os.Getpid() {
			continue // ours: the tests remove them
		}
		removeNamespace(name)
	}
}

// prerequisites reports what this machine lacks to run the suite.
var prerequisites = sync.OnceValue(func() string {
	if os.Geteuid() != 0 {
		return "not running as root"
	}
	for _, tool := range []string{"ip", "nft", "tc", "taskset", "sysctl", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " is not installed (" + err.Error() + ")"
		}
	}
	ns := fmt.Sprintf("%s%d-probe", nsFamily, os.Getpid())
	defer exec.Command("ip", "netns", "del", ns).Run()
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		return fmt.Sprintf("ip netns add failed: %v: %s", err, out)
	}
	if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "add", "table", "inet", "probe").CombinedOutput(); err != nil {
		return fmt.Sprintf("nftables does not work in a namespace: %v: %s", err, out)
	}
	return ""
})

// requirePrerequisites skips the test when the machine cannot run the
// suite, or fails it in CI, where a missing prerequisite is a broken
// setup.
func requirePrerequisites(t *testing.T) {
	t.Helper()
	if why := prerequisites(); why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("fault tests cannot run in CI: %s", why)
		}
		t.Skipf("fault tests need root and ip netns, nft, tc, taskset: %s", why)
	}
	if why := agentBuild(); why != "" {
		t.Fatal(why)
	}
}
