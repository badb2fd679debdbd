package natstest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ClusterOptions configures [NewCluster].
type ClusterOptions struct {
	// Size is the number of servers (default 3).
	Size int
	// Name is the cluster's name (default "jetfold-test").
	Name string
	// Ready bounds the waits for the cluster to have a JetStream meta leader that sees every
	// server (default 30s).
	Ready time.Duration
}

// Cluster is a JetStream cluster of real nats-servers on loopback, each with a store of its
// own, for tests that need replicated streams and KV buckets. A node can be stopped and
// restarted on its store, its client port and its cluster port ([Cluster.Stop],
// [Cluster.Restart]).
type Cluster struct {
	t     testing.TB
	ready time.Duration

	mu      sync.Mutex
	opts    []server.Options // each node's options, with the ports it was given
	servers []*server.Server // nil while a node is stopped
}

// NewCluster starts a JetStream cluster on loopback and waits until it has a meta leader that
// sees every server; every node is shut down when the test ends.
func NewCluster(t testing.TB, o ClusterOptions) *Cluster {
	t.Helper()
	if o.Size == 0 {
		o.Size = 3
	}
	if o.Name == "" {
		o.Name = "jetfold-test"
	}
	if o.Ready == 0 {
		o.Ready = 30 * time.Second
	}
	c := &Cluster{t: t, ready: o.Ready,
		opts: make([]server.Options, o.Size), servers: make([]*server.Server, o.Size)}
	t.Cleanup(c.shutdown)
	// JetStream in a cluster needs its routes at start: the cluster ports are picked first
	// (a free port each, closed again); the client ports are the servers' own picks.
	routes := make([]*url.URL, o.Size)
	ports := make([]int, o.Size)
	for i := range o.Size {
		ports[i] = freePort(t)
		routes[i] = &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])}
	}
	for i := range o.Size {
		c.opts[i] = server.Options{
			ServerName: fmt.Sprintf("n%d", i),
			Host:       "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(),
			NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: o.Name, Host: "127.0.0.1", Port: ports[i]},
			Routes:  routes,
		}
	}
	for i := range o.Size {
		s := c.start(i)
		c.mu.Lock()
		c.opts[i].Port = s.Addr().(*net.TCPAddr).Port // the same client port after a restart
		c.mu.Unlock()
	}
	c.WaitReady()
	return c
}

// start starts node i from its options (a copy: the server keeps and changes what it is given).
func (c *Cluster) start(i int) *server.Server {
	c.t.Helper()
	c.mu.Lock()
	opts := c.opts[i]
	c.mu.Unlock()
	opts.Routes = append([]*url.URL(nil), opts.Routes...)
	s, err := server.NewServer(&opts)
	if err != nil {
		c.t.Fatalf("cluster node %d: %v", i, err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		c.t.Fatalf("cluster node %d not ready for connections", i)
	}
	c.mu.Lock()
	c.servers[i] = s
	c.mu.Unlock()
	return s
}

// Size returns the number of nodes, running or stopped.
func (c *Cluster) Size() int { return len(c.opts) }

// Server returns node i, nil while it is stopped.
func (c *Cluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers[i]
}

// URLs returns the client URLs of every node, running or stopped, comma-separated (what
// nats.Connect and the processor's nats.url take).
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.opts))
	for i, o := range c.opts {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", o.Port)
	}
	return strings.Join(urls, ",")
}

// Leader returns the node that is the JetStream meta leader, -1 when none is.
func (c *Cluster) Leader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, s := range c.servers {
		if s != nil && s.Running() && s.JetStreamIsLeader() {
			return i
		}
	}
	return -1
}

// WaitReady waits until a running node is the JetStream meta leader and sees every running
// node as an online peer, and every running node has caught up with the meta leader; it fails
// the test after the cluster's Ready.
func (c *Cluster) WaitReady() {
	c.t.Helper()
	Eventually(c.t, c.ready, "a JetStream meta leader that sees every running node", func() bool {
		l := c.Leader()
		if l < 0 {
			return false
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		running := 0
		for _, s := range c.servers {
			if s == nil {
				continue
			}
			running++
			if !s.JetStreamIsCurrent() {
				return false
			}
		}
		return len(c.servers[l].JetStreamClusterPeers()) == running
	})
}

// WaitSynced waits until every running node's replica of every stream (KV buckets included)
// holds what the others hold (the same last sequence and message count), and fails the test
// after the cluster's Ready. Reads served by a replica (direct gets, which KV buckets allow)
// see only what it holds: a node just restarted may still be catching up after
// [Cluster.Restart] returns.
func (c *Cluster) WaitSynced() {
	c.t.Helper()
	var lag string
	defer func() {
		if c.t.Failed() && lag != "" {
			c.t.Logf("not in sync: %s", lag)
		}
	}()
	Eventually(c.t, c.ready, "every replica of every stream in sync", func() bool {
		lag = c.unsynced()
		return lag == ""
	})
}

// unsynced names a stream whose replicas on the running nodes differ ("" when none does).
func (c *Cluster) unsynced() string {
	type state struct{ last, msgs uint64 }
	seen := map[string]state{}
	c.mu.Lock()
	servers := append([]*server.Server(nil), c.servers...)
	c.mu.Unlock()
	for _, s := range servers {
		if s == nil {
			continue
		}
		jsz, err := s.Jsz(&server.JSzOptions{Accounts: true, Streams: true})
		if err != nil {
			return s.Name() + ": " + err.Error()
		}
		for _, a := range jsz.AccountDetails {
			for _, sd := range a.Streams {
				key := a.Name + "/" + sd.Name
				st := state{sd.State.LastSeq, sd.State.Msgs}
				if prev, ok := seen[key]; ok && prev != st {
					return fmt.Sprintf("%s on %s: last %d msgs %d, elsewhere last %d msgs %d",
						key, s.Name(), st.last, st.msgs, prev.last, prev.msgs)
				}
				seen[key] = st
			}
		}
	}
	return ""
}

// Stop shuts node i down and waits until it is down.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	c.mu.Lock()
	s := c.servers[i]
	c.servers[i] = nil
	c.mu.Unlock()
	if s == nil {
		c.t.Fatalf("cluster node %d is not running", i)
	}
	s.Shutdown()
	s.WaitForShutdown()
}

// Restart starts node i again, stopped by [Cluster.Stop], on its store and ports, and waits
// until the cluster is ready again (see [Cluster.WaitReady]).
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if c.Server(i) != nil {
		c.t.Fatalf("cluster node %d is running", i)
	}
	c.start(i)
	c.WaitReady()
}

// Connect connects to the cluster (every node's URL, reconnecting for ever, quickly) and
// returns the connection and a JetStream context (see [JetStream]), closed when the test ends.
func (c *Cluster) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect to the cluster: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc, JetStream(t, nc)
}

// shutdown stops every running node.
func (c *Cluster) shutdown() {
	c.mu.Lock()
	servers := append([]*server.Server(nil), c.servers...)
	clear(c.servers)
	c.mu.Unlock()
	for _, s := range servers {
		if s != nil {
			s.Shutdown()
		}
	}
	for _, s := range servers {
		if s != nil {
			s.WaitForShutdown()
		}
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
