package bench

import (
	"fmt"
	"io"
	"os"
	"runtime/metrics"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/streams"
)

// The latency breakdown: with JETFOLD_BENCH_BREAKDOWN=1 in the environment, the latency mode
// prints to stderr where the latency of an event goes (publish to launch of its commit, the
// commit itself, whether the batch waited for the commit before it), per-commit statistics,
// and the GC pauses and scheduling latencies of the run (runtime/metrics). With =2 it also
// subscribes (core NATS, on the bench's connection) to the KV and derived-event subjects, so as
// to split each commit into its steps by when their messages reach the server: outputs (up to
// the first key write), keys (first to last key write), checkpoint (last key write to the
// checkpoint write) and the rest (the checkpoint's ack and the source ack).

type breakdown struct {
	mode string
	reg  *prometheus.Registry
	m    *pipeline.Metrics

	before []metrics.Sample
	after  []metrics.Sample

	subs []*nats.Subscription
	mu   sync.Mutex
	seen []seenMsg // with =2: the messages of the commits, by arrival
}

type seenMsg struct {
	at   time.Time
	kind byte // 'o' output, 'k' key, 'c' checkpoint
}

var rtMetrics = []string{"/gc/pauses:seconds", "/sched/latencies:seconds", "/gc/cycles/total:gc-cycles"}

// newBreakdown returns nil unless JETFOLD_BENCH_BREAKDOWN is set.
func newBreakdown() *breakdown {
	mode := os.Getenv("JETFOLD_BENCH_BREAKDOWN")
	if mode == "" || mode == "0" {
		return nil
	}
	return &breakdown{mode: mode, reg: prometheus.NewRegistry()}
}

// metrics returns the pipeline metrics to read the batch durations from (nil: the default).
func (b *breakdown) metrics() *pipeline.Metrics {
	if b == nil {
		return nil
	}
	b.m = pipeline.NewMetrics(b.reg)
	return b.m
}

func (b *breakdown) start(js jetstream.JetStream) {
	if b == nil {
		return
	}
	mode := b.mode
	b.before = samples()
	if mode == "2" {
		nc := js.Conn()
		add := func(subj string, kind func(string) byte) {
			s, err := nc.Subscribe(subj, func(m *nats.Msg) {
				now := time.Now()
				b.mu.Lock()
				b.seen = append(b.seen, seenMsg{now, kind(m.Subject)})
				b.mu.Unlock()
			})
			if err == nil {
				_ = s.SetPendingLimits(-1, -1)
				b.subs = append(b.subs, s)
			}
		}
		add("$KV.>", func(s string) byte {
			if strings.HasPrefix(s, "$KV."+streams.CheckpointBucket+".") {
				return 'c'
			}
			return 'k'
		})
		add("benchout.>", func(string) byte { return 'o' })
	}
}

func samples() []metrics.Sample {
	s := make([]metrics.Sample, len(rtMetrics))
	for i, n := range rtMetrics {
		s[i].Name = n
	}
	metrics.Read(s)
	return s
}

func (b *breakdown) stop() {
	b.after = samples()
	for _, s := range b.subs {
		_ = s.Unsubscribe()
	}
}

// histDelta returns the quantiles q of the histogram after minus before, and its count.
func histDelta(before, after *metrics.Float64Histogram, q ...float64) ([]float64, uint64) {
	counts := slices.Clone(after.Counts)
	var n uint64
	for i := range counts {
		counts[i] -= before.Counts[i]
		n += counts[i]
	}
	res := make([]float64, len(q))
	for k, qq := range q {
		target := uint64(qq * float64(n))
		var c uint64
		for i, x := range counts {
			c += x
			if c > target {
				res[k] = after.Buckets[i+1]
				break
			}
		}
		if qq >= 1 || res[k] > 1e9 { // the highest non-empty bucket's lower bound
			for i := len(counts) - 1; i >= 0; i-- {
				if counts[i] > 0 {
					res[k] = after.Buckets[i]
					break
				}
			}
		}
		if n == 0 {
			res[k] = 0
		}
	}
	return res, n
}

