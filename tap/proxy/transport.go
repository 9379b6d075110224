package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// TransportOptions tune the connection pool towards Mistral. Zero values
// take the defaults documented on each field (those of config.Proxy).
type TransportOptions struct {
	// DialTimeout bounds connecting to the upstream. Default 5s.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds waiting for Mistral's response headers.
	// Default 120s: starting an execution is a synchronous RPC whose own
	// timeout is 60s.
	ResponseHeaderTimeout time.Duration
	// MaxIdleConnsPerHost is the pool size. Default 64: goproxy's default
	// transport keeps 2, which under bursts opens a connection per request.
	MaxIdleConnsPerHost int
	// IdleConnTimeout closes pooled connections idle this long. Default 90s.
	IdleConnTimeout time.Duration
	// CAFile is a PEM bundle trusted in addition to the system roots for an
	// https upstream. Default "" (system roots only).
	CAFile string
}

// Fallbacks NewTransport uses for zero options. The configuration's
// defaults (config.ProxyConfig's tags) must equal them; a test in
// cmd/mistral-tap/app checks that they do.
const (
	DefaultDialTimeout           = 5 * time.Second
	DefaultResponseHeaderTimeout = 120 * time.Second
	DefaultMaxIdleConnsPerHost   = 64
	DefaultIdleConnTimeout       = 90 * time.Second
)

// NewTransport returns the transport the proxy uses towards Mistral. Unlike
// goproxy's default it ignores HTTP_PROXY (a sidecar whose HTTP_PROXY points
// at itself would loop), verifies TLS, and has timeouts and a real pool. It
// speaks HTTP/1.1 to the upstream.
func NewTransport(o TransportOptions) (*http.Transport, error) {
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.ResponseHeaderTimeout <= 0 {
		o.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	if o.MaxIdleConnsPerHost <= 0 {
		o.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	if o.IdleConnTimeout <= 0 {
		o.IdleConnTimeout = DefaultIdleConnTimeout
	}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading upstream CA file: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, errors.New("upstream CA file " + o.CAFile + " holds no PEM certificate")
		}
	}
	d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   o.DialTimeout,
		MaxIdleConns:          o.MaxIdleConnsPerHost,
		MaxIdleConnsPerHost:   o.MaxIdleConnsPerHost,
		IdleConnTimeout:       o.IdleConnTimeout,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
	}, nil
}
