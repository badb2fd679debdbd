package oracle_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/jetfold/jetfold/internal/oracle"
)

// t0 is the origin of the tests' event times: a whole day, so a whole minute too.
var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// at is t0 plus a duration such as "1m30s" or "-10m".
func at(d string) time.Time {
	x, err := time.ParseDuration(d)
	if err != nil {
		panic(err)
	}
	return t0.Add(x)
}

// ms is the Unix milliseconds of at(d), as in a KV key.
func ms(d string) string { return strconv.FormatInt(at(d).UnixMilli(), 10) }

// ev is a valid event that reaches the operator, with fields in pairs (name, value).
func ev(seq uint64, key, typ, when string, fields ...any) oracle.Event {
	f := map[string]any{}
	for i := 0; i+1 < len(fields); i += 2 {
		f[fields[i].(string)] = fields[i+1]
	}
	return oracle.Event{Seq: seq, Key: key, Type: typ, Time: at(when), Fields: f, Valid: true, Reaches: true}
}

// filtered is e not reaching the operator.
func filtered(e oracle.Event) oracle.Event { e.Reaches = false; return e }

// invalid is e without a valid time.
func invalid(e oracle.Event) oracle.Event { e.Valid = false; return e }

// hydrated is e replayed on purpose.
func hydrated(e oracle.Event) oracle.Event { e.Hydrated = true; return e }

func TestTimestamp(t *testing.T) {
	if got := oracle.Timestamp(time.Date(2024, 1, 1, 1, 0, 0, 0, time.FixedZone("x", 3600))); got != "2024-01-01T00:00:00Z" {
		t.Errorf("Timestamp = %s", got)
	}
	if got := oracle.Timestamp(at("1.5s")); got != "2024-01-01T00:00:01.5Z" {
		t.Errorf("Timestamp = %s", got)
	}
}

func TestEventsOutOfOrderPanic(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic for a sequence that does not increase")
		}
	}()
	oracle.Dedupe([]oracle.Event{ev(2, "a", "", "0"), ev(2, "a", "", "0")}, oracle.DedupeSpec{ID: func(oracle.Event) string { return "" }, Within: time.Hour})
}
