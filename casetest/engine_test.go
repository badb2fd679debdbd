package casetest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/config/diag"
)

// testConfig is the configuration of the tests: a fold with an emit and a window on event
// time (the ce-time header), and a second pipeline that reads what the first emits. Its
// start, stop and NATS URL are what the cases must not use.
const testConfig = `nats: {url: "nats://127.0.0.1:1"}
streams:
  - {name: EV, subjects: ["ev.>"], replicas: 3}
  - {name: OUT, subjects: ["out.>"]}
pipelines:
  - name: counts
    source: {stream: EV, start: new, stop: follow}
    key: event.k
    time: headers["ce-time"]
    operators:
      - fold:
          projection: counts
          initial: {n: 0}
          on: {add: {n: state.n + 1}}
      - emit:
          when: state.n == 2
          subject: '"out.two." + key'
          data: {type: '"two"', k: key, n: state.n}
      - window:
          projection: per_minute
          tumbling: 1m
          aggregate: {events: count(), mean: avg(state.n)}
          emit:
            subject: '"out.minute." + key'
            data: {k: key, events: window.events}
  - name: twos
    source: {stream: OUT, subjects: ["out.two.>"], start: new}
    key: event.k
    operators:
      - fold:
          projection: twos
          initial: {seen: 0}
          on: {two: {seen: state.seen + 1}}
`

// newEngine loads testConfig (or cfg) from a temporary directory and returns an engine for
// it and the directory.
func newEngine(t *testing.T, cfg string, o Options) (*Engine, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "jetfold.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path, config.LoadOptions{Environ: []string{}})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	e, err := New(c, o)
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	return e, dir
}

// load writes cases to dir/name and loads them.
func load(t *testing.T, e *Engine, dir, name, cases string) *File {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(cases), 0o600); err != nil {
		t.Fatal(err)
	}
	files, err := e.Load(path)
	if err != nil {
		t.Fatalf("load cases: %v", err)
	}
	return files[0]
}

const runCases = `cases:
  - name: counts, chained pipelines, event time
    events:
      EV:
        - {subject: ev.a, data: {type: add, k: a}, time: "2026-11-01T09:00:00Z"}
        - {subject: ev.a, data: {type: add, k: a}, time: "2026-11-01T09:00:30Z"}
        - {subject: ev.b, data: {type: add, k: b}, time: "2026-11-01T09:00:40Z"}
        - {subject: ev.a, data: {type: add, k: a}, time: "2026-11-01T09:01:05Z"}
        - {subject: ev.b, data: not json}
    expect:
      projections:
        counts: {a: {n: 3}, b: {n: 1}}
        twos: {a: {seen: 1}}            # read from OUT: a second run of the pipelines
        per_minute:                     # the windows of event time, not of the wall clock
          a.1793523600000: {start: "2026-11-01T09:00:00Z", end: "2026-11-01T09:01:00Z", closed: true, events: 2, mean: 1.5}
          b.1793523600000: {start: "2026-11-01T09:00:00Z", end: "2026-11-01T09:01:00Z", closed: true, events: 1, mean: 1}
          a.1793523660000: {start: "2026-11-01T09:01:00Z", end: "2026-11-01T09:02:00Z", closed: false, events: 1, mean: 3}
      derived:
        - {subject: out.minute.b, data: {k: b, events: 1}}
        - {subject: out.two.a, data: {type: two, k: a, n: 2}}
        - {subject: out.minute.a, data: {k: a, events: 2}}
      dead_letters:
        - {pipeline: counts, subject: ev.b, reason: does not decode}
  - name: wrong
    events:
      EV:
        - {subject: ev.a, data: {type: add, k: a}, time: "2026-11-01T09:00:00Z"}
        - {subject: ev.a, data: {type: add, k: a}, time: "2026-11-01T09:00:01Z"}
    expect:
      projections:
        counts: {a: {n: 3}}
      derived: []
      dead_letters:
        - {reason: decode}
  - name: headers and raw payloads
    events:
      EV:
        - subject: ev.c
          data: '{"type": "add", "k": "c"}'
          headers: {Nats-Msg-Id: one, x-list: [a, b]}
          time: "2026-11-01T09:00:00Z"
        - subject: ev.c             # the same message id: JetStream drops it
          data: {type: add, k: c}
          headers: {Nats-Msg-Id: one}
          time: "2026-11-01T09:00:01Z"
    expect:
      projections:
        counts: {c: {n: 1}}
      dead_letters: []
`

