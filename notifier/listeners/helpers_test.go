package listeners

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/store"
)

func listenerOf(r Request) store.Listener {
	return store.Listener{ID: "id", Scope: r.Scope.Kind, ScopeValue: r.Scope.Value, RootID: "root", Events: r.Events, ExpiresAt: r.ExpiresAt}
}

// memStore is an in-memory listener store with the store's semantics
// (ErrNotFound, the per-project cap, created_at order).
type memStore struct {
	mu        sync.Mutex
	ls        []store.Listener
	openRoots []string
	fail      error
	deleted   []string
	history   map[string][]store.Recorded // by root
	histFail  error                       // History's answer, when set
}

func (m *memStore) CreateListener(_ context.Context, l store.Listener, perProject int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	n := 0
	for _, x := range m.ls {
		if x.ProjectID == l.ProjectID {
			n++
		}
	}
	if perProject > 0 && n >= perProject {
		return fmt.Errorf("%w (project %q)", store.ErrListenerLimit, l.ProjectID)
	}
	m.ls = append(m.ls, l)
	return nil
}

func (m *memStore) Listeners(context.Context) ([]store.Listener, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	return slices.Clone(m.ls), nil
}

func (m *memStore) Listener(_ context.Context, id string) (store.Listener, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range m.ls {
		if l.ID == id {
			return l, nil
		}
	}
	return store.Listener{}, fmt.Errorf("%w: listener %s", store.ErrNotFound, id)
}

func (m *memStore) DeleteListener(_ context.Context, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return false, m.fail
	}
	for i, l := range m.ls {
		if l.ID == id {
			m.ls = slices.Delete(m.ls, i, i+1)
			m.deleted = append(m.deleted, id)
			return true, nil
		}
	}
	return false, nil
}

func (m *memStore) OpenRoots(context.Context, time.Time) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.openRoots), nil
}

func (m *memStore) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.ls)
}

// resource is a Mistral resource the fake authorizer knows.
type fakeResource struct {
	project, root string
	forbidden     bool
}

// fakeAuth is Mistral as an Authorizer: tokens scoped to projects, and
// resources visible to their project only (Mistral answers 404 for
// another project's execution).
type fakeAuth struct {
	open   bool              // Mistral's auth is off
	tokens map[string]string // token -> project; a project "" token is valid but its project unknown
	res    map[Scope]fakeResource
	down   error
	asked  []string // tokens Authorize and Caller were called with
	mu     sync.Mutex
}

func (f *fakeAuth) note(tok string) {
	f.mu.Lock()
	f.asked = append(f.asked, tok)
	f.mu.Unlock()
}

func (f *fakeAuth) Authorize(_ context.Context, token string, s Scope) (Grant, error) {
	f.note(token)
	if f.down != nil {
		return Grant{}, f.down
	}
	project, ok := f.tokens[token]
	if !f.open && !ok {
		return Grant{}, fmt.Errorf("execution %s: %w", s.Value, ErrUnauthorized)
	}
	r, found := f.res[s]
	switch {
	case !found || (!f.open && project != "" && r.project != project):
		return Grant{}, fmt.Errorf("%s %s: %w", s.Kind, s.Value, ErrNotFound)
	case r.forbidden:
		return Grant{}, fmt.Errorf("%s %s: %w", s.Kind, s.Value, ErrForbidden)
	}
	return Grant{ProjectID: r.project, RootID: r.root}, nil
}

func (f *fakeAuth) Caller(_ context.Context, token string) (Grant, error) {
	f.note(token)
	if f.down != nil {
		return Grant{}, f.down
	}
	if f.open {
		return Grant{Admin: true}, nil
	}
	project, ok := f.tokens[token]
	switch {
	case !ok:
		return Grant{}, ErrUnauthorized
	case project == "":
		return Grant{}, ErrNoProject
	}
	return Grant{ProjectID: project}, nil
}

func (m *memStore) History(_ context.Context, roots []string) ([]store.Recorded, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.histFail != nil {
		return nil, m.histFail
	}
	var out []store.Recorded
	for _, r := range roots {
		out = append(out, m.history[r]...)
	}
	return out, nil
}
