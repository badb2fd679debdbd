package shoptest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/jetfold/jetfold/internal/oracle"
)

// The partitioned oracle models what the runtime does (pipeline/partition.go, runner.go,
// process.go), written down here from reading it:
//
//   - A payload that does not decode belongs, in the default layout, to the partition of its
//     stream sequence modulo N; it is that partition's dead letter. It moves no watermark (the
//     decode fails before the time expression is read).
//   - A decoded event whose key cannot be computed (the key expression fails: a missing or
//     null user_id, an empty string) belongs to the partition of its sequence modulo N too;
//     one whose key can be computed to FNV-1a(key) mod N. The foreign-partition check comes
//     before the time is read: another partition's event moves nothing here.
//   - Then the event's own partition reads its time: when valid and later than the watermark,
//     that partition's watermark moves to it (closing windows, firing timers) before any
//     operator runs, whatever becomes of the event after. So a heartbeat the filter drops,
//     or an event the window dead-letters (no key, late), still moves its partition's
//     watermark; an event without a valid time moves none. A keyless event with a valid time
//     moves the watermark of partition seq mod N.
//   - With source.partitioned_by_subject, an event belongs to the partition its subject is
//     stored under, whatever its key (one whose computable key is in another partition is a
//     dead letter, which this oracle does not model: give every keyed event its key's
//     subject); so the rule for events whose key cannot be computed is the subject's
//     partition instead of seq mod N (see the keyless argument of [StatefulOracleLayout]).
//
// Each partition is then the unpartitioned pipeline over its subsequence of the stream: its own
// watermark, its own dedupe memory (ids are remembered per partition), its own timers and
// windows (keys never span partitions). pipeline's TestPartitionedStatefulOracle checks this
// against each partition run alone. Two things the model leaves out, being outside the
// README's promise: an id repeated under keys of two partitions (the dedupe projection is one
// bucket keyed by id, so whether the second partition sees the first's sighting depends on
// when it was committed), and an event on a subject of another partition than its key's.
// Keys are computed as the runtime's key expression does (expr.Text): a number is a key, as
// its text, which the unpartitioned oracle before it (a string or nothing) did not allow; the
// workload has none.

// partitionOf is the partition of key among n: FNV-1a (32 bits) of the key modulo n, written
// here independently of pipeline.PartitionOf (a test checks they agree).
func partitionOf(key string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

// StatefulOracleN is [StatefulOracle] for the [Stateful] pipeline with `partitions: n` in the
// default layout (every partition reads the whole stream): the events are split into each
// partition's subsequence (stream order and sequences kept), the models run on each with its
// own watermark, and the results are merged. An event whose key cannot be computed belongs to
// the partition of its sequence modulo n. n <= 1 is the unpartitioned pipeline.
func StatefulOracleN(payloads [][]byte, n int) StatefulWant {
	n = max(n, 1)
	return StatefulOracleLayout(payloads, n, func(seq uint64) int { return int(seq % uint64(n)) })
}

// StatefulOracleLayout is [StatefulOracleN] where keyless(seq) gives the partition of the event
// of stream sequence seq when its key cannot be computed (it does not decode, or has no
// user_id). With source.partitioned_by_subject that is the partition of the subject it was
// published on.
func StatefulOracleLayout(payloads [][]byte, n int, keyless func(seq uint64) int) StatefulWant {
	return MergeStateful(StatefulOracleParts(payloads, n, keyless))
}

// StatefulOracleParts returns what each of the n partitions of the [Stateful] pipeline leaves
// (see [StatefulOracleLayout] for keyless, which is not called for n <= 1): the i-th is
// partition i's windows, timers and dead letters, its Watermarks its one watermark.
func StatefulOracleParts(payloads [][]byte, n int, keyless func(seq uint64) int) []StatefulWant {
	n = max(n, 1)
	events := make([][]oracle.Event, n)
	out := make([]StatefulWant, n)
	for i, p := range payloads {
		seq := uint64(i + 1)
		ev, dead, keyed := statefulEvent(seq, p)
		part := 0
		switch {
		case n == 1:
		case keyed:
			part = partitionOf(ev.Key, n)
		default:
			if part = keyless(seq); part < 0 || part >= n {
				panic(fmt.Sprintf("shoptest: keyless(%d) = %d, not a partition of %d", seq, part, n))
			}
		}
		if dead {
			out[part].Dead++
		}
		events[part] = append(events[part], ev)
	}
	for i := range out {
		out[i].Windows, out[i].Timers = statefulModels(events[i])
		out[i].Dead += len(out[i].Windows.Dead)
		out[i].Watermarks = []time.Time{out[i].Windows.Watermark}
	}
	return out
}

// MergeStateful merges what the partitions of a pipeline leave into what the pipeline leaves:
// the union of their windows and timers, dead letters, closes and fires in stream order, the
// watermarks one per partition (Windows.Watermark and Timers.Watermark the greatest).
func MergeStateful(parts []StatefulWant) StatefulWant {
	w := StatefulWant{Windows: oracle.WindowResult{State: map[string]map[string]any{}}}
	for _, p := range parts {
		w.Dead += p.Dead
		for k, v := range p.Windows.State {
			w.Windows.State[k] = v
		}
		w.Windows.Closed = append(w.Windows.Closed, p.Windows.Closed...)
		w.Windows.Dead = append(w.Windows.Dead, p.Windows.Dead...)
		if p.Windows.Watermark.After(w.Windows.Watermark) {
			w.Windows.Watermark = p.Windows.Watermark
		}
		w.Timers.Fired = append(w.Timers.Fired, p.Timers.Fired...)
		w.Timers.Pending = append(w.Timers.Pending, p.Timers.Pending...)
		if p.Timers.Watermark.After(w.Timers.Watermark) {
			w.Timers.Watermark = p.Timers.Watermark
		}
		w.Watermarks = append(w.Watermarks, p.Watermarks...)
	}
	slices.SortStableFunc(w.Windows.Dead, func(a, b oracle.DeadLetter) int { return cmp.Compare(a.Seq, b.Seq) })
	slices.SortStableFunc(w.Windows.Closed, func(a, b oracle.ClosedWindow) int { return cmp.Compare(a.By, b.By) })
	slices.SortStableFunc(w.Timers.Fired, func(a, b oracle.FiredTimer) int { return cmp.Compare(a.By, b.By) })
	slices.SortFunc(w.Timers.Pending, func(a, b oracle.Timer) int { return cmp.Compare(a.Key, b.Key) })
	return w
}

// statefulEvent decodes the payload of sequence seq as the [Stateful] pipeline reads it. dead
// tells that the event is a dead letter before the window decides on lateness (it does not
// decode, or it reaches the window without a key or a valid time); keyed that its key can be
// computed (ev.Key).
func statefulEvent(seq uint64, p []byte) (ev oracle.Event, dead, keyed bool) {
	ev = oracle.Event{Seq: seq}
	var m map[string]any
	if json.Unmarshal(p, &m) != nil {
		return ev, true, false // does not decode: no time, no key
	}
	ev.Fields = m
	ev.Type, _ = m["type"].(string)
	ev.Key, keyed = keyText(m["user_id"])
	ts, _ := m["ts"].(string)
	t, err := time.Parse(time.RFC3339Nano, ts)
	ev.Valid = err == nil
	ev.Time = t
	switch {
	case ev.Type == "heartbeat": // filtered
	case !ev.Valid || !keyed:
		dead = true // the window needs a time and a key
	default:
		ev.Reaches = true
	}
	return ev, dead, keyed
}

// keyText is the key `key: event.user_id` computes from v, and whether it can: strings but
// the empty one as they are, integral numbers without a fraction, other numbers and booleans
// as text; null, a missing field, objects and arrays fail.
func keyText(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, t != ""
	case float64:
		if t == math.Trunc(t) && math.Abs(t) < 1<<53 {
			return strconv.FormatInt(int64(t), 10), true
		}
		return strconv.FormatFloat(t, 'g', -1, 64), true
	case bool:
		return strconv.FormatBool(t), true
	default:
		return "", false
	}
}