func TestRunAll(t *testing.T) {
	e, dir := newEngine(t, testConfig, Options{Parallel: 3})
	f := load(t, e, dir, "cases.yaml", runCases)
	var reported []string
	results := e.RunAll(context.Background(), f.Cases, func(r Result) { reported = append(reported, r.Case.Name) })
	if want := []string{"counts, chained pipelines, event time", "wrong", "headers and raw payloads"}; !slices.Equal(reported, want) {
		t.Fatalf("reported %q, want %q (in order)", reported, want)
	}
	for i, r := range results {
		if r.Case != f.Cases[i] || r.Err != nil {
			t.Fatalf("result %d: case %q, error %v", i, r.Case.Name, r.Err)
		}
	}
	if !results[0].Passed() || !results[2].Passed() {
		var b bytes.Buffer
		results[0].WriteReport(&b)
		results[2].WriteReport(&b)
		t.Fatalf("cases failed:\n%s", b.String())
	}
	wrong := results[1]
	want := []string{
		"cases.yaml:31:18: projection counts, key a: value differs",
		"cases.yaml:32:7: derived event out.two.a (pipeline counts): not expected",
		`cases.yaml:34:11: dead letters with reason "decode"`,
	}
	if got := whats(wrong.Mismatches); !slices.Equal(got, rel(dir, want)) {
		t.Fatalf("mismatches\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(rel(dir, want), "\n"))
	}
	var b bytes.Buffer
	wrong.WriteReport(&b)
	report := strings.ReplaceAll(b.String(), dir+string(filepath.Separator), "")
	wantReport := `FAIL wrong
    cases.yaml:31:18: projection counts, key a: value differs
        expected: {"n":3}
        actual:   {"n":2}
        - n: expected 3, actual 2
    cases.yaml:32:7: derived event out.two.a (pipeline counts): not expected
        actual:   data {"k":"a","n":2,"type":"two"}
    cases.yaml:34:11: dead letters with reason "decode"
        expected: 1
        actual:   0
`
	if report != wantReport {
		t.Errorf("report\n%s\nwant\n%s", report, wantReport)
	}
}

// rel puts dir in front of each line.
func rel(dir string, lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = filepath.Join(dir, l)
	}
	return out
}

