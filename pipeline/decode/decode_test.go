package decode

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"

	"github.com/jetfold/jetfold/operators/event"
)

// TestInterner: the values of a field with few of them come from the table without an
// allocation; a field with a new value in most events turns interning off.
func TestInterner(t *testing.T) {
	var few interner
	types := [][]byte{[]byte("created"), []byte("paid"), []byte("shipped")}
	for i := range 1000 {
		few.get(types[i%3])
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, b := range types {
			if few.get(b).(string) != string(b) {
				t.Fatal("interned value differs")
			}
		}
	})
	if allocs != 0 || few.off {
		t.Errorf("a field of 3 values: %v allocations per lookup round, off %v; want 0 and on", allocs, few.off)
	}
	var many interner
	for i := range 3 * internMax {
		if got := many.get([]byte("k" + strconv.Itoa(i))).(string); got != "k"+strconv.Itoa(i) {
			t.Fatalf("value %d is %q", i, got)
		}
	}
	if !many.off || many.m != nil {
		t.Errorf("a field with a new value each time: off %v, table of %d; want off and dropped", many.off, len(many.m))
	}
}

// TestDecodeSlots: a payload decodes into the slots of the layout's fields only, values
// converted on reading as encoding/json converts them; prefetch's decoder converts only the
// fields it is given.
func TestDecodeSlots(t *testing.T) {
	l := event.NewLayout([]string{"amount", "key", "missing", "nested", "type"})
	data := []byte(`{"type":"t1","key":"k\"1","amount":-12.50,"big":1e300,"nested":{"a":[1,"}"]},"note":"xx"}`)
	tests := []struct {
		name string
		only []string
		want map[string]any
	}{
		{"all", nil, map[string]any{"amount": -12.5, "key": `k"1`, "nested": map[string]any{"a": []any{1.0, "}"}}, "type": "t1"}},
		{"prefetch", []string{"key", "type"}, map[string]any{"key": `k"1`, "type": "t1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ev event.Event
			if err := New("json", l, tt.only).Decode(&ev, data, nil); err != nil {
				t.Fatal(err)
			}
			if ev.Fields != nil {
				t.Fatal("decoded into a map, want slots")
			}
			got := ev.FieldMap()
			if len(got) != len(tt.want) {
				t.Errorf("fields %v, want %v", got, tt.want)
			}
			for k, w := range tt.want {
				if g := got[k]; !equalJSON(g, w) {
					t.Errorf("%s = %#v, want %#v", k, g, w)
				}
			}
		})
	}
}

func equalJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// TestDecodeState: a loaded projection value decodes as encoding/json decodes it into a map
// (null: an empty state), and anything but an object is an error.
func TestDecodeState(t *testing.T) {
	for _, data := range []string{`{"a":1,"b":"x","c":{"d":[1,null]}}`, `{}`, `null`, ` null `, `[]`, `"x"`, `1`, `{"a":`, "{\"a\":\"\xff\"}", `{"a":1e400}`} {
		got, err := State([]byte(data))
		var want map[string]any
		werr := json.Unmarshal([]byte(data), &want)
		if werr == nil && want == nil {
			want = map[string]any{}
		}
		if (err == nil) != (werr == nil) || (err == nil && fmt.Sprint(got) != fmt.Sprint(want)) {
			t.Errorf("%s: got %v (%v), encoding/json %v (%v)", data, got, err, want, werr)
		}
	}
}

// TestDecodeReasons: a payload that is not an event is refused in a user's terms, never in
// Go's ("Go value of type map[string]interface {}").
func TestDecodeReasons(t *testing.T) {
	tests := []struct {
		payload, want string
	}{
		{``, "payload does not decode: empty payload, want a JSON object"},
		{`  `, "payload does not decode: empty payload, want a JSON object"},
		{`"text"`, "payload does not decode: want a JSON object, got a string"},
		{`[1,2]`, "payload does not decode: want a JSON object, got an array"},
		{`12`, "payload does not decode: want a JSON object, got a number"},
		{`true`, "payload does not decode: want a JSON object, got a bool"},
		{`null`, "payload does not decode: not a JSON object"},
		{`{"a":`, "payload does not decode: invalid JSON at byte 5: unexpected end of JSON input"},
	}
	for _, tt := range tests {
		t.Run(tt.payload, func(t *testing.T) {
			_, _, err := Payload("json", []byte(tt.payload), nil)
			if err == nil || err.Error() != tt.want {
				t.Errorf("decode %q: %v, want %q", tt.payload, err, tt.want)
			}
		})
	}
}
