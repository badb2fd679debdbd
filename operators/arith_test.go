package operators

import "testing"

// TestArithRecognised: the fast path is taken for the forms it is meant for, and only those.
func TestArithRecognised(t *testing.T) {
	tests := []struct {
		src  string
		fast bool
	}{
		{"state.count + 1", true},
		{"state.total + event.amount", true},
		{"state.total - event.amount", true},
		{"2.5 * event.qty", true},
		{"state.a + state.b", true},
		{"state.count / 2", false},
		{"state.count + 1 + 1", false},
		{"max(state.qty - 1, 0)", false},
		{"state.count ?? 0", false},
		{"1 + 2", false},
		{`event["a"] + 1`, true},
	}
	for _, tt := range tests {
		e := MustCompile(tt.src, AnyResult)
		if got := e.arith != nil; got != tt.fast {
			t.Errorf("%s: fast path %v, want %v", tt.src, got, tt.fast)
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
		old := valueOf(tt.old)
		if got := old.sameSize(valueOf(tt.v)); got != tt.same {
			t.Errorf("sameSize(%v, %v) = %v, want %v", tt.old, tt.v, got, tt.same)
		}
	}
}
