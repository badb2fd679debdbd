package window

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/event"
)

// TestDueHeap checks that the heap pops windows in closing order: end, key, start.
func TestDueHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	var h dueHeap
	var all []due
	for range 2000 {
		d := due{at: rng.Int64N(50), start: rng.Int64N(5), key: string(rune('a' + rng.IntN(4)))}
		h.push(d)
		all = append(all, d)
	}
	slices.SortFunc(all, due.compare)
	for i, want := range all {
		if got := h.pop(); got != want {
			t.Fatalf("pop %d: %+v, want %+v", i, got, want)
		}
	}
	if len(h) != 0 {
		t.Fatalf("%d left", len(h))
	}
}

// TestQueue checks the FIFO of closed windows across its compactions.
func TestQueue(t *testing.T) {
	var q queue
	next, want := int64(0), int64(0)
	for round := range 50 {
		for range 100 + round*10 {
			q.push(due{at: next})
			next++
		}
		for range 90 + round*10 {
			d, ok := q.first()
			if !ok || d.at != want {
				t.Fatalf("first %+v %t, want at %d", d, ok, want)
			}
			q.drop()
			want++
		}
	}
	if len(q.items)-q.head != int(next-want) || cap(q.items) > 8192 {
		t.Errorf("%d queued (of %d), capacity %d", len(q.items)-q.head, next-want, cap(q.items))
	}
}

// TestSessionHeapBounded checks that a session growing with every event keeps one entry in
// the heap, not one an event, and still closes at its last end.
func TestSessionHeapBounded(t *testing.T) {
	op, err := Spec().Build(operators.BuildContext{}, map[string]any{"projection": "w", "session": map[string]any{"gap": "1m"}, "aggregate": map[string]any{"n": "count()"}})
	if err != nil {
		t.Fatal(err)
	}
	o := op.(*Op)
	st := &store{m: map[string]*event.Entry{}}
	x := &operators.Exec{Ctx: context.Background(), Store: st}
	if err := o.Start(x); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 1000 {
		at := t0.Add(time.Duration(i) * time.Second)
		tick := &event.Event{Seq: uint64(i + 1), Time: at}
		if err := o.Advance(x, tick, x.Watermark, at); err != nil {
			t.Fatal(err)
		}
		x.Watermark = at
		ev := &event.Event{Seq: uint64(i + 1), Key: "a", Time: at}
		if _, err := o.Process(x, ev); err != nil {
			t.Fatal(err)
		}
		st.apply(ev.Writes)
	}
	if len(o.open) != 1 {
		t.Errorf("%d heap entries for one session", len(o.open))
	}
	tick := &event.Event{Seq: 1001}
	if err := o.Advance(x, tick, x.Watermark, t0.Add(1058*time.Second)); err != nil || len(tick.Writes) != 0 {
		t.Fatalf("closed before its end: %v, %d writes", err, len(tick.Writes))
	}
	if err := o.Advance(x, tick, x.Watermark, t0.Add(1059*time.Second)); err != nil || len(tick.Writes) != 1 || len(o.open) != 0 {
		t.Fatalf("at its end: %v, %d writes, %d left in the heap", err, len(tick.Writes), len(o.open))
	}
	if n := tick.Writes[0].State.Get("n"); n != 1000.0 {
		t.Errorf("closed with n = %v", n)
	}
}

// store is a minimal operators.Store.
type store struct{ m map[string]*event.Entry }

func (s *store) Get(_ context.Context, _, key string) (*event.Entry, error) {
	if s.m[key] == nil {
		s.m[key] = &event.Entry{}
	}
	return s.m[key], nil
}
func (s *store) Lookup(context.Context, string, string) (map[string]any, error) { return nil, nil }
func (s *store) Scan(context.Context, string, string, func(string, *event.Entry) bool) error {
	return nil
}
func (s *store) Keys(context.Context, string, string) ([]string, error) { return nil, nil }

func (s *store) apply(ws []event.Write) {
	for _, w := range ws {
		e := s.m[w.Key]
		e.State, e.Seq = w.State, w.Seq
		if w.Delete {
			e.State = nil
		}
	}
}

// TestFloorDiv checks the rounding of window starts before 1970.
func TestFloorDiv(t *testing.T) {
	for _, c := range [][3]int64{{7, 3, 2}, {6, 3, 2}, {-1, 3, -1}, {-3, 3, -1}, {-4, 3, -2}, {0, 3, 0}} {
		if got := floorDiv(c[0], c[1]); got != c[2] {
			t.Errorf("floorDiv(%d, %d) = %d, want %d", c[0], c[1], got, c[2])
		}
	}
}
