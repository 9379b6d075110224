package pgstore

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// LeaderChannel is the NOTIFY channel a resigning leader signals, so that a
// follower takes over at once instead of at its next attempt.
const LeaderChannel = "mistral_tap_leader"

// Acquire takes the lease name for holder for ttl, or renews it if holder
// already holds it under term (0: not held). It returns the term now held
// (a new one after a takeover or after holder's own lease had expired), or
// 0 and no error when another holder's lease is still valid. Expiry is by
// the database's clock, so the replicas' clocks do not matter.
func (s *Store) Acquire(ctx context.Context, name, holder string, term int64, ttl time.Duration) (int64, error) {
	var got int64
	err := s.pool.QueryRow(ctx, `INSERT INTO leases AS l (name, holder, term, expires_at)
		VALUES ($1, $2, 1, clock_timestamp() + $4 * interval '1 millisecond')
		ON CONFLICT (name) DO UPDATE SET
			term = CASE WHEN l.holder = excluded.holder AND l.term = $3 AND l.expires_at > clock_timestamp()
				THEN l.term ELSE l.term + 1 END,
			holder = excluded.holder, expires_at = excluded.expires_at
		WHERE (l.holder = excluded.holder AND l.term = $3) OR l.expires_at <= clock_timestamp()
		RETURNING term`, name, holder, term, ttl.Milliseconds()).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, s.wrap("acquiring lease "+name, err)
	}
	return got, nil
}

// Resign ends holder's lease under term at once and notifies LeaderChannel.
func (s *Store) Resign(ctx context.Context, name, holder string, term int64) error {
	b := &pgx.Batch{}
	b.Queue(`UPDATE leases SET expires_at = clock_timestamp() WHERE name = $1 AND holder = $2 AND term = $3`, name, holder, term)
	b.Queue(`SELECT pg_notify($1, $2)`, LeaderChannel, name)
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return s.wrap("resigning lease "+name, err)
	}
	return nil
}

// LeaseInfo is a lease row, for status output.
type LeaseInfo struct {
	Holder    string    `json:"holder"`
	Term      int64     `json:"term"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Lease reads the lease name; ok is false when nobody ever held it.
func (s *Store) Lease(ctx context.Context, name string) (LeaseInfo, bool, error) {
	var li LeaseInfo
	err := s.pool.QueryRow(ctx, `SELECT holder, term, expires_at FROM leases WHERE name = $1`, name).
		Scan(&li.Holder, &li.Term, &li.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return LeaseInfo{}, false, nil
	}
	if err != nil {
		return LeaseInfo{}, false, s.wrap("reading lease "+name, err)
	}
	return li, true, nil
}
