package gctune

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCgroupMemoryLimit: v2 and v1 limits, at the process's cgroup path or
// at the mount's top, and the spellings of "no limit".
func TestCgroupMemoryLimit(t *testing.T) {
	cases := []struct {
		name   string
		files  map[string]string
		want   int64
		wantOK bool
	}{
		{"v2 in a container (own namespace)", map[string]string{
			"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/memory.max": "268435456\n"}, 268435456, true},
		{"v2 at the process's path (systemd slice)", map[string]string{
			"proc/self/cgroup": "0::/system.slice/mistral-tap.service\n",
			"sys/fs/cgroup/system.slice/mistral-tap.service/memory.max": "134217728\n",
			"sys/fs/cgroup/memory.max":                                  "max\n"}, 134217728, true},
		{"v2 unlimited", map[string]string{
			"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/memory.max": "max\n"}, 0, false},
		{"v1 limited", map[string]string{
			"proc/self/cgroup":                           "4:memory:/kubepods/pod1/c1\n3:cpuset:/\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "536870912\n"}, 536870912, true},
		{"v1 with joined controllers at its path", map[string]string{
			"proc/self/cgroup": "7:cpu,memory:/x\n",
			"sys/fs/cgroup/memory/x/memory.limit_in_bytes": "1073741824"}, 1073741824, true},
		{"v1 unlimited", map[string]string{
			"proc/self/cgroup":                           "4:memory:/\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n"}, 0, false},
		{"no cgroup files", map[string]string{}, 0, false},
		{"garbage", map[string]string{"sys/fs/cgroup/memory.max": "lots\n"}, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			for p, content := range c.files {
				full := filepath.Join(root, p)
				if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, ok := cgroupMemoryLimit(root)
			if got != c.want || ok != c.wantOK {
				t.Errorf("cgroupMemoryLimit = %d, %v; want %d, %v", got, ok, c.want, c.wantOK)
			}
		})
	}
}
