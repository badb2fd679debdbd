package backup_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetfold/jetfold/backup"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/pipetest"
	"github.com/jetfold/jetfold/streams"
)

// BenchmarkWriteRestore backs up and restores a projection of 100,000 keys of about 200
// bytes, on two embedded servers, and reports keys per second of each.
func BenchmarkWriteRestore(b *testing.B) {
	const keys = 100_000
	ctx := context.Background()
	s := natstest.Server(b)
	_, js := natstest.Connect(b, s)
	ps := pipetest.Build(b, js, b.TempDir()+"/p.yaml", fmt.Sprintf(tallyYAML, s.ClientURL()), nil)
	if _, err := streams.EnsureBucket(ctx, js, "tally"); err != nil {
		b.Fatal(err)
	}
	w := streams.NewWindow(js, natstest.PublishWindow)
	pad := strings.Repeat("x", 150)
	for i := range keys {
		m := &nats.Msg{Subject: streams.KVSubject("tally", fmt.Sprintf("key-%d", i)), Data: fmt.Appendf(nil, `{"n":%d,"sum":%d,"pad":%q}`, i, i, pad), Header: nats.Header{"Jetfold-Seq": {"1"}}}
		if err := w.Publish(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	var writing, restoring time.Duration
	b.ResetTimer()
	for range b.N {
		var buf bytes.Buffer
		began := time.Now()
		if _, err := backup.Write(ctx, js, backup.Options{Pipelines: ps}, &buf); err != nil {
			b.Fatal(err)
		}
		writing += time.Since(began)
		b.StopTimer()
		dst := natstest.Server(b)
		_, djs := natstest.Connect(b, dst)
		b.StartTimer()
		began = time.Now()
		if _, err := backup.Restore(ctx, djs, bytes.NewReader(buf.Bytes()), backup.RestoreOptions{NoStreamCheck: true}); err != nil {
			b.Fatal(err)
		}
		restoring += time.Since(began)
	}
	b.ReportMetric(float64(keys*b.N)/writing.Seconds(), "backup-keys/s")
	b.ReportMetric(float64(keys*b.N)/restoring.Seconds(), "restore-keys/s")
}
