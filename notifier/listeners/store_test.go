package listeners

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore"
	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore/pgtest"
)

// Both stores are what the handler and the registry need.
var (
	_ Store  = (*store.Store)(nil)
	_ Source = (*store.Store)(nil)
	_ Store  = (*pgstore.Store)(nil)
	_ Source = (*pgstore.Store)(nil)

	_ HistoryReader = (*store.Store)(nil)
	_ HistoryReader = (*pgstore.Store)(nil)
	_ RootsReader   = (*store.Store)(nil)
	_ RootsReader   = (*pgstore.Store)(nil)
)

// realStore is a store both the handler and the registry use.
type realStore interface {
	Store
	Source
}

// TestRealStores runs the API and the registry on the SQLite store and on
// PostgreSQL (when MISTRAL_E2E_PG_DSN is set): what the handler stores the
// registry activates, the cap holds across the API, and a DELETE through
// the API removes the route.
func TestRealStores(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		st, err := store.Open(filepath.Join(t.TempDir(), "tap.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		testRealStore(t, st)
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := pgtest.Database(t)
		st, err := pgstore.Open(t.Context(), pgstore.Options{DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		testRealStore(t, st)
	})
}

func testRealStore(t *testing.T, st realStore) {
	e := newEnv(t, 2)
	e.h.o.Store = st
	d := newFakeDispatcher()
	r, err := NewRegistry(RegistryOptions{Store: st, Dispatcher: d, Sealer: e.sealer, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	r.SetActive(true)
	e.h.o.Changed = r.Changed

	w := e.do("POST", "/v2/listeners", good, "X-Auth-Token", "tok-a")
	if w.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	id := ids(t, e.do("GET", "/v2/listeners", "", "X-Auth-Token", "tok-a"))[0]
	_ = e.do("POST", "/v2/listeners", `{"task_execution_id":"t1","url":"http://h/"}`, "X-Auth-Token", "tok-a")
	if w := e.do("POST", "/v2/listeners", good, "X-Auth-Token", "tok-a"); w.Code != http.StatusConflict {
		t.Fatalf("third listener of the project: %d, want 409", w.Code)
	}
	if err := r.sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	rt, ok := d.routes[RouteName(id)]
	if !ok || rt.Callback.URL != "https://hooks.example/m?token=sekret" || !sameList(d.roots[RouteName(id)], "e1") {
		t.Fatalf("route %+v roots %v", rt.Callback, d.roots)
	}
	if w := e.do("DELETE", "/v2/listeners/"+id, "", "X-Auth-Token", "tok-a"); w.Code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", w.Code, w.Body)
	}
	if err := r.sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(d.removed) != 1 || !strings.HasPrefix(d.removed[0], RouteName(id)) {
		t.Fatalf("removed %v", d.removed)
	}
}

func sameList(got []string, want ...string) bool {
	return strings.Join(got, ",") == strings.Join(want, ",")
}
