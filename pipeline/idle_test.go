package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/streams"
)

const idleYAML = `
nats: {url: %q}
http: {listen: none}
streams:
  - {name: EV, subjects: ["ev.>"]}
  - {name: OUT, subjects: ["out.>"]}
pipelines:
  - name: quiet
    source: {stream: EV, stop: follow}
    key: event.k
    time: event.ts
    idle: %s
    operators:
      - timeout:
          name: t
          start: [start]
          after: 2s
          emit: {subject: '"out." + key', data: {k: key, deadline: timer.deadline}}
`

// TestIdleWatermark: with idle, a timer fires on the wall clock when no event comes after its
// start; without, it waits for an event (none comes, so it stays pending).
func TestIdleWatermark(t *testing.T) {
	for _, idle := range []string{"200ms", "0s"} {
		t.Run("idle "+idle, func(t *testing.T) {
			e := newEnv(t)
			ps := e.pipelines("idle.yaml", fmt.Sprintf(idleYAML, e.srv.ClientURL(), idle))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- pipeline.RunAll(ctx, ps, pipeline.Options{JS: e.js, OutputStreams: []string{"OUT"}}) }()
			started := time.Now().UTC()
			e.pub("ev.x", fmt.Sprintf(`{"type":"start","k":"a","ts":%q}`, started.Format(time.RFC3339Nano)))
			out, err := e.js.Stream(ctx, "OUT")
			if err != nil {
				t.Fatal(err)
			}
			fired := func() bool {
				info, err := out.Info(ctx)
				return err == nil && info.State.Msgs > 0
			}
			if idle == "0s" {
				// The timer is stored, the watermark stays at its start: nothing fires.
				natstest.Eventually(t, 30*time.Second, "the timer stored", func() bool {
					_, err := e.js.KeyValue(ctx, "quiet_timers")
					return err == nil
				})
				deadline := time.Now().Add(3 * time.Second) // a second past the timer's deadline
				for time.Now().Before(deadline) {
					if fired() {
						t.Fatal("a timer fired without idle, with no event after its start")
					}
					time.Sleep(100 * time.Millisecond)
				}
			} else {
				natstest.Eventually(t, 30*time.Second, "the timer to fire on the wall clock", fired)
				msgs := natstest.ReadAll(t, e.js, "OUT", "")
				var b struct{ K, Deadline string }
				if err := json.Unmarshal(msgs[0].Data(), &b); err != nil {
					t.Fatal(err)
				}
				if len(msgs) != 1 || b.K != "a" || b.Deadline != started.Add(2*time.Second).Format(time.RFC3339Nano) {
					t.Errorf("derived events %d, first %+v", len(msgs), b)
				}
				if since := time.Since(started); since < 2*time.Second {
					t.Errorf("fired %s after its start, before its deadline", since)
				}
				kv, err := e.js.KeyValue(ctx, "quiet_timers")
				if err != nil {
					t.Fatal(err)
				}
				natstest.Eventually(t, 30*time.Second, "the fired timer ended in KV", func() bool {
					_, err := kv.Get(ctx, streams.EncodeKey("t.a"))
					return err != nil
				})
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}