func (b *breakdown) report(w io.Writer, pubs []time.Time, seqs []uint64, commits []mark, lat []time.Duration) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/1e6) }
	pct := func(ds []time.Duration, q float64) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[min(int(float64(len(s))*q), len(s)-1)]
	}
	row := func(name string, ds []time.Duration) {
		fmt.Fprintf(w, "  %-34s p50 %9s  p90 %9s  p99 %9s  max %9s  mean %9s\n", name,
			ms(pct(ds, .5)), ms(pct(ds, .9)), ms(pct(ds, .99)), ms(pct(ds, 1)), ms(mean(ds)))
	}
	fmt.Fprintf(w, "breakdown (%d events, %d commits)\n", len(lat), len(commits))
	row("latency", lat)

	// per commit: launch = end - duration; its events are those between the last commit's
	// sequence and its own; held: it launched within 1ms of the previous commit's end, so the
	// batch was (likely) due earlier and waited for the commit in flight.
	type cinfo struct {
		launch   time.Time
		first    int // index of its first event in pubs (-1: none)
		held     bool
		prevEnd  time.Time
		firstPub time.Time
	}
	ci := make([]cinfo, len(commits))
	for j, c := range commits {
		ci[j].launch = c.at.Add(-c.dur)
		ci[j].first = -1
		if j > 0 {
			ci[j].prevEnd = commits[j-1].at
			ci[j].held = ci[j].launch.Sub(commits[j-1].at) < time.Millisecond
		}
	}
	// per event components
	n := len(lat)
	toLaunch := make([]time.Duration, n)
	commitDur := make([]time.Duration, n)
	heldFor := make([]time.Duration, n) // the part of toLaunch after the batch was (probably) due: prev commit end - max(pub + linger)
	eventHeld := make([]bool, n)
	cidx := make([]int, n)
	for i := range n {
		j := sort.Search(len(commits), func(k int) bool { return commits[k].seq >= seqs[i] })
		cidx[i] = j
		if ci[j].first < 0 || i < ci[j].first {
			ci[j].first = i
			ci[j].firstPub = pubs[i]
		}
		toLaunch[i] = ci[j].launch.Sub(pubs[i])
		commitDur[i] = commits[j].dur
	}
	for i := range n {
		j := cidx[i]
		if ci[j].held {
			eventHeld[i] = true
			// the batch's first event was due by linger (5ms) at the earliest: what it waited beyond
			due := ci[j].firstPub.Add(5 * time.Millisecond)
			if d := ci[j].launch.Sub(due); d > 0 {
				heldFor[i] = min(d, toLaunch[i])
			}
		}
	}
	row("publish -> commit launch", toLaunch)
	row("commit duration (event-weighted)", commitDur)
	row("held by commit in flight (est.)", heldFor)
	heldN := 0
	for _, h := range eventHeld {
		if h {
			heldN++
		}
	}
	fmt.Fprintf(w, "  events whose batch launched at the previous commit's end: %.1f%%\n", 100*float64(heldN)/float64(max(n, 1)))

	// the tail: events at or above p99, and above p90
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, c int) bool { return lat[order[a]] < lat[order[c]] })
	tail := func(name string, from int) {
		var tl, tc, th []time.Duration
		held := 0
		var bsz, bkeys []time.Duration
		for _, i := range order[from:] {
			tl = append(tl, toLaunch[i])
			tc = append(tc, commitDur[i])
			th = append(th, heldFor[i])
			if eventHeld[i] {
				held++
			}
			bsz = append(bsz, time.Duration(commits[cidx[i]].events))
			bkeys = append(bkeys, time.Duration(commits[cidx[i]].keys))
		}
		cnt := max(len(tl), 1)
		var lt []time.Duration
		for _, i := range order[from:] {
			lt = append(lt, lat[i])
		}
		fmt.Fprintf(w, "  %s (%d events): mean latency %s = publish->launch %s (of which held by the commit in flight %s) + commit %s; held %.0f%%; batch events mean %d, keys mean %d\n",
			name, len(tl), ms(mean(lt)), ms(mean(tl)), ms(mean(th)), ms(mean(tc)), 100*float64(held)/float64(cnt), int(mean(bsz)), int(mean(bkeys)))
	}
	tail("events >= p90", n*90/100)
	tail("events >= p99", n*99/100)

	// per commit statistics
	var durs, gaps, spans []time.Duration
	var evs, ks []time.Duration
	heldC := 0
	for j, c := range commits {
		if ci[j].first < 0 {
			continue
		}
		durs = append(durs, c.dur)
		evs = append(evs, time.Duration(c.events))
		ks = append(ks, time.Duration(c.keys))
		spans = append(spans, ci[j].launch.Sub(ci[j].firstPub))
		if j > 0 {
			gaps = append(gaps, ci[j].launch.Sub(commits[j-1].at))
		}
		if ci[j].held {
			heldC++
		}
	}
	fmt.Fprintf(w, "per commit (%d with events; %.0f%% launched within 1ms of the previous end):\n", len(durs), 100*float64(heldC)/float64(max(len(durs), 1)))
	row("commit duration", durs)
	row("first publish -> launch", spans)
	row("previous end -> launch", gaps)
	fmt.Fprintf(w, "  events per commit: p50 %d p90 %d max %d; keys per commit: p50 %d p90 %d max %d\n",
		pct(evs, .5), pct(evs, .9), pct(evs, 1), pct(ks, .5), pct(ks, .9), pct(ks, 1))
	var pend []time.Duration
	for _, c := range commits {
		pend = append(pend, time.Duration(c.pending))
	}
	fmt.Fprintf(w, "  source events not yet delivered after a commit (lag): p50 %d p90 %d p99 %d max %d\n",
		pct(pend, .5), pct(pend, .9), pct(pend, .99), pct(pend, 1))
	if mfs, err := b.reg.Gather(); err == nil {
		for _, mf := range mfs {
			if mf.GetName() != "jetfold_batch_duration_seconds" && mf.GetName() != "jetfold_end_to_end_latency_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				h := m.GetHistogram()
				fmt.Fprintf(w, "  %s (per batch; cumulative buckets):", mf.GetName())
				for _, bk := range h.GetBucket() {
					fmt.Fprintf(w, " <=%gms:%d", bk.GetUpperBound()*1e3, bk.GetCumulativeCount())
				}
				fmt.Fprintf(w, " n=%d mean %.2fms\n", h.GetSampleCount(), h.GetSampleSum()/float64(max(h.GetSampleCount(), 1))*1e3)
			}
		}
	}
	// commit duration by size
	type bucket struct {
		lo, hi int
		d      []time.Duration
	}
	bks := []*bucket{{0, 50, nil}, {50, 100, nil}, {100, 200, nil}, {200, 500, nil}, {500, 1000, nil}, {1000, 2000, nil}, {2000, 5000, nil}, {5000, 1 << 30, nil}}
	for j, c := range commits {
		if ci[j].first < 0 {
			continue
		}
		for _, bk := range bks {
			if c.keys >= bk.lo && c.keys < bk.hi {
				bk.d = append(bk.d, c.dur)
			}
		}
	}
	for _, bk := range bks {
		if len(bk.d) > 0 {
			row(fmt.Sprintf("commit, keys [%d,%d) n=%d", bk.lo, bk.hi, len(bk.d)), bk.d)
		}
	}

	// commit steps from the subscriptions
	if len(b.subs) > 0 {
		b.mu.Lock()
		seen := slices.Clone(b.seen)
		b.mu.Unlock()
		var outs, keys, cps, rest []time.Duration
		k := 0
		for j, c := range commits {
			launch := ci[j].launch
			for k < len(seen) && seen[k].at.Before(launch) {
				k++
			}
			var firstKey, lastKey, cp time.Time
			for ; k < len(seen) && !seen[k].at.After(c.at); k++ {
				switch seen[k].kind {
				case 'k':
					if firstKey.IsZero() {
						firstKey = seen[k].at
					}
					lastKey = seen[k].at
				case 'c':
					cp = seen[k].at
				}
			}
			if firstKey.IsZero() || cp.IsZero() {
				continue
			}
			outs = append(outs, firstKey.Sub(launch))
			keys = append(keys, lastKey.Sub(firstKey))
			cps = append(cps, cp.Sub(lastKey))
			rest = append(rest, c.at.Sub(cp))
		}
		fmt.Fprintf(w, "commit steps, by arrival of their messages at a subscriber (%d commits):\n", len(outs))
		row("launch -> first key (outputs)", outs)
		row("first -> last key (keys)", keys)
		row("last key -> checkpoint msg", cps)
		row("checkpoint msg -> commit end", rest)
	}

	// runtime
	if b.after != nil {
		for i, name := range rtMetrics {
			be, af := b.before[i], b.after[i]
			switch af.Value.Kind() {
			case metrics.KindFloat64Histogram:
				q, cnt := histDelta(be.Value.Float64Histogram(), af.Value.Float64Histogram(), .5, .9, .99, .999, 1)
				fmt.Fprintf(w, "  %-24s n=%d p50 %.3fms p90 %.3fms p99 %.3fms p99.9 %.3fms max(bucket low) %.3fms\n", name, cnt, q[0]*1e3, q[1]*1e3, q[2]*1e3, q[3]*1e3, q[4]*1e3)
			case metrics.KindUint64:
				fmt.Fprintf(w, "  %-24s %d\n", name, af.Value.Uint64()-be.Value.Uint64())
			}
		}
	}
}

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var s time.Duration
	for _, d := range ds {
		s += d
	}
	return s / time.Duration(len(ds))
}
