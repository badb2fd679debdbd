package pipeline

import "testing"

func TestSubjectMatches(t *testing.T) {
	for _, tt := range []struct {
		filter, subject string
		want            bool
	}{
		{"a.b", "a.b", true},
		{"a.b", "a.c", false},
		{"a.b", "a.b.c", false},
		{"a.b.c", "a.b", false},
		{"a.*", "a.b", true},
		{"a.*", "a.b.c", false},
		{"a.*.c", "a.b.c", true},
		{"a.>", "a.b", true},
		{"a.>", "a.b.c", true},
		{"a.>", "a", false},
		{">", "a", true},
		{"*", "a.b", false},
		{"a.>.c", "a.>.c", true}, // `>` before the end is a plain token
		{"a.>.c", "a.b.c", false},
	} {
		if got := subjectMatches(tt.filter, tt.subject); got != tt.want {
			t.Errorf("subjectMatches(%q, %q) = %t, want %t", tt.filter, tt.subject, got, tt.want)
		}
	}
	if !matchesAny(nil, "x") || matchesAny([]string{"a.*", "b"}, "c") || !matchesAny([]string{"a.*", "b"}, "b") {
		t.Error("matchesAny")
	}
}
