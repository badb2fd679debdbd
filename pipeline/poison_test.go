package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/commit"
	"github.com/jetfold/jetfold/pipeline/status"
	"github.com/jetfold/jetfold/streams"
)

// poisonYAML counts events per key and emits to the subject an event names.
const poisonYAML = `
nats: {url: %q}
http: {listen: none}
streams:
  - {name: EV, subjects: ["ev.>"]}
  - {name: CNT, subjects: ["cnt.>"]}
  - {name: OUT, subjects: ["out.>"]}
pipelines:
  - name: poison
    source: {stream: EV, stop: end}
    key: event.k
    type: '"any"'
    batch: {size: 4, max_wait: 10ms}
    operators:
      - fold:
          projection: poison
          on:
            "*": {n: "(state.n ?? 0) + 1"}
      - emit:
          when: event.to != nil
          subject: 'string(event.to) + "." + key'
          data: {k: key}
          handler: all
  - name: counter
    source: {stream: CNT, stop: end}
    key: 'event.val == "1" ? "one" : event.missing'
    type: '"increment"'
    batch: {size: 4, max_wait: 10ms}
    operators:
      - fold:
          projection: counted
          on:
            "*": {n: "(state.n ?? 0) + 1"}
`

// poisonPayload is the server's payload limit in the poison test.
const poisonPayload = 64 * 1024

// outcome is what the poison test expects of a message.
type outcome int

const (
	folded      outcome = iota // folded into its key, no dead letter
	deadLetter                 // dead-lettered, not folded
	filtered                   // neither (a server marker)
	emitRefused                // folded, and its derived event dead-lettered in its place
)

// poisonRow is a message of the corpus.
type poisonRow struct {
	name    string
	subject string
	header  nats.Header
	data    string
	want    outcome
	key     string // the key folded into, for folded rows
	// truncated is set for a dead letter whose payload must be cut to fit the limit
	truncated bool
}

// controlHeaders are the headers JetStream acts on at publish time, each with a value that
// the source stream accepts when the row is published (so that it is stored), but that the
// dead-letter stream would refuse or act on. prev is the previous message's sequence and
// msg id; subject is the row's own subject.
func controlHeaders(prevSeq uint64, prevID, subject string) []nats.Header {
	return []nats.Header{
		{"Nats-Expected-Stream": {"EV"}},
		{"Nats-Expected-Last-Sequence": {strconv.FormatUint(prevSeq, 10)}},
		{"Nats-Expected-Last-Msg-Id": {prevID}},
		{"Nats-Expected-Last-Subject-Sequence": {"0"}},
		{"Nats-Expected-Last-Subject-Sequence-Subject": {subject}, "Nats-Expected-Last-Subject-Sequence": {"0"}},
		{"Nats-TTL": {"1h"}},
		{"Nats-Rollup": {"sub"}},
		{"Nats-Schedule": {"@at 2099-01-01T00:00:00Z"}, "Nats-Schedule-Target": {"ev.scheduled.target"}},
		{"nats-expected-stream": {"ANY-CASE"}}, // the server ignores it; jetfold renames any case
		{"Nats-Trace-Dest": {"trace.nowhere"}},
		{"KV-Operation": {"PURGE"}, "Nats-Rollup": {"sub"}}, // a KV purge marker's headers
	}
}

