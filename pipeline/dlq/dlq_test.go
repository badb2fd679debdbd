package dlq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/pipetest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/commit"
	"github.com/jetfold/jetfold/pipeline/dlq"
	"github.com/jetfold/jetfold/pipeline/state"
	"github.com/jetfold/jetfold/streams"
)

// totalsYAML folds add and sub events per key and emits a derived event for "big" ones to
// out.<key>, which no declared stream captures. %s is the sub handler's expression: the
// story starts with a typo in it.
const totalsYAML = `
nats: {url: %q}
http: {listen: none}
streams:
  - {name: EV, subjects: ["ev.>"]}
pipelines:
  - name: totals
    source: {stream: EV, stop: end}
    key: event.k
    operators:
      - fold:
          projection: totals
          initial: {n: 0, sum: 0}
          on:
            add: {n: state.n + 1, sum: state.sum + event.amount}
            sub: {n: state.n + 1, sum: %s}
      - emit:
          when: type == "big"
          subject: '"out." + key'
          data: {k: key}
`

const (
	typo  = "state.sum - event.amout"
	fixed = "state.sum - event.amount"
)

// maxPayload is the test server's payload limit, small so that a dead letter is truncated.
const maxPayload = 8 * 1024

type env struct {
	t   *testing.T
	url string
	js  jetstream.JetStream
	dir string
}

