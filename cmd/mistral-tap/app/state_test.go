package app_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mistral-tap/mistral-tap/cmd/mistral-tap/app"
	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier/store"
)

// A state Run cannot open (here an empty database file) is an error naming
// the file, returned after build released what it had opened: the
// listener handed in stays usable by the caller, nothing panics.
func TestRunRefusesLostState(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, store.FileName)
	if err := os.WriteFile(db, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Source{Path: writeConfig(t, "upstream: http://127.0.0.1:9\nstate_dir: "+dir+"\n")})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = app.Run(context.Background(), app.Options{Config: cfg, Listener: ln})
	if !errors.Is(err, store.ErrStateLost) || !strings.Contains(err.Error(), db) {
		t.Fatalf("Run = %v, want store.ErrStateLost naming %s", err, db)
	}
	if fi, err := os.Stat(db); err != nil || fi.Size() != 0 {
		t.Fatalf("the empty database was touched: %v, %v", fi, err)
	}
}
