// Package sign implements Standard Webhooks v1 signatures
// (https://www.standardwebhooks.com/, symmetric scheme):
//
//	webhook-signature: v1,<base64(HMAC-SHA256(key, id + "." + timestamp + "." + body))>
//
// where id is the webhook-id header and timestamp the webhook-timestamp header
// (Unix seconds). With several secrets (key rotation) the header carries one
// signature per secret, separated by spaces, and a receiver accepts the
// message if any of them matches a secret it knows.
//
// Secrets: a secret of the form "whsec_<base64>" is decoded as the spec says:
// the key is the base64-decoded part after the prefix. Any other string is
// used as the key as is (its UTF-8 bytes), so that a plain shared password
// also works; receivers must then use the same raw bytes.
//
// Receivers in Python can verify with the snippet in verify.py (no
// dependencies); in Go, with Verify (see the package example).
package sign

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Prefix marks a secret whose key is base64-encoded after it.
const Prefix = "whsec_"

// DefaultTolerance is the timestamp tolerance Verify uses when given 0, the
// value the Standard Webhooks libraries use.
const DefaultTolerance = 5 * time.Minute

// Errors returned by Verify; the returned error wraps one of them.
var (
	ErrNoSignature    = errors.New("no v1 signature in webhook-signature header")
	ErrBadSignature   = errors.New("no signature matches any secret")
	ErrBadTimestamp   = errors.New("webhook-timestamp is not a Unix time in seconds")
	ErrTimestampRange = errors.New("webhook-timestamp is outside the tolerance")
	ErrNoSecret       = errors.New("no secret")
)

// Signer signs with a fixed set of decoded keys; it saves decoding the
// secrets on every attempt. It is safe for concurrent use.
type Signer struct {
	keys [][]byte
}

// NewSigner decodes secrets. The error names the offending secret by its
// position, never by its value.
func NewSigner(secrets []string) (*Signer, error) {
	s := &Signer{}
	for i, sec := range secrets {
		k, err := Key(sec)
		if err != nil {
			return nil, fmt.Errorf("sign: secret #%d: %w", i+1, err)
		}
		s.keys = append(s.keys, k)
	}
	return s, nil
}

// Key returns the HMAC key for a secret: the base64-decoded part of a
// "whsec_" secret, or the raw bytes of any other non-empty string.
func Key(secret string) ([]byte, error) {
	if secret == "" {
		return nil, ErrNoSecret
	}
	rest, ok := strings.CutPrefix(secret, Prefix)
	if !ok {
		return []byte(secret), nil
	}
	k, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		// Some generators drop the padding; accept that too.
		if k2, err2 := base64.RawStdEncoding.DecodeString(rest); err2 == nil {
			return k2, nil
		}
		return nil, fmt.Errorf("whsec_ secret is not valid base64: %w", err)
	}
	if len(k) == 0 {
		return nil, fmt.Errorf("whsec_ secret has an empty key: %w", ErrNoSecret)
	}
	return k, nil
}

// Sign returns the webhook-signature header value for one message: one
// "v1,<base64>" per key, space-separated, in the order the secrets were
// given. It returns "" when the Signer has no keys.
func (s *Signer) Sign(id string, ts time.Time, body []byte) string {
	return s.sign(id, strconv.FormatInt(ts.Unix(), 10), body)
}

func (s *Signer) sign(id, ts string, body []byte) string {
	if s == nil || len(s.keys) == 0 {
		return ""
	}
	var b strings.Builder
	for i, k := range s.keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(mac(k, id, ts, body)))
	}
	return b.String()
}

func mac(key []byte, id, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Sign returns the webhook-signature header value for the message id sent at
// ts with body, signed with each secret (see the package doc for how secrets
// are read).
func Sign(secrets []string, id string, ts time.Time, body []byte) (string, error) {
	s, err := NewSigner(secrets)
	if err != nil {
		return "", err
	}
	if len(s.keys) == 0 {
		return "", fmt.Errorf("sign: %w", ErrNoSecret)
	}
	return s.Sign(id, ts, body), nil
}

// Verify checks a received message: ts is the webhook-timestamp header as
// received, header the webhook-signature header. It succeeds if any v1
// signature in header matches any of the secrets and ts is within tolerance
// of now (0 means DefaultTolerance), which bounds replays.
func Verify(secrets []string, id, ts string, body []byte, header string, tolerance time.Duration, now time.Time) error {
	s, err := NewSigner(secrets)
	if err != nil {
		return err
	}
	if len(s.keys) == 0 {
		return fmt.Errorf("sign: verify: %w", ErrNoSecret)
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(ts), 10, 64)
	if err != nil {
		return fmt.Errorf("sign: verify: %q: %w", ts, ErrBadTimestamp)
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("sign: verify: timestamp %d is %s away from now: %w", sec, d.Round(time.Second), ErrTimestampRange)
	}
	var sigs [][]byte
	for _, part := range strings.Fields(header) {
		v, sig, ok := strings.Cut(part, ",")
		if !ok || v != "v1" {
			continue // other schemes (v1a, future versions) are not ours to check
		}
		raw, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			continue
		}
		sigs = append(sigs, raw)
	}
	if len(sigs) == 0 {
		return fmt.Errorf("sign: verify: %w", ErrNoSignature)
	}
	for _, k := range s.keys {
		want := mac(k, id, ts, body)
		for _, got := range sigs {
			if hmac.Equal(want, got) {
				return nil
			}
		}
	}
	return fmt.Errorf("sign: verify: %w", ErrBadSignature)
}
