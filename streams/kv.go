package streams

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// CheckpointBucket is the KV bucket that holds one checkpoint per pipeline.
const CheckpointBucket = "jetfold_checkpoints"

// HealthBucket is the KV bucket where each running pipeline reports its state (running,
// failing, standby, stopped), for `processor status` in another process.
const HealthBucket = "jetfold_health"

// EnsureBucket opens the KV bucket name, creating it (history 1, file storage) when missing.
func EnsureBucket(ctx context.Context, js jetstream.JetStream, name string) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, name)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("open bucket %s: %w", name, err)
	}
	kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: name, History: 1, Storage: jetstream.FileStorage, Replicas: Replicas(js)})
	if errors.Is(err, jetstream.ErrBucketExists) {
		return js.KeyValue(ctx, name)
	}
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", name, err)
	}
	return kv, nil
}

// KVStream returns the name of the stream behind bucket.
func KVStream(bucket string) string { return "KV_" + bucket }

// KVSubject returns the subject that holds key in bucket (key as returned by [EncodeKey]).
func KVSubject(bucket, key string) string { return "$KV." + bucket + "." + key }

// encodedPrefix marks a key that [EncodeKey] had to encode.
const encodedPrefix = "_b64."

// EncodeKey turns an entity key into a KV key. A key made only of the characters KV allows
// (letters, digits, `-`, `/`, `_`, `=`, and `.` between tokens) is used unchanged; any other
// key, and any key that starts with "_b64.", becomes "_b64." followed by its unpadded
// base64url encoding. [DecodeKey] reverses it.
func EncodeKey(key string) string {
	if validKey(key) && !strings.HasPrefix(key, encodedPrefix) {
		return key
	}
	return encodedPrefix + base64.RawURLEncoding.EncodeToString([]byte(key))
}

// DecodeKey reverses [EncodeKey].
func DecodeKey(k string) (string, error) {
	rest, ok := strings.CutPrefix(k, encodedPrefix)
	if !ok {
		return k, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return "", fmt.Errorf("decode key %q: %w", k, err)
	}
	return string(b), nil
}

func validKey(k string) bool {
	if k == "" || k[0] == '.' || k[len(k)-1] == '.' || strings.Contains(k, "..") {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '/' || c == '_' || c == '=' || c == '.') {
			return false
		}
	}
	return true
}

// WithReplicas returns js, through which the KV buckets and the dead-letter stream jetfold
// creates get n replicas (config nats.kv_replicas; see [Replicas]).
func WithReplicas(js jetstream.JetStream, n int) jetstream.JetStream {
	if n <= 1 {
		return js
	}
	return replicated{js, n}
}

// replicated is a JetStream context that says how many replicas what jetfold creates gets.
type replicated struct {
	jetstream.JetStream
	n int
}

// Replicas returns the replicas of the buckets and streams jetfold creates through js: those
// of [WithReplicas], or 1.
func Replicas(js jetstream.JetStream) int {
	if r, ok := js.(replicated); ok {
		return r.n
	}
	return 1
}
