package streams_test

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/streams"
)

// TestStreamConfigSubjectTransform checks that a declared subject transform reaches the
// stream configuration, and that a stream without it, or with another, drifts.
func TestStreamConfigSubjectTransform(t *testing.T) {
	d := config.Stream{Name: "SHOP", Subjects: []string{"shop.*"}, Replicas: 1,
		SubjectTransform: config.Transform{Src: "shop.*", Dest: "{{partition(4,1)}}.shop.{{wildcard(1)}}"}}
	want := streams.StreamConfig(d)
	if tr := want.SubjectTransform; tr == nil || tr.Source != "shop.*" || tr.Destination != d.SubjectTransform.Dest {
		t.Fatalf("SubjectTransform %+v, want the declared one", tr)
	}
	if plain := streams.StreamConfig(config.Stream{Name: "SHOP", Subjects: []string{"shop.*"}}); plain.SubjectTransform != nil {
		t.Errorf("no transform declared, got %+v", plain.SubjectTransform)
	}
	tests := []struct {
		name  string
		have  *jetstream.SubjectTransformConfig
		drift bool
	}{
		{"same", &jetstream.SubjectTransformConfig{Source: "shop.*", Destination: d.SubjectTransform.Dest}, false},
		{"none", nil, true},
		{"other", &jetstream.SubjectTransformConfig{Source: "shop.*", Destination: "{{partition(2,1)}}.shop.{{wildcard(1)}}"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			have := want
			have.SubjectTransform = tt.have
			got := streams.Drift(have, want)
			if drift := len(got) > 0 && strings.HasPrefix(got[0], "subject_transform"); drift != tt.drift || len(got) > 1 {
				t.Errorf("Drift = %q, want a subject_transform drift: %v", got, tt.drift)
			}
		})
	}
}
