// Package memory sets the Go soft memory limit of a jetfold process for itself: the limit of
// its container when it has one, otherwise a budget computed from its state caches, so that
// the heap does not grow to twice what it holds (the garbage collector's default) when the
// caches are large.
package memory

import (
	"log/slog"
	"math"
	"os"
	"runtime/debug"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// Base is the budget of everything but the state caches: the embedded server's indexes and
// block buffers, the batches in hand and in commit. At 1,000,000 keys the live heap of
// `processor bench --keys 1000000 --cache 100000` peaked at about 520 MB, of which about 50 MB
// was the cache (heap profiles written each time the heap in use grew by 20 MiB, read with
// go tool pprof -sample_index=inuse_space).
const Base = 768 << 20

// BytesPerKey is what a cached key is budgeted: twice the 504 bytes that
// BenchmarkCacheBytesPerKey measures for the four-field state of the bench fold (go test -run
// XXX -bench CacheBytesPerKey -benchtime 1x ./pipeline/state/), for larger states.
const BytesPerKey = 1024

// Options configures [SetLimit].
type Options struct {
	// CacheKeys is how many keys the pipelines the process runs may hold in memory (see
	// pipeline.Pipeline.CacheKeys): their caches and their lookups' replicas.
	CacheKeys int
	// Logger receives one line saying which limit was set; nil discards it.
	Logger *slog.Logger
}

// SetLimit sets the Go soft memory limit, unless GOMEMLIMIT is set (AUTOMEMLIMIT=off keeps the
// container's out of it): 90% of the container's (cgroup) memory limit when there is one,
// otherwise Base plus BytesPerKey per cache key. It returns the limit and where it came from
// ("GOMEMLIMIT", "cgroup" or "cache budget"). The limit is soft: the collector works harder as
// the heap nears it, and lets the heap pass it rather than fail.
func SetLimit(o Options) (int64, string) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		return debug.SetMemoryLimit(-1), "GOMEMLIMIT"
	}
	if limit, err := memlimit.Set(memlimit.WithRatio(0.9), memlimit.WithProvider(memlimit.FromCgroup)); err == nil && limit > 0 && limit != math.MaxInt64 {
		log.Info("memory limit set from the cgroup", "GOMEMLIMIT", limit)
		return limit, "cgroup"
	} else if err != nil {
		log.Debug("no memory limit from the cgroup", "err", err)
	}
	limit := Budget(o.CacheKeys)
	debug.SetMemoryLimit(limit)
	log.Debug("memory limit set from the caches' bounds", "GOMEMLIMIT", limit, "cache_keys", o.CacheKeys)
	return limit, "cache budget"
}

// Budget returns the memory budget of a process whose caches hold at most cacheKeys keys.
func Budget(cacheKeys int) int64 { return Base + int64(max(cacheKeys, 0))*BytesPerKey }
