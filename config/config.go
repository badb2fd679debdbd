package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jetfold/jetfold/config/diag"
)

// Config is the whole jetfold configuration file. Build one with [Load], which decodes, applies
// the defaults documented on each field and calls [Config.Validate].
type Config struct {
	// NATS says how to reach NATS.
	NATS NATS `koanf:"nats"`
	// HTTP configures the HTTP listener.
	HTTP HTTP `koanf:"http"`
	// Processor configures this process among those running the same pipelines.
	Processor Processor `koanf:"processor"`
	// Streams are the streams created at start when missing.
	Streams []Stream `koanf:"streams"`
	// Pipelines are the pipelines to run.
	Pipelines []Pipeline `koanf:"pipelines"`

	// File is the path the configuration was loaded from ("" when built in code). No file
	// sets it: decoding leaves the fields without a koanf tag alone.
	File string
	// IgnoredEnv lists, sorted, the names of the JETFOLD_ environment variables that [Load]
	// found but that name no field (each is also one of Load's errors, as an unknown field in
	// the file is). Values are left out: they may be secrets.
	IgnoredEnv []string

	// pos maps a field path (see [Config.Pos]) to the place of its value in File.
	pos map[string]diag.Pos
	// keyPos maps a field path to the place of its key in File.
	keyPos map[string]diag.Pos
	// env maps a field path to the environment variable that set it.
	env map[string]string
	// loaded is true when the configuration came from a file, so positions are meaningful.
	loaded bool
}

// NATS says how to reach NATS. An empty URL starts an embedded server.
type NATS struct {
	// URL is the NATS server URL; "" starts an embedded nats-server (see [Embedded]).
	URL string `koanf:"url"`
	// Embedded configures the embedded server used when URL is "".
	Embedded Embedded `koanf:"embedded"`
	// CredsFile is a NATS credentials (.creds) file.
	CredsFile string `koanf:"creds_file"`
	// NKeyFile is an NKey seed file.
	NKeyFile string `koanf:"nkey_file"`
	// User is the user name for user/password authentication.
	User string `koanf:"user"`
	// Password is the password for user/password authentication.
	Password string `koanf:"password"`
	// Token is the authentication token.
	Token string `koanf:"token"`
	// TLS holds the client TLS files.
	TLS TLS `koanf:"tls"`
	// KVReplicas is the number of replicas of the KV buckets jetfold creates (projections,
	// checkpoints, leases, health, control) and of its dead-letter stream JETFOLD_DLQ, on a
	// server at URL (default 1; 3 on a 3-node cluster). Those that exist keep theirs.
	KVReplicas int `koanf:"kv_replicas"`
}

// Embedded configures the in-process nats-server used when NATS.URL is empty.
type Embedded struct {
	// StoreDir is the JetStream store directory (default ./data/nats, also when set to "").
	// A relative path resolves against the working directory.
	StoreDir string `koanf:"store_dir"`
	// Listen is the client listen address (default 127.0.0.1:4222, also when set to "");
	// "none" listens on no port.
	Listen string `koanf:"listen"`
	// SyncInterval is the JetStream fsync interval: "always", or a positive duration; ""
	// (the default) keeps the nats-server default of 2m.
	SyncInterval string `koanf:"sync_interval"`
}

// TLS holds client TLS files. Relative paths resolve against the working directory.
type TLS struct {
	// CAFile is the PEM file of the certificate authorities to trust.
	CAFile string `koanf:"ca_file"`
	// CertFile is the PEM client certificate.
	CertFile string `koanf:"cert_file"`
	// KeyFile is the PEM key of CertFile.
	KeyFile string `koanf:"key_file"`
}

// HTTP configures the metrics, health and read API listener.
type HTTP struct {
	// Listen is the address (default 127.0.0.1:8080 when the field is absent); "" or "none"
	// set explicitly disables the listener.
	Listen string `koanf:"listen"`
	// ListenDefaulted is set when Listen is the default, not set in the file or the
	// environment: a processor whose default address is in use (another one on this host)
	// listens on a free port instead, where a set address in use fails the start.
	ListenDefaulted bool `koanf:"-"`
	// TokenFile is the path of a file holding the bearer token that the API's write routes
	// (POST /v1/pipelines/{name}/rebuild, .../pause, .../resume) require; surrounding white space is trimmed. ""
	// (the default) leaves those routes out. A relative path resolves against the working
	// directory. See [HTTP.Token].
	TokenFile string `koanf:"token_file"`
}