func TestRunError(t *testing.T) {
	e, dir := newEngine(t, strings.Replace(testConfig, "key: event.k\n    time:", "on_error: stop\n    key: event.k\n    time:", 1), Options{})
	f := load(t, e, dir, "cases.yaml", `cases:
  - name: stops
    events:
      EV: [{subject: ev.a, data: not json}]
    expect: {dead_letters: []}
`)
	r := e.Run(context.Background(), f.Cases[0])
	if r.Err == nil || !strings.Contains(r.Err.Error(), "pipeline counts") || r.Passed() {
		t.Fatalf("error %v, passed %v: want the pipeline's stop", r.Err, r.Passed())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if r := e.Run(ctx, f.Cases[0]); r.Err == nil || !errors.Is(r.Err, context.Canceled) {
		t.Errorf("run with its context ended: %v", r.Err)
	}
}

func TestLoadErrors(t *testing.T) {
	e, dir := newEngine(t, testConfig, Options{})
	path := filepath.Join(dir, "bad.yaml")
	bad := `cases:
  - name: one
    evnts: {EV: [{subject: ev.a}]}
  - name: one
    events:
      EVV: [{subject: ev.a}]
      OUT:
        - {subject: ev.a}
        - {subject: "out.*", data: .nan}
        - {subject: out.x, time: yesterday, headers: {ce-time: "2026-11-01T09:00:00Z"}}
        - {subject: out.x, time: "2026-11-01T09:00:00Z", headers: {Ce-Time: x}}
        - {data: 1}
    expect:
      projections:
        count: {a: {n: 1}}
        counts: [a]
      derived:
        - {data: {a: 1}, typ: x}
      dead_letters:
        - {count: 2}
        - {subject: x, count: many, pipeline: count}
  - name: ""
    events: {}
    expect: []
`
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := e.Load(path)
	if !errors.Is(err, diag.ErrInvalid) {
		t.Fatalf("error %v, want located errors", err)
	}
	got := strings.Split(strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), ""), "\n")
	want := []string{
		`bad.yaml:2:5: the case has no events (hint: list them per stream, such as events: {SHOP: [{subject: shop.cart.u1, data: {...}}]})`,
		`bad.yaml:3:5: unknown field "evnts" in a case (hint: did you mean events?)`,
		`bad.yaml:4:11: case name "one" is already used at bad.yaml:2:11`,
		`bad.yaml:6:7: unknown stream "EVV" (hint: did you mean EV?)`,
		`bad.yaml:8:21: stream OUT does not capture subject ev.a (hint: list the event under stream EV, which captures it)`,
		`bad.yaml:9:21: subject "out.*": has a wildcard: an event goes to one subject`,
		`bad.yaml:9:36: .nan is not a JSON number (hint: quote it to mean the string)`,
		`bad.yaml:10:34: time "yesterday" is not RFC3339 (hint: such as 2026-11-01T09:00:00Z)`,
		`bad.yaml:11:28: the event has both a time and a ce-time header`,
		`bad.yaml:12:11: the event has no subject`,
		`bad.yaml:15:9: unknown projection "count" (hint: did you mean counts?)`,
		`bad.yaml:16:17: projection counts must be a map of keys to values, got a list (hint: such as counts: {user-1: {items: 1}})`,
		`bad.yaml:18:26: unknown field "typ" in a derived event (hint: did you mean type?)`,
		`bad.yaml:18:11: the derived event has no subject`,
		`bad.yaml:20:11: a dead-letter expectation needs a subject or a reason (hint: such as {subject: shop.cart.user-9, reason: decode, count: 1})`,
		`bad.yaml:21:31: count must be a whole number, 0 or more, got the scalar "many"`,
		`bad.yaml:21:47: unknown pipeline "count" (hint: did you mean counts?)`,
		`bad.yaml:22:11: the case name is empty`,
		`bad.yaml:23:5: the case has no events`,
		`bad.yaml:24:13: expect must be a map, got a list (hint: fields: projections, derived, dead_letters)`,
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("errors\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	for text, msg := range map[string]string{
		"":                        "bad.yaml:1:1: the file holds no cases (hint: start with cases: and a list of cases)",
		"cases: []\n":             "bad.yaml:1:1: the cases list is empty",
		"case: []\n":              `bad.yaml:1:1: unknown field "case" in the top level (hint: did you mean cases?)`,
		"cases:\n  - {name: [\n":  "bad.yaml:3:1: invalid YAML: did not find expected node content",
		"cases: [a]\n---\nb: 1\n": "bad.yaml:3:1: the file holds more than one YAML document",
	} {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := e.Load(path)
		if err == nil || !strings.Contains(strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), ""), msg) {
			t.Errorf("%q: error %v, want %q", text, err, msg)
		}
	}
	if _, err := e.Load(filepath.Join(dir, "nosuch.yaml")); err == nil || errors.Is(err, diag.ErrInvalid) {
		t.Errorf("a missing file: %v", err)
	}
}