// statefulModels runs the window, dedupe and timeout models over one pipeline's (or
// partition's) events, in stream order.
func statefulModels(events []oracle.Event) (oracle.WindowResult, oracle.TimeoutResult) {
	amount := func(e oracle.Event) any {
		if a, ok := e.Fields["amount"].(float64); ok {
			return a
		}
		return 0.0
	}
	win := oracle.Windows(events, oracle.WindowSpec{
		Tumbling: time.Minute, Lateness: 5 * time.Second, Retention: 10 * time.Minute, Once: true,
		Aggregates: []oracle.Aggregate{{Name: "n", Fn: "count"}, {Name: "total", Fn: "sum", Value: amount}},
	})
	late := map[uint64]bool{}
	for _, d := range win.Dead {
		late[d.Seq] = true
	}
	reach := slices.Clone(events)
	for i := range reach {
		reach[i].Reaches = reach[i].Reaches && !late[reach[i].Seq]
	}
	kept := oracle.Dedupe(reach, oracle.DedupeSpec{
		ID:     func(e oracle.Event) string { id, _ := e.Fields["id"].(string); return id },
		Within: 2 * time.Minute,
	})
	tim := oracle.Timeouts(oracle.Passed(reach, kept), oracle.TimeoutSpec{
		Start: []string{"add"}, Cancel: []string{"order"}, After: 90 * time.Second, Once: true,
	})
	return win, tim
}

// WithClockProbes returns a copy of payloads with, after every every-th payload, three events
// that exercise which watermark moves, each dated ahead of the latest event time before it:
// a keyless add (a dead letter of the window, which moves the watermark of the partition its
// sequence or subject gives), a heartbeat with a user (filtered, it moves its user's
// partition's watermark) and an add with a user and a time that does not parse (a dead
// letter that moves no watermark). every <= 0 returns payloads unchanged.
func WithClockProbes(payloads [][]byte, every int, ahead time.Duration) [][]byte {
	if every <= 0 {
		return payloads
	}
	out := make([][]byte, 0, len(payloads)+3*len(payloads)/every)
	var latest time.Time
	for i, p := range payloads {
		out = append(out, p)
		var ev event
		if json.Unmarshal(p, &ev) == nil {
			if t, err := time.Parse(time.RFC3339Nano, ev.TS); err == nil && t.After(latest) {
				latest = t
			}
		}
		if (i+1)%every != 0 || latest.IsZero() {
			continue
		}
		ts := latest.Add(ahead).Format(time.RFC3339Nano)
		user := "user-" + strconv.Itoa(i%7)
		for _, probe := range []event{
			{Type: "add", ID: "probe-k-" + strconv.Itoa(i), TS: ts},
			{Type: "heartbeat", UserID: user, TS: ts},
			{Type: "add", UserID: user, ID: "probe-t-" + strconv.Itoa(i), TS: "not a time"},
		} {
			b, _ := json.Marshal(probe)
			out = append(out, b)
		}
	}
	return out
}
