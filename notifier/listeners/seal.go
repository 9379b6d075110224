package listeners

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
)

// KeySize is the length of a sealing key: AES-256.
const KeySize = 32

// sealVersion is the first byte of every sealed spec, so that a later
// format (another cipher, key rotation ids) can be told apart.
const sealVersion = 1

// Spec is the part of a listener that may carry secrets (a token in the
// URL, header values, the signing secret). The store keeps it only sealed.
type Spec struct {
	URL     string            `json:"url"`
	Method  string            `json:"method"`
	Headers map[string]string `json:"headers,omitempty"`
	Format  string            `json:"format"`
	Secret  string            `json:"secret,omitempty"`
}

// ErrUnseal is returned by Open when a sealed spec was not sealed with this
// key for this listener, or was altered.
var ErrUnseal = errors.New("listeners: sealed spec does not open with this key")

// Sealer seals specs with AES-256-GCM. The listener id is the additional
// data, so a sealed spec copied onto another listener's row does not open.
// Safe for concurrent use.
type Sealer struct{ aead cipher.AEAD }

// NewSealer returns a Sealer for a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("listeners: sealing key has %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("listeners: sealing key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("listeners: sealing key: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts sp for listener id: version byte, random nonce, ciphertext.
func (s *Sealer) Seal(id string, sp Spec) ([]byte, error) {
	plain, err := json.Marshal(sp)
	if err != nil {
		return nil, fmt.Errorf("listeners: encoding spec: %w", err)
	}
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("listeners: nonce: %w", err)
	}
	return s.aead.Seal(out, out[1:], plain, additional(id)), nil
}

// Open decrypts what Seal returned for the same id. Errors never include
// the plaintext.
func (s *Sealer) Open(id string, sealed []byte) (Spec, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n+s.aead.Overhead() || sealed[0] != sealVersion {
		return Spec{}, ErrUnseal
	}
	plain, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], additional(id))
	if err != nil {
		return Spec{}, ErrUnseal
	}
	var sp Spec
	if err := json.Unmarshal(plain, &sp); err != nil {
		return Spec{}, ErrUnseal
	}
	return sp, nil
}

func additional(id string) []byte { return []byte("mistral-tap listener " + id) }