// ErrEmptyToken is returned by [HTTP.Token] for a token file that holds only white space.
var ErrEmptyToken = errors.New("the token file is empty")

// Token reads the bearer token from TokenFile: "" and a nil error when TokenFile is "". A
// file that cannot be read, or holds only white space ([ErrEmptyToken]), is an error naming
// the file, never its content.
func (h HTTP) Token() (string, error) {
	if h.TokenFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(h.TokenFile)
	if err != nil {
		return "", fmt.Errorf("http.token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("http.token_file %s: %w", h.TokenFile, ErrEmptyToken)
	}
	return tok, nil
}

// Processor configures this process among the processes that run the same pipelines.
type Processor struct {
	// Instance names this process in leases and in the values it writes; it must differ
	// between processes running at once (default: host name and process id).
	Instance string `koanf:"instance"`
	// LeaseTTL is how long a pipeline's lease outlives its holder: the time a standby waits
	// before taking over from a process that died (default 5s, at least 1s).
	LeaseTTL time.Duration `koanf:"lease_ttl"`
}

// Stream declares a JetStream stream that is created when missing.
type Stream struct {
	// Name is the stream name: letters, digits, "_" and "-"; unique among streams.
	Name string `koanf:"name"`
	// Subjects are the subjects the stream captures; at least one.
	Subjects []string `koanf:"subjects"`
	// Storage is file or memory (default file, also when set to "").
	Storage string `koanf:"storage"`
	// Replicas is the number of replicas, 1 to 5 (default 1, also when set to 0).
	Replicas int `koanf:"replicas"`
	// DuplicateWindow is the window for Nats-Msg-Id deduplication (0: the server default).
	DuplicateWindow time.Duration `koanf:"duplicate_window"`
	// MaxAge bounds the age of stored messages (0: unlimited).
	MaxAge time.Duration `koanf:"max_age"`
	// SubjectTransform optionally rewrites the subjects of the messages the stream stores
	// (nats-server's stream subject transform): with Dest starting with
	// `{{partition(N,i)}}.`, each message is stored under its partition, which a pipeline
	// with `partitions: N` and `source.partitioned_by_subject` reads one partition at a time.
	SubjectTransform Transform `koanf:"subject_transform"`
}

// Transform is a stream subject transform: a message whose subject matches Src is stored
// under Dest (with nats-server's mapping functions, such as `{{wildcard(1)}}` and
// `{{partition(4,1)}}`). Both empty: none.
type Transform struct {
	// Src is the subject filter the transform applies to.
	Src string `koanf:"src"`
	// Dest is the subject the matching messages are stored under.
	Dest string `koanf:"dest"`
}

// Pipeline is one durable consumer of one stream and its chain of operators.
type Pipeline struct {
	// Name names the pipeline (and its durable consumer): letters, digits, "_" and "-";
	// unique among pipelines.
	Name string `koanf:"name"`
	// Source says which events the pipeline reads.
	Source Source `koanf:"source"`
	// Decode is how message bodies are decoded: json, cloudevents or raw (default json, also
	// when set to "").
	Decode string `koanf:"decode"`
	// Type is the expression giving the event's type (default event.type, also when set to "").
	Type string `koanf:"type"`
	// Key is the expression giving the entity key; required.
	Key string `koanf:"key"`
	// Time is the optional expression giving the event time ("": the message's time).
	Time string `koanf:"time"`
	// Idle, when set, lets the watermark follow the wall clock while the pipeline follows
	// its stream and no event has arrived for that long, so that windows close and timers
	// fire in a quiet stream (0: off; the watermark is then event time only).
	Idle time.Duration `koanf:"idle"`
	// OnError is what a failing event does: dead_letter, skip or stop (default dead_letter,
	// also when set to "").
	OnError string `koanf:"on_error"`
	// Batch bounds one processing batch.
	Batch Batch `koanf:"batch"`
	// Cache bounds the per-key state cache.
	Cache Cache `koanf:"cache"`
	// Operators is the chain of operators, in order.
	Operators []Operator `koanf:"operators"`
	// Partitions splits the pipeline's keys into this many partitions (1 to MaxPartitions;
	// default 1, also when set to 0): each has its own checkpoint, lease and watermark, and
	// runs in whichever process holds its lease. An event belongs to the partition of its key
	// (FNV-1a of the key, modulo Partitions: nats-server's partition() function); one whose
	// key cannot be computed to the partition of its sequence. The `key` operator (re-keying)
	// is refused with more than one partition: a key would then be written by two partitions.
	Partitions int `koanf:"partitions"`
}

// MaxPartitions bounds Pipeline.Partitions.
const MaxPartitions = 256

// Source says which events a pipeline reads and where it starts and stops.
type Source struct {
	// Stream is the stream to read; required, and it must be declared under streams.
	Stream string `koanf:"stream"`
	// Subjects optionally filters the stream; empty reads the whole stream.
	Subjects []string `koanf:"subjects"`
	// Start is where a new consumer starts: all, new, seq:<n> or time:<RFC3339> (default all,
	// also when set to ""). See [Source.StartPosition].
	Start string `koanf:"start"`
	// Stop is follow (keep reading) or end (stop at the end of the stream) (default follow,
	// also when set to "").
	Stop string `koanf:"stop"`
	// PartitionedBySubject declares that the stream stores each event under its partition
	// (its subject transform's destination starts with `{{partition(N,i)}}.`, N the
	// pipeline's partitions, hashing the subject token that holds the pipeline's key), so
	// that each partition reads only its own subjects (`<i>.>`) instead of the whole stream.
	// Checked at start against the stream; an event whose key belongs to another partition
	// than its subject is a dead letter.
	PartitionedBySubject bool `koanf:"partitioned_by_subject"`
}

// Batch bounds one batch, the unit of commit. Events are processed as they arrive, while the
// previous batch commits. While the pipeline follows its source (fewer than Size events wait
// in the stream), a batch is committed when it holds Size events, when it is MaxWait old, or
// when it is 5ms old and no more events are waiting, whichever comes first: a light load
// commits within milliseconds. While it catches up (Size events or more wait: a replay, a
// backlog), the CatchUp bounds apply instead, so that a busy key is written once for many
// events; a catch-up batch that reaches the tail goes on to it (at most Size events and MaxWait
// more), so that the tail is committed with it rather than on its own. In both, a batch also ends when its dirty keys reach the cache's MaxKeys or its
// derived events and dead letters reach Size: memory stays bounded.
type Batch struct {
	// Size is the most events per batch while following, 1 to 100000 (default 50000 when
	// absent).
	Size int `koanf:"size"`
	// MaxWait is the oldest a batch gets while following; positive (default 200ms when
	// absent). It bounds the latency of a steady load.
	MaxWait time.Duration `koanf:"max_wait"`
	// CatchUp bounds a batch while the pipeline catches up.
	CatchUp CatchUp `koanf:"catch_up"`
}

// CatchUp bounds a batch while Size events or more wait in the source stream. A crash costs
// at most one such batch of reprocessing.
type CatchUp struct {
	// Size is the most events per batch, from the batch's Size to 10000000 (default ten
	// times the batch's Size, so 500000 when both are absent).
	Size int `koanf:"size"`
	// MaxWait is the oldest a batch gets, at least the batch's MaxWait (default ten times
	// the batch's MaxWait, so 2s when both are absent).
	MaxWait time.Duration `koanf:"max_wait"`
}

// Cache bounds the in-memory per-key state cache.
type Cache struct {
	// MaxKeys is the most keys kept in memory; at least 1 (default 100000 when absent).
	MaxKeys int `koanf:"max_keys"`
}

// Operator is one step of a pipeline: a map with exactly one key, the operator's name, whose
// value is the operator's own configuration (an expression string or a map), decoded by the
// operator's spec in the operators package. [Load] keeps it raw: no unknown-field checks apply
// inside it.
type Operator map[string]any
