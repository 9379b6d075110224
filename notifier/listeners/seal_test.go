package listeners

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func TestSealRoundTrip(t *testing.T) {
	s, err := NewSealer(testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	sp := Spec{URL: "https://h.example/hook?token=abc", Method: "POST", Headers: map[string]string{"Authorization": "Bearer xyz"}, Format: "mistral", Secret: "whsec_c2VjcmV0"}
	sealed, err := s.Seal("id-1", sp)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"abc", "Bearer xyz", "whsec_c2VjcmV0", "hook"} {
		if bytes.Contains(sealed, []byte(secret)) {
			t.Errorf("sealed spec contains %q in clear", secret)
		}
	}
	got, err := s.Open("id-1", sealed)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, sp) {
		t.Fatalf("Open = %+v, want %+v", got, sp)
	}
	again, _ := s.Seal("id-1", sp)
	if bytes.Equal(again, sealed) {
		t.Error("two seals of the same spec are equal: the nonce is not random")
	}
}

func TestSealRefuses(t *testing.T) {
	s, _ := NewSealer(testKey(1))
	other, _ := NewSealer(testKey(2))
	sealed, _ := s.Seal("id-1", Spec{URL: "https://h.example/", Method: "POST", Format: "mistral"})
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	version := bytes.Clone(sealed)
	version[0] = 9
	tests := []struct {
		name   string
		s      *Sealer
		id     string
		sealed []byte
	}{
		{"other listener's id", s, "id-2", sealed},
		{"other key", other, "id-1", sealed},
		{"altered", s, "id-1", flipped},
		{"unknown version", s, "id-1", version},
		{"too short", s, "id-1", sealed[:10]},
		{"empty", s, "id-1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.s.Open(tt.id, tt.sealed); !errors.Is(err, ErrUnseal) {
				t.Fatalf("Open = %v, want ErrUnseal", err)
			}
		})
	}
}

func TestNewSealerKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := NewSealer(make([]byte, n)); err == nil {
			t.Errorf("NewSealer accepted a %d-byte key", n)
		}
	}
}
