package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strings"
	"time"

	"github.com/pulse-rpc/pulse"
)

// heartbeatFlags are the liveness flags shared by every command that
// connects or serves.
type heartbeatFlags struct {
	interval time.Duration
	timeout  time.Duration
	detector string
}

func (h *heartbeatFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&h.interval, "heartbeat", pulse.DefaultInterval, "heartbeat interval: send a PING after this long without writing (negative: no heartbeats)")
	fs.DurationVar(&h.timeout, "dead-after", pulse.DefaultTimeout, "declare the peer dead after this long without a byte from it")
	fs.StringVar(&h.detector, "detector", "fixed", "dead-peer detector: fixed or phi")
}

func (h *heartbeatFlags) heartbeat() (pulse.Heartbeat, error) {
	hb := pulse.Heartbeat{Interval: h.interval, Timeout: h.timeout, MinInterval: 10 * time.Millisecond}
	switch h.detector {
	case "fixed":
	case "phi":
		hb.Detector = pulse.DetectorPhi
	default:
		return hb, usageError{fmt.Sprintf("-detector must be fixed or phi, not %q", h.detector)}
	}
	return hb, nil
}

// tlsClientFlags select TLS for commands that dial.
type tlsClientFlags struct {
	enabled  bool
	ca       string
	insecure bool
}

func (t *tlsClientFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&t.enabled, "tls", false, "connect with TLS")
	fs.StringVar(&t.ca, "tls-ca", "", "PEM file of the CA that signed the server's certificate (default: the system's roots)")
	fs.BoolVar(&t.insecure, "tls-insecure", false, "with -tls, do not verify the server's certificate (testing only)")
}

func (t *tlsClientFlags) options() ([]pulse.Option, error) {
	if !t.enabled {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.insecure}
	if t.ca != "" {
		pem, err := os.ReadFile(t.ca)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate found in %s", t.ca)
		}
		cfg.RootCAs = pool
	}
	return []pulse.Option{pulse.WithTLS(cfg)}, nil
}

// selfSignedTLS makes an in-memory certificate for the given hosts, for
// "pulse serve -tls-self-signed".
func selfSignedTLS(hosts []string) (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "pulse serve"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, nil
}

// newLogger returns a slog logger writing to w in format ("text" or
// "json") at level ("debug", "info", "warn", "error").
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, usageError{fmt.Sprintf("-log-level %q: want debug, info, warn or error", level)}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError{fmt.Sprintf("-log-format %q: want text or json", format)}
}
