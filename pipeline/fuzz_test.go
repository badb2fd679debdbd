package pipeline

import (
	"bytes"
	"encoding/json"

	"errors"
	"testing"

	gojson "github.com/goccy/go-json"
)

// FuzzDecodeEvent: any payload either decodes into an object that survives a JSON round trip,
// or fails with ErrDecode; never a panic. Event times parse or fail, never panic.
func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{
		`{"type":"add","user_id":"u1","amount":12.5}`, `{}`, `[]`, `null`, `"text"`, `{"a":`, ``,
		`{"specversion":"1.0","type":"t","data":{"x":1}}`, `{"specversion":"1.0","data":[1]}`,
		`{"ts":"2026-01-01T00:00:00.123456789Z"}`, `{"a":"\ud800"}`, "{\"a\":\"\xff\"}", `{"a":1e999}`,
		`{"a":"\uD83D\uDE00"}`, `{"ts":1767225600000}`, `{"ts":-1e300}`, "\xff\xfe",
	} {
		f.Add([]byte(s), "json")
		f.Add([]byte(s), "cloudevents")
	}
	f.Add([]byte("anything"), "raw")
	f.Fuzz(func(t *testing.T, data []byte, kind string) {
		checkFastAgrees(t, data)
		fields, _, err := decodeEvent(kind, data, nil)
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
			_, _ = eventTime(v)
		}
	})
}

// checkFastAgrees: the fastjson decoder accepts what encoding/json accepts and gives the same
// event (compared as JSON).
func checkFastAgrees(t *testing.T, data []byte) {
	t.Helper()
	want, _, werr := decodeEvent("json", data, nil)
	got, _, gerr := newDecoder("json", nil, true).decode(data, nil)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("encoding/json err %v, fastjson err %v for %q", werr, gerr, data)
	}
	if werr != nil {
		return
	}
	w, _ := json.Marshal(want)
	g, _ := json.Marshal(got)
	if !bytes.Equal(w, g) {
		t.Fatalf("decoded differently: encoding/json %s, fastjson %s", w, g)
	}
	// States are encoded with go-json at commit: it must write what encoding/json writes.
	if gj, err := gojson.Marshal(got); err != nil || !bytes.Equal(gj, g) {
		t.Fatalf("go-json wrote %s (%v), encoding/json %s", gj, err, g)
	}
	sub, _, err := newDecoder("json", []string{"a"}, false).decode(data, nil)
	if err != nil {
		t.Fatalf("decoding only field a failed where the whole event decodes: %v", err)
	}
	sa, _ := json.Marshal(sub["a"])
	ga, _ := json.Marshal(got["a"])
	if !bytes.Equal(sa, ga) {
		t.Fatalf("field a decoded alone %s, with the rest %s", sa, ga)
	}
}
