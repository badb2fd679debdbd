package pipeline

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzDecodeEvent: any payload either decodes into an object that survives a JSON round trip,
// or fails with ErrDecode; never a panic. Event times parse or fail, never panic.
func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{
		`{"type":"add","user_id":"u1","amount":12.5}`, `{}`, `[]`, `null`, `"text"`, `{"a":`, ``,
		`{"specversion":"1.0","type":"t","data":{"x":1}}`, `{"specversion":"1.0","data":[1]}`,
		`{"ts":"2026-01-01T00:00:00.123456789Z"}`, `{"ts":1767225600000}`, `{"ts":-1e300}`, "\xff\xfe",
	} {
		f.Add([]byte(s), "json")
		f.Add([]byte(s), "cloudevents")
	}
	f.Add([]byte("anything"), "raw")
	f.Fuzz(func(t *testing.T, data []byte, kind string) {
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
