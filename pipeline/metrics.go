package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Values of the `how` label of jetfold_state_reads_total.
const (
	ReadOnDemand = "on_demand"
	ReadPrefetch = "prefetch"
)

// Event results, the values of the `result` label of jetfold_events_total.
const (
	ResultOK         = "ok"
	ResultFiltered   = "filtered"
	ResultDeadLetter = "dead_letter"
	ResultSkipped    = "skipped"
	ResultOutdated   = "outdated"
	ResultDuplicate  = "duplicate"
)

// Metrics are the Prometheus metrics of every pipeline of a process. Labels carry pipeline
// names and results, never keys or subjects.
type Metrics struct {
	Events         *prometheus.CounterVec
	Emitted        *prometheus.CounterVec
	BatchDuration  *prometheus.HistogramVec
	CommitDuration *prometheus.HistogramVec
	Checkpoint     *prometheus.GaugeVec
	Pending        *prometheus.GaugeVec
	StateKeys      *prometheus.GaugeVec
	Restarts       *prometheus.CounterVec
	Fenced         *prometheus.CounterVec
	Latency        *prometheus.HistogramVec
	Oversize       *prometheus.CounterVec
	StateReads     *prometheus.CounterVec
	Refused        *prometheus.CounterVec
	Failing        *prometheus.GaugeVec
	Paused         *prometheus.GaugeVec
	// NATSConnected is 1 while the process is connected to NATS; the process sets it (see
	// cmd/processor run).
	NATSConnected prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	byPipeline := []string{"pipeline"}
	m := &Metrics{
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetfold_events_total", Help: "Source events processed, by result.",
		}, []string{"pipeline", "result"}),
		Emitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetfold_emitted_total", Help: "Derived events published (committed).",
		}, byPipeline),
		BatchDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "jetfold_batch_duration_seconds", Help: "Time to process one batch, commit excluded.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, byPipeline),
		CommitDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "jetfold_commit_duration_seconds", Help: "Time to commit one batch.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, byPipeline),
		Checkpoint: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jetfold_checkpoint_sequence", Help: "Last committed source stream sequence.",
		}, byPipeline),
		Pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jetfold_consumer_pending", Help: "Source events not yet delivered (lag).",
		}, byPipeline),
		StateKeys: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jetfold_state_keys", Help: "Keys held in the state cache.",
		}, byPipeline),
		Restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetfold_pipeline_restarts_total", Help: "In-process restarts after an error (lost connection, failed commit).",
		}, byPipeline),
		Fenced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetfold_fenced_total", Help: "Commits refused because another instance wrote first.",
		}, byPipeline),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "jetfold_end_to_end_latency_seconds", Help: "From an event's stream time to the commit that makes its effects visible.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, byPipeline),
		Oversize: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetfold_state_oversize_total", Help: "Events dead-lettered because the state they produced is over the KV value limit.",
		}, byPipeline),
		StateReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetfold_state_reads_total", Help: "Keys read from KV because the cache lacked them: one at a time when an event needs it (on_demand) or ahead of their events, many at once (prefetch).",
		}, []string{"pipeline", "how"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetfold_emits_refused_total", Help: "Derived events JetStream refused (a subject no stream captures, a stream at its limits, ...), dead-lettered in their place.",
		}, byPipeline),
		Failing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jetfold_pipeline_failing", Help: "1 while the pipeline cannot make progress (the same error repeats at every restart), else 0.",
		}, byPipeline),
		Paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jetfold_pipeline_paused", Help: "1 while the pipeline is paused (processor pause), else 0.",
		}, byPipeline),
		NATSConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jetfold_nats_connected", Help: "1 while the process is connected to NATS, else 0.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Events, m.Emitted, m.BatchDuration, m.CommitDuration, m.Checkpoint,
			m.Pending, m.StateKeys, m.Restarts, m.Fenced, m.Latency, m.Oversize, m.StateReads, m.Refused, m.Failing,
			m.Paused, m.NATSConnected)
	}
	return m
}