// TestPoisonCorpus runs a pipeline over a corpus of messages that have stalled pipelines or
// could: every header JetStream acts on at publish time, on a malformed and on a valid event;
// empty payloads, header-only messages, invalid UTF-8, deep nesting, numbers beyond float64,
// keys that make invalid subjects, an empty key, events just under the payload limit (and one
// just over it, which the client refuses), derived events to a subject no stream captures and
// to a stream at its limits, counter increments. Each message is folded or dead-lettered
// exactly once, the dead letters carry no header JetStream acts on, fit the payload limit, and
// the checkpoint reaches the head of the stream.
func TestPoisonCorpus(t *testing.T) {
	srv := natstest.ServerWith(t, &server.Options{MaxPayload: poisonPayload})
	_, js := natstest.Connect(t, srv)
	ctx := context.Background()
	// The source allows what the control headers need, so that they are stored.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "EV", Subjects: []string{"ev.>"}, AllowRollup: true, AllowMsgTTL: true,
		AllowMsgSchedules: true, AllowAtomicPublish: true,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "CNT", Subjects: []string{"cnt.>"}, AllowMsgCounter: true}); err != nil {
		t.Fatal(err)
	}
	// A derived stream at its limits: one message, then it refuses more.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FULL", Subjects: []string{"full.>"}, MaxMsgs: 1, Discard: jetstream.DiscardNew}); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv, js: js, dir: t.TempDir()}
	ps := e.pipelines("poison.yaml", fmt.Sprintf(poisonYAML, srv.ClientURL()))

	var rows []poisonRow
	add := func(r poisonRow) { rows = append(rows, r) }
	// The control headers need to know what precedes them: rows are published one by one.
	var lastSeq uint64
	lastID := ""
	publish := func(r poisonRow) {
		t.Helper()
		m := &nats.Msg{Subject: r.subject, Data: []byte(r.data), Header: nats.Header{}}
		for k, v := range r.header {
			m.Header[k] = v
		}
		id := fmt.Sprintf("m%d", len(rows))
		if m.Header.Get("Nats-Batch-Id") == "" {
			m.Header["Nats-Msg-Id"] = []string{id}
		}
		a, err := js.PublishMsg(ctx, m)
		if err != nil {
			t.Fatalf("publish %s: %v", r.name, err)
		}
		lastSeq, lastID = a.Sequence, id
		add(r)
	}
	valid := func(key string) string { return fmt.Sprintf(`{"k":%q}`, key) }

	for i := range len(controlHeaders(0, "", "")) {
		for _, bad := range []bool{true, false} {
			subject := fmt.Sprintf("ev.h%d.%t", i, bad)
			h := controlHeaders(lastSeq, lastID, subject)[i]
			r := poisonRow{name: fmt.Sprintf("header %v", h), subject: subject, header: h}
			if bad {
				r.name, r.data, r.want = "malformed, "+r.name, `{"k":`, deadLetter
			} else {
				r.key = fmt.Sprintf("h%d", i)
				r.name, r.data, r.want = "valid, "+r.name, valid(r.key), folded
			}
			publish(r)
		}
	}
	// An atomic batch of one message: its batch headers are stored with it.
	for _, bad := range []bool{true, false} {
		r := poisonRow{name: fmt.Sprintf("atomic batch, malformed %t", bad), subject: "ev.batch", header: nats.Header{
			"Nats-Batch-Id": {fmt.Sprintf("b%t", bad)}, "Nats-Batch-Sequence": {"1"}, "Nats-Batch-Commit": {"1"},
		}, data: `{"k":`, want: deadLetter}
		if !bad {
			r.data, r.want, r.key = valid("batch"), folded, "batch"
		}
		publish(r)
	}
	near := poisonPayload - 200
	for _, r := range []poisonRow{
		{name: "empty payload", subject: "ev.empty", want: deadLetter},
		{name: "header-only message", subject: "ev.hdr", header: nats.Header{"X-Only": {"h"}}, want: deadLetter},
		{name: "invalid UTF-8 in a string (encoding/json replaces it)", subject: "ev.utf8", data: "{\"k\":\"u\xff\"}", want: folded, key: "u\ufffd"},
		{name: "invalid UTF-8 outside strings", subject: "ev.utf8b", data: "\xff\xfe{}", want: deadLetter},
		{name: "deeply nested JSON", subject: "ev.deep", data: `{"k":"deep","x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`, want: deadLetter},
		{name: "nested JSON within limits", subject: "ev.deep2", data: `{"k":"deep2","x":` + strings.Repeat("[", 500) + strings.Repeat("]", 500) + `}`, want: folded, key: "deep2"},
		{name: "number beyond float64", subject: "ev.num", data: `{"k":"num","x":1e400}`, want: deadLetter},
		{name: "key with a space", subject: "ev.k1", data: valid("a b"), want: folded, key: "a b"},
		{name: "key with wildcards", subject: "ev.k2", data: valid("a.>"), want: folded, key: "a.>"},
		{name: "key of dots", subject: "ev.k3", data: valid(".."), want: folded, key: ".."},
		{name: "key with a line break", subject: "ev.k4", data: valid("a\r\nb"), want: folded, key: "a\r\nb"},
		{name: "empty key", subject: "ev.k5", data: valid(""), want: deadLetter},
		{name: "emit to an invalid subject (key with a space)", subject: "ev.e1", data: `{"k":"x y","to":"out"}`, want: deadLetter},
		{name: "emit to a wildcard subject", subject: "ev.e2", data: `{"k":">","to":"out"}`, want: deadLetter},
		{name: "emit captured by a stream", subject: "ev.e3", data: `{"k":"e3","to":"out"}`, want: folded, key: "e3"},
		{name: "emit to a subject no stream captures", subject: "ev.e4", data: `{"k":"e4","to":"nowhere"}`, want: emitRefused, key: "e4"},
		{name: "emit to a stream with room", subject: "ev.e5", data: `{"k":"e5","to":"full"}`, want: folded, key: "e5"},
		{name: "emit to a stream at its limits", subject: "ev.e6", data: `{"k":"e6","to":"full"}`, want: emitRefused, key: "e6"},
		{name: "malformed, just under the payload limit", subject: "ev.big1", data: `{"k":"` + strings.Repeat("x", near), want: deadLetter, truncated: true},
		{name: "malformed with large headers, just under the limit", subject: "ev.big2", header: nats.Header{"X-Big": {strings.Repeat("h", 20*1024)}}, data: `{"k":"` + strings.Repeat("x", near-20*1024-60), want: deadLetter, truncated: true},
		{name: "malformed with headers over the bound, just under the limit", subject: "ev.big4", header: nats.Header{"X-Big": {strings.Repeat("h", 40*1024)}}, data: `{"k":"` + strings.Repeat("x", near-41*1024), want: deadLetter},
		{name: "valid, just under the payload limit", subject: "ev.big3", data: `{"k":"big3","pad":"` + strings.Repeat("x", near) + `"}`, want: folded, key: "big3"},
		{name: "valid after the rest", subject: "ev.last", data: valid("last"), want: folded, key: "last"},
	} {
		publish(r)
	}
	// Just over the limit: the client refuses it, and nothing reaches the stream.
	if _, err := js.Publish(ctx, "ev.over", make([]byte, poisonPayload+1)); !errors.Is(err, nats.ErrMaxPayload) {
		t.Fatalf("publish over the payload limit: %v, want %v", err, nats.ErrMaxPayload)
	}
	// Counters: the server writes the payload ({"val":"1"}, then "2") and keeps Nats-Incr.
	for range 2 {
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "cnt.x", Header: nats.Header{"Nats-Incr": {"+1"}}}); err != nil {
			t.Fatalf("counter: %v", err)
		}
	}

	metrics := pipeline.NewMetrics(nil)
	if err := e.run(ps, pipeline.Options{Metrics: metrics}); err != nil {
		t.Fatal(err)
	}

	// Dead letters by source stream sequence (the poison pipeline's), and the refused
	// derived events by their source sequence.
	dead := map[uint64][]jetstream.Msg{}
	refused := map[uint64][]jetstream.Msg{}
	var counterDead []jetstream.Msg
	for _, m := range natstest.ReadAll(t, js, streams.DLQStream, "") {
		h := m.Headers()
		for k := range h {
			if strings.HasPrefix(strings.ToLower(k), "nats-") && k != "Nats-Msg-Id" {
				t.Errorf("dead letter %s holds header %s", h.Get("Nats-Msg-Id"), k)
			}
		}
		if size := len(m.Data()) + headerBytes(h); size > poisonPayload {
			t.Errorf("dead letter %s: %d bytes, over the payload limit", h.Get("Nats-Msg-Id"), size)
		}
		if h.Get(commit.HeaderError) == "" {
			t.Errorf("dead letter %s without %s", h.Get("Nats-Msg-Id"), commit.HeaderError)
		}
		seq, _ := strconv.ParseUint(h.Get(commit.HeaderSourceSeq), 10, 64)
		switch {
		case m.Subject() == streams.DLQSubject("counter"):
			counterDead = append(counterDead, m)
		case h.Get(commit.HeaderEmitSubject) != "":
			refused[seq] = append(refused[seq], m)
		default:
			dead[seq] = append(dead[seq], m)
		}
	}
	counts := e.states("poison")
	source, err := js.Stream(ctx, "EV")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		seq := uint64(i + 1)
		d := dead[seq]
		var got []string
		for _, m := range d {
			got = append(got, m.Headers().Get(commit.HeaderError))
		}
		switch r.want {
		case deadLetter:
			if len(d) != 1 {
				t.Errorf("%s (seq %d): %d dead letters, want 1", r.name, seq, len(d))
				continue
			}
			// The source's headers as stored (the server may have changed some), kept; those
			// that start with Nats- renamed.
			src, err := source.GetMsg(ctx, seq)
			if err != nil {
				t.Fatal(err)
			}
			h := d[0].Headers()
			if headerBytes(src.Header) > 32*1024 {
				if h.Get(commit.HeaderDropped) == "" || h.Get("X-Big") != "" {
					t.Errorf("%s: headers over the bound kept, or %s missing", r.name, commit.HeaderDropped)
				}
				src.Header = nil
			}
			for k, v := range src.Header {
				name := k
				if strings.HasPrefix(strings.ToLower(k), "nats-") {
					name = commit.HeaderPrefix + k
				}
				if h.Get(name) != v[0] {
					t.Errorf("%s: dead letter header %s = %q, want %q", r.name, name, h.Get(name), v[0])
				}
			}
			switch {
			case r.truncated && h.Get(commit.HeaderTruncated) != strconv.Itoa(len(r.data)):
				t.Errorf("%s: %s = %q, want %d", r.name, commit.HeaderTruncated, h.Get(commit.HeaderTruncated), len(r.data))
			case r.truncated && !strings.HasPrefix(r.data, string(d[0].Data())):
				t.Errorf("%s: truncated payload is not a prefix of the event's", r.name)
			case !r.truncated && string(d[0].Data()) != r.data:
				t.Errorf("%s: dead letter payload %q, want the event's", r.name, d[0].Data())
			}
		default:
			if len(d) != 0 {
				t.Errorf("%s (seq %d): dead letters %q, want none", r.name, seq, got)
			}
		}
		if r.want == folded || r.want == emitRefused {
			if st, ok := counts[r.key]; !ok || st["n"] != 1.0 {
				t.Errorf("%s (seq %d): state of %q = %v, want n 1", r.name, seq, r.key, st)
			}
		}
		if n := len(refused[seq]); (r.want == emitRefused) != (n == 1) || n > 1 {
			t.Errorf("%s (seq %d): %d refused derived events dead-lettered", r.name, seq, n)
		}
	}
	var want int
	for _, r := range rows {
		if r.want == folded || r.want == emitRefused {
			want++
		}
	}
	if len(counts) != want {
		t.Errorf("%d keys folded, want %d", len(counts), want)
	}
	if n := len(natstest.ReadAll(t, js, "OUT", "")); n != 1 {
		t.Errorf("OUT holds %d derived events, want 1", n)
	}
	if n := len(natstest.ReadAll(t, js, "FULL", "")); n != 1 {
		t.Errorf("FULL holds %d derived events, want 1", n)
	}
	if got := testutil.ToFloat64(metrics.Refused.WithLabelValues("poison", "")); got != 2 {
		t.Errorf("jetfold_emits_refused_total = %v, want 2", got)
	}
	// The counter pipeline: the first increment folded, the second dead-lettered without
	// Nats-Incr (the dead-letter stream does not count).
	if st := e.states("counted"); len(st) != 1 || st["one"]["n"] != 1.0 {
		t.Errorf("counted = %v, want one: n 1", st)
	}
	if len(counterDead) != 1 || counterDead[0].Headers().Get("Jetfold-Nats-Incr") != "+1" {
		t.Errorf("counter dead letters %d, want 1 with Jetfold-Nats-Incr", len(counterDead))
	}
	for _, p := range ps {
		st, err := pipeline.ReadStatus(ctx, js, p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Checkpoint != st.Head {
			t.Errorf("%s: checkpoint %d, head %d", p.Name, st.Checkpoint, st.Head)
		}
	}
}

