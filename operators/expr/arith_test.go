package expr

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
