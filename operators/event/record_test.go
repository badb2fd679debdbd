package event

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
)

// TestRecordJSON: a record writes what encoding/json writes for its map, flat or not, in a
// shape or not.
func TestRecordJSON(t *testing.T) {
	tests := []map[string]any{
		{},
		{"a": 1.0, "b": math.Copysign(0, -1), "c": 1e21, "d": 1e-7, "e": 123456.789, "f": 1e20, "g": 5e-324, "h": -1.5e-9},
		{"s": "plain", "t": "<tag> & \"q\" \\ \n\t\u00e9\u2028", "n": nil, "y": true, "z": false},
		{"nested": map[string]any{"k": []any{1.0, "x", nil}}, "a": 2.0},
		{"é": 1.0, "<k>": "v", "": 0.0},
		{"bad utf8": "a\xffb"},
	}
	shapes := []*Shape{nil, NewShape("a", "b", "c", "s", "t", "nested", "<k>", "", "bad utf8"), NewShape("a")}
	for _, m := range tests {
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range shapes {
			got, err := NewRecord(s, m).AppendJSON(nil)
			if err != nil || string(got) != string(want) {
				t.Errorf("record of %v in shape %v wrote %s (%v), want %s", m, s.Names(), got, err, want)
			}
		}
	}
	if _, err := NewRecord(NewShape("a"), map[string]any{"a": math.Inf(1)}).AppendJSON(nil); err == nil {
		t.Error("an infinite number was encoded")
	}
}

// TestAppendFloat: numbers are written as encoding/json writes them, over many magnitudes.
func TestAppendFloat(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		f := math.Float64frombits(rng.Uint64())
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		want, _ := json.Marshal(f)
		if got := appendFloat(nil, f); string(got) != string(want) {
			t.Fatalf("appendFloat(%v) = %s, want %s", f, got, want)
		}
	}
}

// BenchmarkAppendJSONNested writes a state that is not flat (a nested map and list, a string
// with characters JSON escapes), which AppendJSON leaves to its general encoder.
func BenchmarkAppendJSONNested(b *testing.B) {
	s := NewShape("items", "last_order", "orders", "revenue", "tags", "city")
	r := NewRecord(s, map[string]any{
		"items": 3.0, "orders": 12.0, "revenue": 1234.5, "last_order": "o-991",
		"tags": []any{"vip", "eu"}, "city": "Zürich",
		"address": map[string]any{"street": "Bahnhofstrasse 1", "zip": "8001", "geo": []any{47.37, 8.54}},
	})
	var dst []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = r.AppendJSON(dst[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSameSize: only replacements that leave the size estimate unchanged skip the check.
func TestSameSize(t *testing.T) {
	tests := []struct {
		old, v any
		same   bool
	}{
		{1.0, 123456789.5, true},
		{true, false, true},
		{nil, nil, true},
		{1.0, "1", false},
		{"a", "b", false},
		{nil, 1.0, false},
		{false, nil, false},
		{map[string]any{}, map[string]any{}, false},
	}
	for _, tt := range tests {
		old := ValueOf(tt.old)
		if got := old.SameSize(ValueOf(tt.v)); got != tt.same {
			t.Errorf("SameSize(%v, %v) = %v, want %v", tt.old, tt.v, got, tt.same)
		}
	}
}