// TestSubjectDeleteMarkers: the markers the server writes when MaxAge removes a subject's last
// message are filtered, not folded or dead-lettered, and the checkpoint passes them.
func TestSubjectDeleteMarkers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{
		// The marker outlives the event long enough for a slow (loaded) pipeline to read it.
		Name: "EV", Subjects: []string{"ev.>"}, MaxAge: time.Second, SubjectDeleteMarkerTTL: time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	ps := e.buildCount(countOpts{start: "all", stop: "follow"})
	e.pub("ev.a", `{"k":"a","type":"t"}`)
	metrics := pipeline.NewMetrics(nil)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- pipeline.RunAll(runCtx, ps, pipeline.Options{JS: e.js, Metrics: metrics}) }()
	// The event expires after a second; the marker (sequence 2) takes its place.
	natstest.Eventually(t, 30*time.Second, "the marker committed past", func() bool {
		return testutil.ToFloat64(metrics.Checkpoint.WithLabelValues("counter", "")) >= 2
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(metrics.Events.WithLabelValues("counter", "", pipeline.ResultFiltered)); got != 1 {
		t.Errorf("filtered events = %v, want 1 (the marker)", got)
	}
	if got := testutil.ToFloat64(metrics.Events.WithLabelValues("counter", "", pipeline.ResultDeadLetter)); got != 0 {
		t.Errorf("dead letters = %v, want 0", got)
	}
	if c := e.counts(); len(c) != 1 || c["a"] != 1 {
		t.Errorf("counts = %v, want a: 1", c)
	}
}

// headerBytes is the encoded size of h.
func headerBytes(h nats.Header) int {
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// TestFailingPipeline: a pipeline whose every commit fails (its dead letters go to a stream at
// its limits that refuses even a bare dead letter) is reported failing after failAfter
// restarts: on the board, by the gauge, with one ERROR line however many retries follow. With
// `stop: follow` it goes on trying and recovers once the stream has room; with `stop: end` it
// returns the error instead of retrying forever.
func TestFailingPipeline(t *testing.T) {
	for _, stop := range []string{"follow", "end"} {
		t.Run(stop, func(t *testing.T) {
			pipeline.FastRestarts(t)
			e := newEnv(t)
			ctx := context.Background()
			// The user's dead-letter stream, full: it refuses every dead letter.
			dlq, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "DLQ", Subjects: []string{"_jetfold.dlq.>"}, MaxMsgs: 1, Discard: jetstream.DiscardNew})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.js.Publish(ctx, "_jetfold.dlq.other", []byte("x")); err != nil {
				t.Fatal(err)
			}
			ps := e.buildCount(countOpts{start: "all", stop: stop})
			e.pub("ev.a", `{"k":"a","type":"t"}`, `{"k":`, `{"k":"a","type":"t"}`)
			var logs natstest.Buffer
			log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
			metrics := pipeline.NewMetrics(nil)
			board := status.NewBoard()
			runCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				done <- pipeline.RunAll(runCtx, ps, pipeline.Options{JS: e.js, Metrics: metrics, Board: board, Logger: log})
			}()
			if stop == "end" {
				select {
				case err := <-done:
					if !errors.Is(err, pipeline.ErrFailing) || !strings.Contains(err.Error(), "maximum messages exceeded") {
						t.Fatalf("RunAll = %v, want %v with the stream's refusal", err, pipeline.ErrFailing)
					}
				case <-time.After(2 * time.Minute):
					t.Fatal("a stop: end pipeline that cannot commit did not return")
				}
			}
			natstest.Eventually(t, time.Minute, "the pipeline reported failing", func() bool {
				h, _ := board.Get("counter")
				return h.State == status.Failing && testutil.ToFloat64(metrics.Failing.WithLabelValues("counter", "")) == 1
			})
			h, _ := board.Get("counter")
			if !strings.Contains(h.Error, "maximum messages exceeded") {
				t.Errorf("failing with %q, want the stream's refusal", h.Error)
			}
			st, err := pipeline.ReadStatus(ctx, e.js, ps[0])
			if err != nil {
				t.Fatal(err)
			}
			if st.State != status.Failing || !strings.Contains(st.Error, "maximum messages exceeded") {
				t.Errorf("status: state %q, error %q", st.State, st.Error)
			}
			if stop == "end" {
				return
			}
			// More retries, still one ERROR line.
			restarts := testutil.ToFloat64(metrics.Restarts.WithLabelValues("counter", ""))
			natstest.Eventually(t, time.Minute, "two more restarts", func() bool {
				return testutil.ToFloat64(metrics.Restarts.WithLabelValues("counter", "")) >= restarts+2
			})
			if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
				t.Errorf("%d ERROR lines, want 1:\n%s", n, logs.String())
			}
			// Room in the stream: the pipeline commits and is running again.
			if err := dlq.Purge(ctx); err != nil {
				t.Fatal(err)
			}
			natstest.Eventually(t, time.Minute, "the pipeline running again", func() bool {
				h, _ := board.Get("counter")
				return h.State == status.Running && testutil.ToFloat64(metrics.Failing.WithLabelValues("counter", "")) == 0
			})
			natstest.Eventually(t, time.Minute, "the events folded", func() bool { return e.counts()["a"] == 2 })
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}