// run loads the configuration with the sub handler expression sub, creates its streams and
// runs it to the end of its source.
func (e *env) run(sub string) {
	e.t.Helper()
	ps := pipetest.Build(e.t, e.js, filepath.Join(e.dir, "p.yaml"), fmt.Sprintf(totalsYAML, e.url, sub), nil)
	if err := pipetest.Run(context.Background(), e.t, e.js, ps, pipeline.Options{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) publish(subject, data string, h nats.Header) {
	e.t.Helper()
	if _, err := e.js.PublishMsg(context.Background(), &nats.Msg{Subject: subject, Data: []byte(data), Header: h}); err != nil {
		e.t.Fatalf("publish %s: %v", subject, err)
	}
}

func (e *env) msgs(stream string) uint64 {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), stream)
	if err != nil {
		e.t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}

func (e *env) list(f dlq.Filter) []dlq.Letter {
	e.t.Helper()
	ls, err := dlq.List(context.Background(), e.js, "totals", f)
	if err != nil {
		e.t.Fatal(err)
	}
	return ls
}

func (e *env) state(key string) map[string]any {
	e.t.Helper()
	st, err := state.Read(context.Background(), e.js, "totals", key)
	if err != nil {
		e.t.Fatalf("totals/%s: %v", key, err)
	}
	var v map[string]any
	if err := json.Unmarshal(st.Value, &v); err != nil {
		e.t.Fatal(err)
	}
	return v
}

// The source events of the story, in order (source sequences 1 to 5).
const (
	seqSub       = 2 // a sub event, dead-lettered by the typo; it carries headers
	seqMalformed = 3 // a payload that does not decode
	seqBig       = 4 // a payload that does not decode, too large to be kept whole
	seqDerived   = 5 // its derived event is refused: no stream captures out.>
)

// TestDeadLetterStory runs a pipeline with a typo that dead-letters events, then lists,
// shows and redrives its dead letters, fixes the typo and folds the redriven events.
func TestDeadLetterStory(t *testing.T) {
	srv := natstest.ServerWith(t, &server.Options{MaxPayload: maxPayload})
	_, js := natstest.Connect(t, srv)
	e := &env{t: t, url: srv.ClientURL(), js: js, dir: t.TempDir()}
	ctx := context.Background()

	if got := e.list(dlq.Filter{}); len(got) != 0 {
		t.Fatalf("before any run: %d dead letters, want none", len(got))
	}
	e.run(typo) // creates EV
	e.publish("ev.a", `{"type":"add","k":"a","amount":5}`, nats.Header{"Channel": {"web"}})
	e.publish("ev.a2", `{"type":"sub","k":"a","amount":2}`, nats.Header{
		"Channel":     {"mobile"},
		"X-Trace":     {"t-1", "t-2"},
		"Nats-Msg-Id": {"order-2"},
		// Both hold when first published, and would fail, or drop the event, if sent again.
		"Nats-Expected-Stream":                {"EV"},
		"Nats-Expected-Last-Subject-Sequence": {"0"},
	})
	e.publish("ev.b", `{"type":"add","k":`, nil)
	e.publish("ev.c", `{"type":"add","k":"`+strings.Repeat("x", maxPayload-200), nil)
	e.publish("ev.d", `{"type":"big","k":"d"}`, nil)
	e.run(typo)

	all := e.list(dlq.Filter{})
	if len(all) != 4 {
		t.Fatalf("%d dead letters, want 4: %+v", len(all), all)
	}
	bySource := map[uint64]dlq.Letter{}
	for i, l := range all {
		if i > 0 && l.Seq <= all[i-1].Seq {
			t.Errorf("dead letters out of order: %d after %d", l.Seq, all[i-1].Seq)
		}
		if l.Stream != streams.DLQStream || l.Time.IsZero() {
			t.Errorf("dead letter %d: stream %q, time %v", l.Seq, l.Stream, l.Time)
		}
		bySource[l.SourceSeq] = l
	}
	checks := []struct {
		name      string
		seq       uint64
		reason    string
		subject   string
		derived   bool
		truncated bool
	}{
		{"handler typo", seqSub, "expression failed: state.sum - event.amout", "ev.a2", false, false},
		{"malformed", seqMalformed, "payload does not decode", "ev.b", false, false},
		{"truncated", seqBig, "payload does not decode", "ev.c", false, true},
		{"refused derived event", seqDerived, "derived event refused", "out.d", true, false},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			l, ok := bySource[c.seq]
			if !ok {
				t.Fatalf("no dead letter of source seq %d", c.seq)
			}
			if !strings.Contains(l.Reason, c.reason) {
				t.Errorf("reason %q, want it to contain %q", l.Reason, c.reason)
			}
			if l.Subject() != c.subject || l.Derived() != c.derived || l.Truncated != c.truncated {
				t.Errorf("subject %q derived %v truncated %v, want %q %v %v", l.Subject(), l.Derived(), l.Truncated, c.subject, c.derived, c.truncated)
			}
			if c.truncated && (l.OriginalSize != len(`{"type":"add","k":"`)+maxPayload-200 || len(l.Data) >= l.OriginalSize) {
				t.Errorf("truncated: %d bytes of %d", len(l.Data), l.OriginalSize)
			}
			got, err := dlq.Get(ctx, js, "totals", l.Seq)
			if err != nil {
				t.Fatal(err)
			}
			if got.Seq != l.Seq || got.Reason != l.Reason || string(got.Data) != string(l.Data) || got.Subject() != l.Subject() || !got.Time.Equal(l.Time) {
				t.Errorf("Get(%d) = %+v, want %+v", l.Seq, got, l)
			}
		})
	}
	sub := bySource[seqSub]
	if h := sub.AppHeader(); len(h) != 2 || h.Get("Channel") != "mobile" || len(h.Values("X-Trace")) != 2 {
		t.Errorf("application headers %v, want Channel and X-Trace only", h)
	}
	if v := sub.Header.Get("Jetfold-Nats-Expected-Last-Subject-Sequence"); v != "0" {
		t.Errorf("dead letter keeps Jetfold-Nats-Expected-Last-Subject-Sequence %q, want 0", v)
	}

	t.Run("filters", func(t *testing.T) {
		seqs := func(ls []dlq.Letter) []uint64 {
			var out []uint64
			for _, l := range ls {
				out = append(out, l.SourceSeq)
			}
			return out
		}
		spec := fmt.Sprintf("%d,%d-%d", bySource[seqSub].Seq, bySource[seqBig].Seq, bySource[seqDerived].Seq)
		parsed, err := dlq.ParseSeqs(spec)
		if err != nil {
			t.Fatal(err)
		}
		rows := []struct {
			name   string
			filter dlq.Filter
			want   []uint64 // source sequences
		}{
			{"reason", dlq.Filter{Reason: "DOES NOT DECODE"}, []uint64{seqMalformed, seqBig}},
			{"reason and limit", dlq.Filter{Reason: "does not decode", Limit: 1}, []uint64{seqMalformed}},
			{"sequences", dlq.Filter{Seqs: parsed}, []uint64{seqSub, seqBig, seqDerived}},
			{"sequences and reason", dlq.Filter{Seqs: parsed, Reason: "refused"}, []uint64{seqDerived}},
			{"sequences past the end", dlq.Filter{Seqs: dlq.Seqs{{First: 1000, Last: 2000}}}, nil},
			{"reason that matches none", dlq.Filter{Reason: "no such reason"}, nil},
		}
		for _, r := range rows {
			t.Run(r.name, func(t *testing.T) {
				got := seqs(e.list(r.filter))
				if fmt.Sprint(got) != fmt.Sprint(r.want) {
					t.Errorf("source seqs %v, want %v", got, r.want)
				}
			})
		}
	})

	t.Run("get errors", func(t *testing.T) {
		// Another pipeline's dead letter in the same stream is not this one's.
		ack, err := js.Publish(ctx, streams.DLQSubject("other"), []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		for _, seq := range []uint64{ack.Sequence, 10_000} {
			if _, err := dlq.Get(ctx, js, "totals", seq); !errors.Is(err, dlq.ErrNotFound) {
				t.Errorf("Get(%d) = %v, want ErrNotFound", seq, err)
			}
		}
		if _, err := dlq.Get(ctx, js, "nothing-captures-this", 1); err != nil && !errors.Is(err, dlq.ErrNotFound) {
			t.Errorf("Get of a pipeline without dead letters = %v, want ErrNotFound", err)
		}
		if got := len(e.list(dlq.Filter{})); got != 4 {
			t.Errorf("the other pipeline's dead letter is listed: %d", got)
		}
	})

	before := e.msgs("EV")
	var progress []dlq.Result
	rep, err := dlq.Redrive(ctx, js, "totals", dlq.Filter{}, dlq.RedriveOptions{DryRun: true, Progress: func(r dlq.Result) { progress = append(progress, r) }})
	if err != nil {
		t.Fatal(err)
	}
	want := dlq.Report{Selected: 4, Redriven: 3, Skipped: map[error]int{dlq.ErrTruncated: 1}, Deleted: 3, DryRun: true}
	if fmt.Sprint(rep) != fmt.Sprint(want) {
		t.Errorf("dry run: %+v, want %+v", rep, want)
	}
	if len(progress) != 4 {
		t.Errorf("dry run: %d results, want 4", len(progress))
	}
	for _, r := range progress {
		wantStream := "EV"
		if r.Letter.Derived() {
			wantStream = "" // nothing captures out.> yet
		}
		if r.Action == dlq.WouldRedrive && r.Stream != wantStream {
			t.Errorf("dry run of %d: stream %q, want %q", r.Letter.Seq, r.Stream, wantStream)
		}
	}
	if got := e.msgs("EV"); got != before {
		t.Errorf("dry run published: EV holds %d messages, had %d", got, before)
	}
	if got := len(e.list(dlq.Filter{})); got != 4 {
		t.Errorf("dry run deleted: %d dead letters, want 4", got)
	}

	// Now a stream captures the derived events.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OUT", Subjects: []string{"out.>"}}); err != nil {
		t.Fatal(err)
	}
	// --keep first, as a redrive that stops between the publish and the delete would.
	rep, err = dlq.Redrive(ctx, js, "totals", dlq.Filter{}, dlq.RedriveOptions{Keep: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Redriven != 3 || rep.Duplicates != 0 || rep.Deleted != 0 || rep.Skipped[dlq.ErrTruncated] != 1 {
		t.Errorf("redrive --keep: %+v", rep)
	}
	if got := e.msgs("EV"); got != before+2 {
		t.Errorf("EV holds %d messages, want %d", got, before+2)
	}
	republished := natstest.ReadAll(t, js, "EV", "")[before:]
	for _, m := range republished {
		h := m.Headers()
		for k := range h {
			if strings.HasPrefix(k, "Jetfold-") || (strings.HasPrefix(k, "Nats-") && k != jetstream.MsgIDHeader) {
				t.Errorf("republished %s carries %s", m.Subject(), k)
			}
		}
		if !strings.HasPrefix(h.Get(jetstream.MsgIDHeader), "redrive:totals:") {
			t.Errorf("republished %s has Nats-Msg-Id %q", m.Subject(), h.Get(jetstream.MsgIDHeader))
		}
	}
	if m := republished[0]; m.Subject() != "ev.a2" || string(m.Data()) != `{"type":"sub","k":"a","amount":2}` ||
		m.Headers().Get("Channel") != "mobile" || len(m.Headers().Values("X-Trace")) != 2 ||
		m.Headers().Get(jetstream.MsgIDHeader) != dlq.RedriveID("totals", sub.Seq) {
		t.Errorf("republished %s %q %v, want the sub event with its headers", m.Subject(), m.Data(), m.Headers())
	}
	if m := republished[1]; m.Subject() != "ev.b" || string(m.Data()) != `{"type":"add","k":` {
		t.Errorf("republished %s %q, want the malformed event", m.Subject(), m.Data())
	}
	out := natstest.ReadAll(t, js, "OUT", "")
	if len(out) != 1 || out[0].Subject() != "out.d" || out[0].Headers().Get("ce-type") != "out.d" ||
		out[0].Headers().Get(commit.HeaderSourceSeq) != fmt.Sprint(seqDerived) {
		t.Errorf("derived events in OUT: %d, want the one refused, with its CloudEvents headers", len(out))
	}

	// Again: the target streams drop the copies, and the dead letters go.
	rep, err = dlq.Redrive(ctx, js, "totals", dlq.Filter{}, dlq.RedriveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Redriven != 3 || rep.Duplicates != 3 || rep.Deleted != 3 || rep.Skipped[dlq.ErrTruncated] != 1 {
		t.Errorf("second redrive: %+v, want 3 duplicates deleted and the truncated one skipped", rep)
	}
	if got := e.msgs("EV"); got != before+2 {
		t.Errorf("second redrive added to EV: %d messages, want %d", got, before+2)
	}
	if got := e.msgs("OUT"); got != 1 {
		t.Errorf("second redrive added to OUT: %d messages, want 1", got)
	}
	left := e.list(dlq.Filter{})
	if len(left) != 1 || left[0].SourceSeq != seqBig {
		t.Errorf("left: %+v, want the truncated dead letter only", left)
	}
	// And once more: only the truncated one is selected, and skipped.
	rep, err = dlq.Redrive(ctx, js, "totals", dlq.Filter{}, dlq.RedriveOptions{})
	if err != nil || rep.Selected != 1 || rep.Redriven != 0 || rep.Deleted != 0 {
		t.Errorf("third redrive: %+v, %v", rep, err)
	}

	// The fix: the redriven sub event folds; the malformed one is a dead letter again.
	if got := e.state("a"); got["n"] != 1.0 || got["sum"] != 5.0 {
		t.Errorf("totals/a before the fix = %v", got)
	}
	e.run(fixed)
	if got := e.state("a"); got["n"] != 2.0 || got["sum"] != 3.0 {
		t.Errorf("totals/a after the fix and the redrive = %v, want n 2, sum 3", got)
	}
	left = e.list(dlq.Filter{})
	if len(left) != 2 || left[1].SourceSeq != before+2 || !strings.Contains(left[1].Reason, "does not decode") {
		t.Errorf("dead letters after the fix: %+v, want the truncated one and the malformed one again", left)
	}
}

// TestRedriveRefused: an event that no stream captures fails, stays, and makes Redrive
// return an error after the others are done.
func TestRedriveRefused(t *testing.T) {
	srv := natstest.Server(t)
	_, js := natstest.Connect(t, srv)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: streams.DLQStream, Subjects: []string{"_jetfold.dlq.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EV", Subjects: []string{"ev.>"}}); err != nil {
		t.Fatal(err)
	}
	letter := func(subject string) *nats.Msg {
		return &nats.Msg{Subject: streams.DLQSubject("p"), Data: []byte(`{}`), Header: nats.Header{
			commit.HeaderError: {"boom"}, commit.HeaderSourceSeq: {"1"}, commit.HeaderSourceSubject: {subject},
		}}
	}
	for _, m := range []*nats.Msg{letter("nowhere.x"), letter("ev.x"), {Subject: streams.DLQSubject("p"), Header: nats.Header{commit.HeaderError: {"no subject"}}}} {
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := dlq.Redrive(ctx, js, "p", dlq.Filter{}, dlq.RedriveOptions{})
	if err == nil {
		t.Fatal("no error for an event no stream captures")
	}
	if rep.Failed != 1 || rep.Redriven != 1 || rep.Deleted != 1 || rep.Skipped[dlq.ErrNoSubject] != 1 {
		t.Errorf("report %+v, want 1 failed, 1 redriven and deleted, 1 skipped", rep)
	}
	left, err := dlq.List(ctx, js, "p", dlq.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 2 || left[0].Subject() != "nowhere.x" {
		t.Errorf("left %+v, want the refused one and the one without subject", left)
	}
}

func TestParseSeqs(t *testing.T) {
	rows := []struct {
		spec    string
		want    string // String() of the result
		in, out []uint64
		wantErr bool
	}{
		{spec: "", want: "", in: []uint64{1, 99}},
		{spec: "5", want: "5", in: []uint64{5}, out: []uint64{4, 6}},
		{spec: "3-9", want: "3-9", in: []uint64{3, 9}, out: []uint64{2, 10}},
		{spec: " 1, 4 ,10-12", want: "1,4,10-12", in: []uint64{1, 4, 11}, out: []uint64{2, 13}},
		{spec: "10-", want: "10-", in: []uint64{10, 1 << 40}, out: []uint64{9}},
		{spec: "0", wantErr: true},
		{spec: "9-3", wantErr: true},
		{spec: "-3", wantErr: true},
		{spec: "1,,2", wantErr: true},
		{spec: "a", wantErr: true},
		{spec: "1-2-3", wantErr: true},
	}
	for _, r := range rows {
		t.Run(r.spec, func(t *testing.T) {
			got, err := dlq.ParseSeqs(r.spec)
			if r.wantErr {
				if !errors.Is(err, dlq.ErrBadSeqs) {
					t.Fatalf("err %v, want ErrBadSeqs", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != r.want {
				t.Errorf("%q parsed as %q", r.spec, got)
			}
			for _, s := range r.in {
				if !got.Contains(s) {
					t.Errorf("%q does not contain %d", r.spec, s)
				}
			}
			for _, s := range r.out {
				if got.Contains(s) {
					t.Errorf("%q contains %d", r.spec, s)
				}
			}
		})
	}
}
