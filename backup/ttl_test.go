package backup

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestRemainingTTL: a key is restored with what was left of its TTL when the backup was
// taken, at least a second; a TTL of "never", or none, is not set.
func TestRemainingTTL(t *testing.T) {
	stored := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		ttl    string
		at     time.Time
		want   string
		wantOK bool
	}{
		{name: "seconds", ttl: "3600", at: stored.Add(10 * time.Minute), want: "3000", wantOK: true},
		{name: "duration", ttl: "1h", at: stored.Add(time.Minute), want: "3540", wantOK: true},
		{name: "expired", ttl: "60", at: stored.Add(2 * time.Minute), want: "1", wantOK: true},
		{name: "stored after the backup began", ttl: "60", at: stored.Add(-time.Second), want: "60", wantOK: true},
		{name: "part of a second left", ttl: "60", at: stored.Add(1500 * time.Millisecond), want: "58", wantOK: true},
		{name: "never", ttl: "never", at: stored},
		{name: "none", at: stored},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := Entry{Key: "k", Stored: stored}
			if tt.ttl != "" {
				e.Headers = nats.Header{"Nats-TTL": {tt.ttl}}
			}
			got, ok := e.remainingTTL(tt.at)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("remainingTTL = %q, %t; want %q, %t", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
