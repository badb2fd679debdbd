package casetest

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/jetfold/jetfold/config/diag"
)

func at(line int) diag.Pos { return diag.Pos{File: "c.yaml", Line: line, Col: 1} }

// whats returns each mismatch as "line: what".
func whats(ms []Mismatch) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Pos.String()+": "+m.What)
	}
	return out
}

func TestCheckProjections(t *testing.T) {
	a := Actual{Projections: []Projection{
		{Name: "carts", Keys: []KeyValue{
			{Key: "u1", Value: json.RawMessage(`{"items":2,"revenue":50.300000000000004,"_sum":7}`)},
			{Key: "u2", Value: json.RawMessage(`{"items":1}`)},
			{Key: "u3", Value: json.RawMessage(`{"items":0}`)},
		}},
		{Name: "users", Keys: []KeyValue{{Key: "u1", Value: json.RawMessage(`{"name":"Grace"}`)}}},
	}}
	// Members in another order, a sum within the tolerance, "_" members ignored: equal.
	ok := Expect{Projections: []ProjectionExpect{{Name: "carts", Pos: at(1), Keys: []KeyExpect{
		{Key: "u1", Value: json.RawMessage(`{"revenue":50.3,"items":2}`), Pos: at(2)},
		{Key: "u2", Value: json.RawMessage(`{"items":1}`), Pos: at(3)},
		{Key: "u3", Value: json.RawMessage(`{"items":0}`), Pos: at(4)},
		{Key: "u9", Pos: at(5)}, // null: no value, and it has none
	}}}}
	if ms := Check(ok, a); len(ms) != 0 {
		t.Fatalf("mismatches %v, want none", whats(ms))
	}

	bad := Expect{Projections: []ProjectionExpect{{Name: "carts", Pos: at(1), Keys: []KeyExpect{
		{Key: "u1", Value: json.RawMessage(`{"items":2,"revenue":50.4,"_sum":8}`), Pos: at(2)}, // a "_" member named is compared
		{Key: "u2", Pos: at(3)}, // null, but it has a value
		{Key: "u4", Value: json.RawMessage(`{"items":1}`), Pos: at(4)},
		// u3 not listed: not expected
	}}}}
	ms := Check(bad, a)
	want := []string{
		"c.yaml:2:1: projection carts, key u1: value differs",
		"c.yaml:3:1: projection carts, key u2: expected no value",
		"c.yaml:4:1: projection carts, key u4: missing",
		"c.yaml:1:1: projection carts, key u3: not expected",
	}
	if got := whats(ms); !slices.Equal(got, want) {
		t.Fatalf("mismatches\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got, want := ms[0].Details, []string{"revenue: expected 50.4, actual 50.300000000000004", "_sum: expected 8, actual 7"}; !slices.Equal(got, want) {
		t.Errorf("details %q, want %q", got, want)
	}
	if ms[0].Actual != `{"items":2,"revenue":50.300000000000004,"_sum":7}` || ms[3].Actual != `{"items":0}` {
		t.Errorf("actual values %q and %q", ms[0].Actual, ms[3].Actual)
	}
}

func TestCheckDerived(t *testing.T) {
	a := Actual{Derived: []Derived{
		{Pipeline: "p", Subject: "out.a", Type: "out.a", Data: []byte(`{"n":1}`)},
		{Pipeline: "p", Subject: "out.a", Type: "out.a", Data: []byte(`{"n":2}`)},
		{Pipeline: "p", Subject: "out.b", Type: "typed", Data: []byte(`{"n":3}`)},
		{Pipeline: "p", Subject: "out.c", Type: "out.c", Data: []byte(`not json`)},
	}}
	// In another order, data left out (any), a type, a payload that is not JSON: all match.
	ok := Expect{CheckDerived: true, Derived: []DerivedExpect{
		{Subject: "out.b", Type: "typed", Pos: at(2)},
		{Subject: "out.a", Data: json.RawMessage(`{"n":2}`), Pos: at(3)},
		{Subject: "out.c", Data: json.RawMessage(`"not json"`), Pos: at(4)},
		{Subject: "out.a", Data: json.RawMessage(`{"n":1.0}`), Pos: at(5)},
	}}
	if ms := Check(ok, a); len(ms) != 0 {
		t.Fatalf("mismatches %v, want none", whats(ms))
	}
	// One for one: a second expectation of the same event does not match it again.
	bad := Expect{CheckDerived: true, DerivedPos: at(1), Derived: []DerivedExpect{
		{Subject: "out.a", Data: json.RawMessage(`{"n":1}`), Pos: at(2)},
		{Subject: "out.a", Data: json.RawMessage(`{"n":1}`), Pos: at(3)}, // the {"n":2} one, different
		{Subject: "out.b", Type: "other", Pos: at(4)},
		{Subject: "out.d", Pos: at(5)},
	}}
	ms := Check(bad, a)
	want := []string{
		"c.yaml:3:1: derived event out.a: differs",
		"c.yaml:4:1: derived event out.b: differs",
		"c.yaml:5:1: derived event out.d: missing",
		"c.yaml:1:1: derived event out.c (pipeline p): not expected",
	}
	if got := whats(ms); !slices.Equal(got, want) {
		t.Fatalf("mismatches\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := ms[0].Details; !slices.Equal(got, []string{"n: expected 1, actual 2"}) {
		t.Errorf("details %q", got)
	}
	if got := ms[1].Details; !slices.Equal(got, []string{"type: expected other, actual typed"}) {
		t.Errorf("details %q", got)
	}
	// Without derived:, nothing about them is checked.
	if ms := Check(Expect{}, a); len(ms) != 0 {
		t.Errorf("mismatches %v without derived:", whats(ms))
	}
}

func TestCheckDeadLetters(t *testing.T) {
	a := Actual{DeadLetters: []DeadLetter{
		{Pipeline: "p", Subject: "ev.1", Reason: "payload does not decode: invalid JSON"},
		{Pipeline: "p", Subject: "ev.2", Reason: "payload does not decode: invalid JSON"},
		{Pipeline: "q", Subject: "ev.1", Reason: "key: expression failed"},
	}}
	ok := Expect{CheckDeadLetters: true, DeadLetters: []DeadLetterExpect{
		{Reason: "DOES NOT DECODE", Count: 2, Pos: at(2)},
		{Pipeline: "q", Subject: "ev.1", Count: 1, Pos: at(3)},
	}}
	if ms := Check(ok, a); len(ms) != 0 {
		t.Fatalf("mismatches %v, want none", whats(ms))
	}
	bad := Expect{CheckDeadLetters: true, DeadLettersPos: at(1), DeadLetters: []DeadLetterExpect{
		{Subject: "ev.1", Reason: "decode", Count: 2, Pos: at(2)},
		{Subject: "ev.9", Count: 0, Pos: at(3)}, // none: right
	}}
	ms := Check(bad, a)
	want := []string{
		`c.yaml:2:1: dead letters with subject ev.1, reason "decode"`,
		"c.yaml:1:1: dead letter not expected",
		"c.yaml:1:1: dead letter not expected",
	}
	if got := whats(ms); !slices.Equal(got, want) {
		t.Fatalf("mismatches\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if ms[0].Expected != "2" || ms[0].Actual != "1" || len(ms[0].Details) != 1 {
		t.Errorf("count mismatch %+v", ms[0])
	}
	if ms := Check(Expect{CheckDeadLetters: true, DeadLettersPos: at(1)}, a); len(ms) != 3 {
		t.Errorf("dead_letters: [] gives %d mismatches, want 3", len(ms))
	}
}

func TestYAMLScalars(t *testing.T) {
	for s, want := range map[string]string{
		"user-1":               "user-1",
		"Grace 1":              "Grace 1",
		"":                     `""`,
		"true":                 `"true"`,
		"12":                   `"12"`,
		"2026-11-01T09:00:00Z": `"2026-11-01T09:00:00Z"`,
		"a, b":                 `"a, b"`,
		"x: y":                 `"x: y"`,
		"-1x":                  `"-1x"`,
		"null":                 `"null"`,
		" lead":                `" lead"`,
		"it's \"q\"\n":         `"it's \"q\"\n"`,
	} {
		got := yamlScalar(s)
		if got != want {
			t.Errorf("yamlScalar(%q) = %s, want %s", s, got, want)
		}
		var back []map[string]string
		if err := yaml.Unmarshal([]byte("[{"+got+": "+got+"}]"), &back); err != nil || len(back) != 1 || back[0][s] != s {
			t.Errorf("%s in a flow collection reads back as %q (%v), want %q", got, back, err, s)
		}
	}
	for n, want := range map[string]string{"50.300000000000004": "50.3", "7": "7", "0.1": "0.1", "1e+21": "1e+21", "12345678901234567": "12345678901234567"} {
		if got := yamlNumber(json.Number(n)); got != want {
			t.Errorf("yamlNumber(%s) = %s, want %s", n, got, want)
		}
	}
	v, err := parseJSON([]byte(`{"b":[1,{"c":null}],"a":"x y","t":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := yamlFlow(v); got != `{b: [1, {c: null}], a: x y, t: true}` {
		t.Errorf("yamlFlow = %s", got)
	}
	if got := jsonText(v); got != `{"b":[1,{"c":null}],"a":"x y","t":true}` {
		t.Errorf("jsonText = %s", got)
	}
}
