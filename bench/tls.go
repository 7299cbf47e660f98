package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"time"
)

// TLS runs (-tls): every system over TLS 1.3 with a self-signed ECDSA
// P-256 certificate for 127.0.0.1, made in memory by the server process
// when it starts. The server hands the certificate (not the key) to the
// driver in its ready line, and the driver to the client processes
// (-tls-cert), which trust it alone and verify the server against it as
// any client verifies a server. Each system takes the configuration its
// own way: Pulse with WithTLS on both ends, net/rpc and raw TCP over
// crypto/tls's tls.Conn (tls.NewListener, tls.Client), grpc-go with
// credentials.NewTLS.

// tlsServerName is the name clients verify the certificate against.
const tlsServerName = "127.0.0.1"

// newTLSServerConfig makes the certificate and the server's configuration,
// and returns the certificate in DER for the clients.
func newTLSServerConfig() (*tls.Config, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "pulse-bench"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.ParseIP(tlsServerName)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
	}
	return cfg, der, nil
}

// newTLSClientConfig returns the configuration of clients that trust the
// certificate der alone.
func newTLSClientConfig(der []byte) (*tls.Config, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: tlsServerName}, nil
}

// dialTLS dials addr with dial and, when cfg is set, completes a TLS
// handshake over the connection before returning it.
func dialTLS(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), addr string, cfg *tls.Config) (net.Conn, error) {
	c, err := dial(ctx, "tcp", addr)
	if err != nil || cfg == nil {
		return c, err
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, nil
}
