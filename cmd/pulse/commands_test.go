package main

import (
	"encoding/json"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

func TestCall(t *testing.T) {
	s := startServe(t)
	r := runPulse(t, "call", s.addr, "Arith.Add", `{"a":2,"b":40}`)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "42" {
		t.Errorf("call Arith.Add = exit %d, stdout %q, stderr %q; want 0, 42", r.code, r.stdout, r.stderr)
	}
	r = runPulse(t, "call", "-compact", s.addr, "Echo.Echo", `{"msg":"hi"}`)
	var reply struct{ Msg string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &reply) != nil || reply.Msg != "hi" {
		t.Errorf("call Echo.Echo = exit %d, stdout %q; want {\"msg\":\"hi\"}", r.code, r.stdout)
	}
	r = runPulse(t, "call", s.addr, "Arith.Divide", `{"a":1,"b":0}`)
	if r.code != 1 || !strings.Contains(r.stderr, "divide by zero") {
		t.Errorf("call Arith.Divide by 0 = exit %d, stderr %q; want 1 and the method's error", r.code, r.stderr)
	}
	r = runPulse(t, "call", s.addr, "Arith.Sqrt", `{}`)
	if r.code != 1 || !strings.Contains(r.stderr, "does not serve Arith.Sqrt") {
		t.Errorf("call of an unknown method = exit %d, stderr %q; want 1 and a clear message", r.code, r.stderr)
	}
	r = runPulse(t, "call", s.addr, "Arith.Add", `{not json`)
	if r.code != 2 {
		t.Errorf("call with bad JSON = exit %d, want 2", r.code)
	}
	r = runPulse(t, "call", "-timeout", "2s", "127.0.0.1:1", "Arith.Add", `{}`)
	if r.code != 1 || !strings.Contains(r.stderr, "cannot connect to 127.0.0.1:1") {
		t.Errorf("call to an unreachable server = exit %d, stderr %q; want 1 and cannot connect", r.code, r.stderr)
	}
}

func TestCallTLS(t *testing.T) {
	s := startServe(t, "-tls-self-signed")
	r := runPulse(t, "call", "-tls", "-tls-insecure", s.addr, "Arith.Multiply", `{"a":6,"b":7}`)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "42" {
		t.Errorf("call over TLS = exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = runPulse(t, "call", "-tls", s.addr, "Arith.Multiply", `{"a":6,"b":7}`)
	if r.code != 1 || !strings.Contains(r.stderr, "certificate") {
		t.Errorf("call over TLS without trusting the certificate = exit %d, stderr %q; want 1 and a certificate error", r.code, r.stderr)
	}
}

var pongRE = regexp.MustCompile(`pong from \S+: seq=\d+ time=[0-9.]+ ms`)

func TestPing(t *testing.T) {
	s := startServe(t)
	r := runPulse(t, "ping", "-c", "3", "-i", "100ms", s.addr)
	if r.code != 0 {
		t.Fatalf("ping = exit %d, stderr %q", r.code, r.stderr)
	}
	if n := len(pongRE.FindAllString(r.stdout, -1)); n != 3 {
		t.Errorf("ping -c 3 printed %d pongs:\n%s", n, r.stdout)
	}
	for _, want := range []string{"3 pings transmitted, 3 received, 0.0% loss", "rtt min/avg/max/stddev = "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("ping output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = runPulse(t, "ping", "-json", "-c", "2", "-i", "100ms", s.addr)
	var st struct {
		Transmitted, Received int
		RTT                   *struct{ Min, Avg, Max float64 } `json:"rtt_ms"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil || st.Transmitted != 2 || st.Received != 2 || st.RTT == nil || st.RTT.Min > st.RTT.Max {
		t.Errorf("ping -json = exit %d, stdout %q; want one JSON object for 2 pongs", r.code, r.stdout)
	}
	r = runPulse(t, "ping", "-c", "1", "127.0.0.1:1")
	if r.code != 1 {
		t.Errorf("ping of an unreachable server = exit %d, want 1", r.code)
	}
}

func TestChat(t *testing.T) {
	s := startServe(t)
	cmd := exec.Command(pulseBin, "chat", "-name", "tester", s.addr)
	cmd.Stdin = strings.NewReader("hello room\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	for _, want := range []string{"<room> tester joined", "<tester> hello room"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("chat output lacks %q:\n%s", want, out)
		}
	}
	s.waitLog(t, `msg="connection closed"`)
}
