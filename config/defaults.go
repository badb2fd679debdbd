package config

import (
	"strconv"
	"time"
)

// Defaults, documented on the fields they apply to.
const (
	DefaultStoreDir       = "./data/nats"          // [Embedded.StoreDir]
	DefaultEmbeddedListen = "127.0.0.1:4222"       // [Embedded.Listen]
	DefaultHTTPListen     = "127.0.0.1:8080"       // [HTTP.Listen]
	DefaultStorage        = "file"                 // [Stream.Storage]
	DefaultReplicas       = 1                      // [Stream.Replicas]
	DefaultDecode         = "json"                 // [Pipeline.Decode]
	DefaultType           = "event.type"           // [Pipeline.Type]
	DefaultOnError        = "dead_letter"          // [Pipeline.OnError]
	DefaultStart          = "all"                  // [Source.Start]
	DefaultStop           = "follow"               // [Source.Stop]
	DefaultBatchSize      = 50000                  // [Batch.Size]
	DefaultBatchMaxWait   = 200 * time.Millisecond // [Batch.MaxWait]
	DefaultCatchUpFactor  = 10                     // [CatchUp]: times the batch's bounds
	DefaultCacheMaxKeys   = 100000                 // [Cache.MaxKeys]
	DefaultLeaseTTL       = 5 * time.Second        // [Processor.LeaseTTL]
)

// MaxCatchUpSize bounds [CatchUp.Size].
const MaxCatchUpSize = 10_000_000

// SetDefaults applies the defaults documented on each field to a configuration built in code.
// Every field at its zero value gets its default; unlike with [Load], which knows which fields
// the file set, an explicit 0 batch size or "" HTTP listen address cannot be expressed.
func (c *Config) SetDefaults() {
	c.setDefaults(func(string) bool { return false })
}

// setDefaults applies the defaults. present reports whether the file or the environment set
// the field at a path; where the zero value has a meaning of its own (an explicit "" HTTP
// listen address, an explicit 0 batch size that validation rejects) only absent fields get
// their default.
//
// The defaults are not a koanf layer under the file's: most apply to each item of a list, which
// koanf merges whole; several also replace an explicit ""; and [Config.SetDefaults] needs them
// on the structs for a configuration built in code.
func (c *Config) setDefaults(present func(path string) bool) {
	e := &c.NATS.Embedded
	setString(&e.StoreDir, DefaultStoreDir)
	setString(&e.Listen, DefaultEmbeddedListen)
	if c.Processor.LeaseTTL == 0 && !present("processor.lease_ttl") {
		c.Processor.LeaseTTL = DefaultLeaseTTL
	}
	if c.HTTP.Listen == "" && !present("http.listen") {
		c.HTTP.Listen, c.HTTP.ListenDefaulted = DefaultHTTPListen, true
	}
	for i := range c.Streams {
		s := &c.Streams[i]
		setString(&s.Storage, DefaultStorage)
		if s.Replicas == 0 {
			s.Replicas = DefaultReplicas
		}
	}
	for i := range c.Pipelines {
		p := &c.Pipelines[i]
		base := "pipelines." + strconv.Itoa(i)
		setString(&p.Decode, DefaultDecode)
		setString(&p.Type, DefaultType)
		setString(&p.OnError, DefaultOnError)
		setString(&p.Source.Start, DefaultStart)
		setString(&p.Source.Stop, DefaultStop)
		if p.Batch.Size == 0 && !present(base+".batch.size") {
			p.Batch.Size = DefaultBatchSize
		}
		if p.Batch.MaxWait == 0 && !present(base+".batch.max_wait") {
			p.Batch.MaxWait = DefaultBatchMaxWait
		}
		if p.Batch.CatchUp.Size == 0 && !present(base+".batch.catch_up.size") {
			p.Batch.CatchUp.Size = min(DefaultCatchUpFactor*p.Batch.Size, MaxCatchUpSize)
		}
		if p.Batch.CatchUp.MaxWait == 0 && !present(base+".batch.catch_up.max_wait") {
			p.Batch.CatchUp.MaxWait = DefaultCatchUpFactor * p.Batch.MaxWait
		}
		if p.Cache.MaxKeys == 0 && !present(base+".cache.max_keys") {
			p.Cache.MaxKeys = DefaultCacheMaxKeys
		}
		if p.Partitions == 0 {
			p.Partitions = 1
		}
	}
}

// setString sets *s to def when it is "".
func setString(s *string, def string) {
	if *s == "" {
		*s = def
	}
}
