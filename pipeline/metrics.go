package pipeline

import (
	"strconv"

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
// names, partitions and results, never keys or subjects. Every series of a pipeline has the
// label `partition`: the partition's index for a pipeline in several partitions (`partitions:
// N`), empty otherwise, which PromQL does not tell from no label. A process exports the
// checkpoint, pending and state-keys gauges of a pipeline or partition only while it runs it
// (they are deleted when it hands it over or loses its lease), so that the values of a
// standby are never stale ones.
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
	byPipeline := []string{"pipeline", "partition"}
	m := &Metrics{
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetfold_events_total", Help: "Source events processed, by result.",
		}, []string{"pipeline", "partition", "result"}),
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
		}, []string{"pipeline", "partition", "how"}),
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

// series are the metrics of one runner, bound to its pipeline and partition.
type series struct {
	m      *Metrics
	labels prometheus.Labels

	events, stateReads                           *prometheus.CounterVec // by result, by how
	emitted, restarts, fenced, oversize, refused prometheus.Counter
	batch, commit, latency                       prometheus.Observer
	failing, paused                              prometheus.Gauge
}

// series returns the series of pipeline's partition p (label partition: its index when the
// pipeline has several, else empty).
func (m *Metrics) series(pipeline string, p Partition) series {
	part := ""
	if p.partitioned() {
		part = strconv.Itoa(p.Index)
	}
	l := prometheus.Labels{"pipeline": pipeline, "partition": part}
	return series{
		m: m, labels: l,
		events: m.Events.MustCurryWith(l), stateReads: m.StateReads.MustCurryWith(l),
		emitted: m.Emitted.With(l), restarts: m.Restarts.With(l), fenced: m.Fenced.With(l),
		oversize: m.Oversize.With(l), refused: m.Refused.With(l),
		batch: m.BatchDuration.With(l), commit: m.CommitDuration.With(l), latency: m.Latency.With(l),
		failing: m.Failing.With(l), paused: m.Paused.With(l),
	}
}

// The gauges that describe running the pipeline (checkpoint, pending, state keys) are created
// when set, and deleted by [series.forget]: a process exports them only while it runs the
// pipeline or partition.

func (s series) setCheckpoint(seq uint64) { s.m.Checkpoint.With(s.labels).Set(float64(seq)) }
func (s series) setPending(n uint64)      { s.m.Pending.With(s.labels).Set(float64(n)) }
func (s series) setStateKeys(n int)       { s.m.StateKeys.With(s.labels).Set(float64(n)) }

// forget deletes the gauges set by setCheckpoint, setPending and setStateKeys: after its process stops running the pipeline
// or partition, the process that runs it exports them.
func (s series) forget() {
	for _, g := range []*prometheus.GaugeVec{s.m.Checkpoint, s.m.Pending, s.m.StateKeys} {
		g.Delete(s.labels)
	}
}
