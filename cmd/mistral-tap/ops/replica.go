package ops

import "github.com/prometheus/client_golang/prometheus"

// ReplicaStats describe a replica sharing a PostgreSQL store (docs/ha.md).
type ReplicaStats struct {
	Leader bool
	Term   int64
	// Forwarded, Dropped and Buffered count tapped observations sent to
	// the shared queue, dropped because the buffer was full while the
	// database was unreachable, and waiting in memory.
	Forwarded, Dropped uint64
	Buffered           int
}

// AddReplica registers the replica's gauges and counters, read from stats
// at scrape time.
func (m *Metrics) AddReplica(stats func() ReplicaStats) {
	gauge := func(name, help string, f func(ReplicaStats) float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help},
			func() float64 { return f(stats()) }))
	}
	counter := func(name, help string, f func(ReplicaStats) float64) {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help},
			func() float64 { return f(stats()) }))
	}
	gauge("replica_leader", "1 while this replica holds the leader lease (runs the tracker, watcher and deliveries).", func(s ReplicaStats) float64 {
		if s.Leader {
			return 1
		}
		return 0
	})
	gauge("replica_leader_term", "The lease term this replica leads under; 0 when following.", func(s ReplicaStats) float64 { return float64(s.Term) })
	gauge("forward_buffered_observations", "Tapped observations waiting in memory for the shared database.", func(s ReplicaStats) float64 { return float64(s.Buffered) })
	counter("forward_observations_total", "Tapped observations appended to the shared queue.", func(s ReplicaStats) float64 { return float64(s.Forwarded) })
	counter("forward_dropped_observations_total", "Tapped observations dropped because the buffer was full while the database was unreachable (the watcher derives them later).", func(s ReplicaStats) float64 { return float64(s.Dropped) })
}
