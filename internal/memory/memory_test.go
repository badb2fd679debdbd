package memory

import (
	"math"
	"os"
	"runtime/debug"
	"testing"
)

// TestSetLimit: GOMEMLIMIT wins and is left alone; otherwise the limit is the container's or
// the caches' budget, and it is the one in force.
func TestSetLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })

	t.Setenv("GOMEMLIMIT", "123MiB")
	debug.SetMemoryLimit(123 << 20)
	if limit, from := SetLimit(Options{CacheKeys: 1_000_000}); limit != 123<<20 || from != "GOMEMLIMIT" {
		t.Errorf("with GOMEMLIMIT: %d from %q, want it untouched", limit, from)
	}

	os.Unsetenv("GOMEMLIMIT") // t.Setenv restores it
	debug.SetMemoryLimit(math.MaxInt64)
	limit, from := SetLimit(Options{CacheKeys: 100_000})
	switch from {
	case "cache budget":
		if want := int64(Base + 100_000*BytesPerKey); limit != want {
			t.Errorf("budget %d, want %d", limit, want)
		}
	case "cgroup": // a container with a limit: 90% of it
		if limit <= 0 || limit == math.MaxInt64 {
			t.Errorf("cgroup limit %d", limit)
		}
	default:
		t.Fatalf("limit from %q", from)
	}
	if got := debug.SetMemoryLimit(-1); got != limit {
		t.Errorf("limit in force %d, SetLimit said %d", got, limit)
	}
}

func TestBudget(t *testing.T) {
	for _, tt := range []struct {
		keys int
		want int64
	}{{0, Base}, {-5, Base}, {100_000, Base + 100_000*1024}, {10_000_000, Base + 10_000_000*1024}} {
		if got := Budget(tt.keys); got != tt.want {
			t.Errorf("Budget(%d) = %d, want %d", tt.keys, got, tt.want)
		}
	}
}
