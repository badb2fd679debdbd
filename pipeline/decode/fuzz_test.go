package decode

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/jetfold/jetfold/operators/event"

	gojson "github.com/goccy/go-json"
)

// FuzzDecodeEvent: any payload either decodes into an object that survives a JSON round trip,
// or fails with ErrDecode; never a panic. Event times parse or fail, never panic.
func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{
		`{"type":"add","user_id":"u1","amount":12.5}`, `{}`, `[]`, `null`, `"text"`, `{"a":`, ``,
		`{"specversion":"1.0","type":"t","data":{"x":1}}`, `{"specversion":"1.0","data":[1]}`,
		`{"ts":"2026-01-01T00:00:00.123456789Z"}`, `{"a":"\ud800"}`, "{\"a\":\"\xff\"}", `{"a":1e999}`,
		`{"a":"\uD83D\uDE00"}`, `{"ts":1767225600000}`,
		`{"\u0061":1,"b":"x"}`, `{"a":1,"a":"two"}`, ` { "a" : { "b" : "\"}" } , "b" : [1,{"c":[]}] } `,
		`{"a":"q\\","b":"\\\""}`, `{"a":-0.5e-3,"b":true,"c":null}`, `{"a\"":1}`, `{"b":1e400,"a":1}`, `{"b":[-1E+999]}`, `{"b":1e-400}`, `{"ts":-1e300}`, "\xff\xfe",
		// from the poison corpus (TestPoisonCorpus)
		`{"k":"x","d":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`,
		`{"k":"x","d":` + strings.Repeat("[", 500) + strings.Repeat("]", 500) + `}`,
		`{"k":"a\r\nb"}`, `{"k":"a.>"}`, `{"k":""}`, `{"k":"x y","to":"out"}`, "{\"k\":\"u\xff\"}", `{"k":`,
	} {
		f.Add([]byte(s), "json")
		f.Add([]byte(s), "cloudevents")
	}
	f.Add([]byte("anything"), "raw")
	f.Fuzz(func(t *testing.T, data []byte, kind string) {
		checkFastAgrees(t, data)
		fields, _, err := Payload(kind, data, nil)
		if err != nil {
			if kind != "raw" && !errors.Is(err, ErrDecode) {
				t.Fatalf("error %v does not wrap ErrDecode", err)
			}
			return
		}
		if fields == nil {
			t.Fatal("nil event without an error")
		}
		if _, err := json.Marshal(fields); err != nil {
			t.Fatalf("decoded event does not encode: %v", err)
		}
		for _, v := range fields {
			_, _ = Time(v)
		}
	})
}

// checkFastAgrees: the fastjson decoder accepts what encoding/json accepts and gives the same
// event (compared as JSON).
func checkFastAgrees(t *testing.T, data []byte) {
	t.Helper()
	want, _, werr := Payload("json", data, nil)
	var ev event.Event
	gerr := New("json", nil, nil).Decode(&ev, data, nil)
	got := ev.FieldMap()
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("encoding/json err %v, decoder err %v for %q", werr, gerr, data)
	}
	// Decoding a few fields into slots accepts and refuses the same payloads.
	for _, names := range [][]string{{"a"}, {"zz"}} {
		var ev event.Event
		err := New("json", event.NewLayout(names), nil).Decode(&ev, data, nil)
		if (werr == nil) != (err == nil) {
			t.Fatalf("encoding/json err %v, decoder of fields %v err %v for %q", werr, names, err, data)
		}
	}
	if werr != nil {
		return
	}
	w, _ := json.Marshal(want)
	g, _ := json.Marshal(got)
	if !bytes.Equal(w, g) {
		t.Fatalf("decoded differently: encoding/json %s, decoder %s", w, g)
	}
	// States are encoded as records at commit (through go-json when they are not flat): they
	// must read as encoding/json writes them.
	if gj, err := gojson.Marshal(got); err != nil || !bytes.Equal(gj, g) {
		t.Fatalf("go-json wrote %s (%v), encoding/json %s", gj, err, g)
	}
	for _, shape := range []*event.Shape{nil, event.NewShape("a", "b")} {
		if rj, err := event.NewRecord(shape, got).AppendJSON(nil); err != nil || !bytes.Equal(rj, g) {
			t.Fatalf("the record wrote %s (%v), encoding/json %s", rj, err, g)
		}
	}
	checkWalk(t, data)
	// Into slots: the fields a and b, and a alone of the same layout (as prefetch does).
	layout := event.NewLayout([]string{"a", "b"})
	for _, only := range [][]string{nil, {"a"}} {
		var sub event.Event
		if err := New("json", layout, only).Decode(&sub, data, nil); err != nil {
			t.Fatalf("decoding fields %v failed where the whole event decodes: %v", only, err)
		}
		m := sub.FieldMap()
		for _, f := range []string{"a", "b"} {
			sa, _ := json.Marshal(m[f])
			ga, _ := json.Marshal(got[f])
			if only != nil && !slices.Contains(only, f) {
				ga = []byte("null")
			}
			if !bytes.Equal(sa, ga) {
				t.Fatalf("field %s decoded into a slot (of %v) %s, with the rest %s", f, only, sa, ga)
			}
		}
	}
}

// checkWalk: the walk over the members of a payload encoding/json takes finds what
// encoding/json finds (the last of duplicates), unless it leaves the payload to encoding/json.
func checkWalk(t *testing.T, data []byte) {
	t.Helper()
	var raw map[string]json.RawMessage
	if json.Unmarshal(data, &raw) != nil {
		return
	}
	var walk members
	seen := map[string]json.RawMessage{}
	for ok := walk.reset(data); ok; {
		k, v, esc, more := walk.next()
		if !more {
			break
		}
		var key string
		if err := json.Unmarshal(append(append([]byte{'"'}, k...), '"'), &key); err != nil {
			t.Fatalf("walk: key %q does not decode: %v", k, err)
		}
		if esc != bytes.ContainsRune(k, '\\') {
			t.Fatalf("walk: key %q escaped %v", k, esc)
		}
		seen[key] = v
	}
	switch {
	case walk.bad:
		t.Fatalf("walk refused what encoding/json takes: %q", data)
	case walk.odd:
		return // left to encoding/json, compared by the caller
	case len(seen) != len(raw):
		t.Fatalf("walk found %d members, encoding/json %d", len(seen), len(raw))
	}
	for k, v := range raw {
		if !bytes.Equal(bytes.TrimSpace(v), seen[k]) {
			t.Fatalf("walk: member %q is %q, encoding/json %q", k, seen[k], v)
		}
	}
}

// TestPlain8: the eight-byte test of the walk agrees with a test of each byte.
func TestPlain8(t *testing.T) {
	for at := 0; at < 8; at++ {
		for c := 0; c < 256; c++ {
			b := []byte("abcdefgh")
			b[at] = byte(c)
			want := c >= 0x20 && c < 0x80 && c != '"' && c != '\\'
			if got := plain8(binary.LittleEndian.Uint64(b)); got != want {
				t.Errorf("plain8(%q) = %v, want %v", b, got, want)
			}
		}
	}
}
