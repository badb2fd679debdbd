package shoptest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jetfold/jetfold/pipeline"
)

// TestPartitionOfAgreesWithPipeline checks the oracle's own FNV-1a against the runtime's on a
// few thousand keys, for several partition counts.
func TestPartitionOfAgreesWithPipeline(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 1))
	keys := []string{"", "a", "user-0", "ünïcode", "with.dots", "none"}
	for i := range 4000 {
		keys = append(keys, "user-"+strconv.Itoa(i), strconv.FormatUint(rng.Uint64(), 36))
	}
	for _, n := range []int{0, 1, 2, 3, 4, 7, 16, 256} {
		seen := map[int]bool{}
		for _, k := range keys {
			got, want := partitionOf(k, n), pipeline.PartitionOf(k, n)
			if got != want {
				t.Fatalf("key %q among %d: oracle partition %d, pipeline.PartitionOf %d", k, n, got, want)
			}
			seen[got] = true
		}
		if want := max(n, 1); len(seen) != want {
			t.Errorf("%d keys fell into %d partitions of %d", len(keys), len(seen), want)
		}
	}
}

// keyIn returns a user whose key is in partition part of n (user-<i>, the smallest i).
func keyIn(t *testing.T, part, n int) string {
	t.Helper()
	for i := range 1000 {
		if k := "user-" + strconv.Itoa(i); partitionOf(k, n) == part {
			return k
		}
	}
	t.Fatalf("no user in partition %d of %d", part, n)
	return ""
}

// at is an event time: Base plus d ("70s").
func at(d string) string {
	x, err := time.ParseDuration(d)
	if err != nil {
		panic(err)
	}
	return Base.Add(x).Format(time.RFC3339Nano)
}