// TestLoadValues checks what a case's YAML becomes: payloads, headers, expectations.
func TestLoadValues(t *testing.T) {
	e, dir := newEngine(t, testConfig, Options{})
	f := load(t, e, dir, "cases.yaml", `cases:
  - name: values
    events:
      EV:
        - {subject: ev.a, data: &base {type: add, k: a}}
        - {subject: ev.a, data: {<<: *base, n: 0x10, big: 12345678901234567890, ts: 2026-11-01T09:00:00Z, f: 1.50, "on": yes, 2: two}}
        - {subject: ev.a, data: '{"raw": true}'}
        - {subject: ev.a, data: [1, null, true]}
        - {subject: ev.a, headers: {X-A: b, X-B: [c, d]}, time: "2026-11-01T09:00:00Z"}
    expect:
      projections:
        counts: {a: {n: 1}, gone: null, 1: 2}
        twos:
      derived:
        - {subject: out.x, data: 7, type: t}
        - {subject: out.y}
      dead_letters:
        - {reason: x}
        - {subject: ev.a, pipeline: twos, count: 0}
`)
	c := f.Cases[0]
	var data []string
	for _, ev := range c.Events {
		data = append(data, string(ev.Data))
	}
	want := []string{
		`{"type":"add","k":"a"}`,
		`{"n":16,"big":12345678901234567890,"ts":"2026-11-01T09:00:00Z","f":1.5,"on":"yes","2":"two","type":"add","k":"a"}`,
		`{"raw": true}`,
		`[1,null,true]`,
		``,
	}
	if !slices.Equal(data, want) {
		t.Errorf("payloads\n%s\nwant\n%s", strings.Join(data, "\n"), strings.Join(want, "\n"))
	}
	if h := c.Events[4].Header; h.Get("X-A") != "b" || !slices.Equal(h.Values("X-B"), []string{"c", "d"}) || h.Get("ce-time") != "2026-11-01T09:00:00Z" {
		t.Errorf("headers %v", h)
	}
	if c.Events[0].Stream != "EV" || c.Events[0].Subject != "ev.a" || c.Events[0].Pos.Line != 5 {
		t.Errorf("event %+v", c.Events[0])
	}
	x := c.Expect
	if len(x.Projections) != 2 || x.Projections[1].Name != "twos" || len(x.Projections[1].Keys) != 0 {
		t.Fatalf("projections %+v", x.Projections)
	}
	keys := x.Projections[0].Keys
	if len(keys) != 3 || keys[0].Key != "a" || string(keys[0].Value) != `{"n":1}` || keys[1].Key != "gone" || keys[1].Value != nil ||
		keys[2].Key != "1" || string(keys[2].Value) != "2" {
		t.Errorf("keys %+v", keys)
	}
	if !x.CheckDerived || len(x.Derived) != 2 || string(x.Derived[0].Data) != "7" || x.Derived[0].Type != "t" || x.Derived[1].Data != nil {
		t.Errorf("derived %+v", x.Derived)
	}
	if !x.CheckDeadLetters || len(x.DeadLetters) != 2 || x.DeadLetters[0].Count != 1 || x.DeadLetters[1].Count != 0 || x.DeadLetters[1].Pipeline != "twos" {
		t.Errorf("dead letters %+v", x.DeadLetters)
	}
}

// updateHead is where updateCases and updated agree: a passing case, which -update
// leaves as it is, and the events of the wrong one.
const updateHead = `# The cases of TestUpdate.
cases:
  - name: passing            # left as it is
    events:
      EV:
        - {subject: ev.a, data: {type: add, k: a}, time: "2026-11-01T09:00:00Z"}
    expect:
      projections:
        counts: {a: {n: 1}}   # a comment of a passing case
  - name: wrong
    events:
      EV:
        - {subject: ev.a, data: {type: add, k: a}, time: "2026-11-01T09:00:00Z"}
        - {subject: ev.a, data: {type: add, k: a}, time: "2026-11-01T09:00:01Z"}
`

