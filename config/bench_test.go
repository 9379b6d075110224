package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func init() {
	if os.Getenv("BENCH_LARGE_CONFIG") != "" {
		benchSizes = append(benchSizes, 200000)
	}
}

// writeManyCallbacks writes a configuration with n minimal callbacks.
func writeManyCallbacks(b *testing.B, n int) string {
	b.Helper()
	var sb strings.Builder
	sb.WriteString("callbacks:\n")
	for i := range n {
		fmt.Fprintf(&sb, "  - name: cb%d\n    events: [\"*\"]\n    url: http://127.0.0.1:8080/h%d\n", i, i)
	}
	path := filepath.Join(b.TempDir(), "many.yaml")
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkLoadManyCallbacks is `validate` on a large file: Load with the
// routing check. Reproduce: go test ./config -run '^$' -bench LoadMany.
func BenchmarkLoadManyCallbacks(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			path := writeManyCallbacks(b, n)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Load(Source{Path: path, Environ: environ(), Check: RoutingCheck}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchSizes are the callback counts BenchmarkLoadManyCallbacks loads;
// BENCH_LARGE_CONFIG=1 adds the 200,000 of the report in issue 11.
var benchSizes = []int{1000, 20000}