// TestStatefulOracleN checks the partitioned oracle on small streams of 2 partitions, user a
// in partition 0 and b in 1: which partition's watermark each kind of event moves, lateness
// and timers per partition, dead letters owned by the event's partition. Each case gives the
// late sequences, the timers fired (key@sequence of the event whose step fired it) and
// pending, and the dead letters per partition, with one partition and with two.
func TestStatefulOracleN(t *testing.T) {
	const n = 2
	a, b := keyIn(t, 0, n), keyIn(t, 1, n)
	type want struct {
		late           []uint64
		fired, pending []string
		dead           []int // per partition
	}
	tests := []struct {
		name     string
		payloads []string
		one, two want
	}{{
		name: "lateness per partition: b's time does not make a's event late",
		payloads: []string{
			`{"type":"order","user_id":"` + a + `","id":"1","amount":1,"ts":"` + at("10s") + `"}`,
			`{"type":"order","user_id":"` + b + `","id":"2","amount":1,"ts":"` + at("70s") + `"}`,
			`{"type":"order","user_id":"` + a + `","id":"3","amount":1,"ts":"` + at("50s") + `"}`, // window ends at 60s
		},
		one: want{late: []uint64{3}, dead: []int{1}},
		two: want{dead: []int{0, 0}},
	}, {
		name: "a keyless event with a time moves the watermark of partition seq mod n",
		payloads: []string{
			`{"type":"order","user_id":"` + b + `","id":"1","amount":1,"ts":"` + at("10s") + `"}`,
			`{"type":"order","user_id":"` + a + `","id":"2","amount":1,"ts":"` + at("10s") + `"}`,
			`{"type":"order","id":"3","ts":"` + at("70s") + `"}`, // seq 3: partition 1, a dead letter
			`{"type":"order","user_id":"` + a + `","id":"4","amount":1,"ts":"` + at("50s") + `"}`,
			`{"type":"order","user_id":"` + b + `","id":"5","amount":1,"ts":"` + at("50s") + `"}`,
		},
		one: want{late: []uint64{4, 5}, dead: []int{3}},
		two: want{late: []uint64{5}, dead: []int{0, 2}},
	}, {
		name: "a filtered heartbeat with a user moves its user's partition; a time that does not parse moves none",
		payloads: []string{
			`{"type":"add","user_id":"` + a + `","id":"1","ts":"` + at("10s") + `"}`,
			`{"type":"heartbeat","user_id":"` + b + `","ts":"` + at("5m") + `"}`,
			`{"type":"add","user_id":"` + a + `","id":"3","ts":"later"}`, // a dead letter
			`{"type":"heartbeat","user_id":"` + a + `","ts":"` + at("100s") + `"}`,
		},
		one: want{fired: []string{a + "@2"}, dead: []int{1}},
		two: want{fired: []string{a + "@4"}, dead: []int{1, 0}},
	}, {
		name: "a timer fires when its own partition's watermark passes",
		payloads: []string{
			`{"type":"add","user_id":"` + a + `","id":"1","ts":"` + at("0s") + `"}`,
			`{"type":"add","user_id":"` + b + `","id":"2","ts":"` + at("100s") + `"}`,
		},
		one: want{fired: []string{a + "@2"}, pending: []string{b}, dead: []int{0}},
		two: want{pending: []string{a, b}, dead: []int{0, 0}},
	}, {
		name: "dedupe remembers within a partition: until its own watermark passes first + within",
		payloads: []string{
			`{"type":"add","user_id":"` + a + `","id":"x","ts":"` + at("0s") + `"}`,
			`{"type":"order","user_id":"` + b + `","id":"y","amount":1,"ts":"` + at("122s") + `"}`,
			// a repeat of x before 0 + 2m: dropped where the watermark is its own (118s), a new
			// sighting (restarting a's timer) where it is b's 122s
			`{"type":"add","user_id":"` + a + `","id":"x","ts":"` + at("118s") + `"}`,
		},
		one: want{fired: []string{a + "@2"}, pending: []string{a}, dead: []int{0}},
		two: want{fired: []string{a + "@3"}, dead: []int{0, 0}},
	}, {
		name: "an undecodable payload is a dead letter of partition seq mod n and moves nothing",
		payloads: []string{
			`{"type":"add","user_id":"` + b + `","id":"1","ts":"` + at("0s") + `"}`,
			`{"type":`,
			`{"type":"add","user_id":"` + b + `","id":"3","ts":"` + at("10s") + `"}`,
		},
		one: want{pending: []string{b}, dead: []int{1}},
		two: want{pending: []string{b}, dead: []int{1, 0}},
	}}
	got := func(ws []StatefulWant) want {
		var g want
		w := MergeStateful(ws)
		for _, d := range w.Windows.Dead {
			g.late = append(g.late, d.Seq)
		}
		for _, f := range w.Timers.Fired {
			g.fired = append(g.fired, f.Key+"@"+strconv.FormatUint(f.By, 10))
		}
		for _, p := range w.Timers.Pending {
			g.pending = append(g.pending, p.Key)
		}
		for _, p := range ws {
			g.dead = append(g.dead, p.Dead)
		}
		slices.Sort(g.pending)
		return g
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payloads := make([][]byte, len(tt.payloads))
			for i, p := range tt.payloads {
				payloads[i] = []byte(p)
			}
			bySeq := func(seq uint64) int { return int(seq % n) }
			for _, c := range []struct {
				parts int
				want  want
			}{{1, tt.one}, {n, tt.two}} {
				slices.Sort(c.want.pending)
				g := got(StatefulOracleParts(payloads, c.parts, bySeq))
				if fmt.Sprint(g) != fmt.Sprint(c.want) {
					t.Errorf("%d partitions: late %v, fired %v, pending %v, dead per partition %v; want %v, %v, %v, %v",
						c.parts, g.late, g.fired, g.pending, g.dead, c.want.late, c.want.fired, c.want.pending, c.want.dead)
				}
			}
		})
	}
}

// TestWithClockProbes checks the probes: three after every every-th payload, dated ahead of
// the latest event time before them, none without one before.
func TestWithClockProbes(t *testing.T) {
	p := Workload(1, 100, 10)
	out := WithClockProbes(p, 40, 8*time.Second)
	if len(out) != len(p)+6 {
		t.Fatalf("%d payloads, want %d", len(out), len(p)+6)
	}
	if string(out[39]) != string(p[39]) || string(out[43]) != string(p[40]) {
		t.Fatalf("the first probes are not after payload 40: %s", out[40])
	}
	w := StatefulOracle(out)
	if len(WithClockProbes(p, 0, time.Second)) != len(p) {
		t.Error("every 0 changed the payloads")
	}
	// A keyless add, a heartbeat with a user and an add with a bad time: two dead letters each.
	if base := StatefulOracle(p); w.Dead < base.Dead+4 {
		t.Errorf("%d dead letters with the probes, %d without: want at least 4 more", w.Dead, base.Dead)
	}
}