const updateCases = updateHead + `    expect:                  # this comment is lost
      projections:
        counts:
          a: {n: 1}          # and so is this one
        twos: {}

    # a comment before the next case stays
  - expect: {derived: [{subject: out.x}]}    # expect first: its line keeps "- "
    name: first
    events:
      EV: [{subject: ev.c, data: {type: add, k: "c d"}, time: "2026-11-01T09:00:00Z"}]
  - name: no expectations
    events:
      EV:
        - {subject: ev.b, data: not json}
        - {subject: ev.b, data: "not json either"}
# the end
`

const updated = updateHead + `    expect:
      projections:
        counts:
          a: {n: 2}
        per_minute:
          a.1793523600000: {closed: false, end: "2026-11-01T09:01:00Z", events: 2, mean: 1.5, start: "2026-11-01T09:00:00Z"}
        twos:
          a: {seen: 1}
      derived:
        - subject: out.two.a
          data: {k: a, n: 2, type: two}
      dead_letters: []

    # a comment before the next case stays
  - expect:
      projections:
        counts:
          c d: {n: 1}
        per_minute:
          c d.1793523600000: {closed: false, end: "2026-11-01T09:01:00Z", events: 1, mean: 1, start: "2026-11-01T09:00:00Z"}
      derived: []
      dead_letters: []
    name: first
    events:
      EV: [{subject: ev.c, data: {type: add, k: "c d"}, time: "2026-11-01T09:00:00Z"}]
  - name: no expectations
    events:
      EV:
        - {subject: ev.b, data: not json}
        - {subject: ev.b, data: "not json either"}
    expect:
      derived: []
      dead_letters:
        - {pipeline: counts, subject: ev.b, reason: "payload does not decode: invalid JSON at byte 2: invalid character 'o' in literal null (expecting 'u')", count: 2}
# the end
`

func TestUpdate(t *testing.T) {
	e, dir := newEngine(t, testConfig, Options{})
	f := load(t, e, dir, "cases.yaml", updateCases)
	results := e.RunAll(context.Background(), f.Cases, nil)
	var failing []Result
	for _, r := range results {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Case.Name, r.Err)
		}
		if !r.Passed() {
			failing = append(failing, r)
		}
	}
	if len(failing) != 3 {
		t.Fatalf("%d failing cases, want 3", len(failing))
	}
	n, err := e.Update(f, failing)
	if err != nil || n != 3 {
		t.Fatalf("update: %d cases, %v", n, err)
	}
	got, err := os.ReadFile(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != updated {
		t.Fatalf("updated file\n%s\nwant\n%s", got, updated)
	}
	// What --update wrote passes.
	f = load(t, e, dir, "cases.yaml", updated)
	for _, r := range e.RunAll(context.Background(), f.Cases, nil) {
		if !r.Passed() {
			var b bytes.Buffer
			r.WriteReport(&b)
			t.Errorf("after --update:\n%s", b.String())
		}
	}
}

func TestUpdateRefuses(t *testing.T) {
	e, dir := newEngine(t, testConfig, Options{})
	text := `cases:
  - {name: flow, events: {EV: [{subject: ev.a, data: {type: add, k: a}, time: "2026-11-01T09:00:00Z"}]}}
  - name: block
    events: {EV: [{subject: ev.a, data: {type: add, k: a}, time: "2026-11-01T09:00:00Z"}]}
`
	f := load(t, e, dir, "cases.yaml", text)
	results := e.RunAll(context.Background(), f.Cases, nil)
	if _, err := e.Update(f, results); err == nil || !strings.Contains(err.Error(), `case "flow": --update rewrites cases written in block style only`) {
		t.Fatalf("update of a flow-style case: %v", err)
	}
	if got, _ := os.ReadFile(f.Path); string(got) != text {
		t.Errorf("the file changed:\n%s", got)
	}
}
