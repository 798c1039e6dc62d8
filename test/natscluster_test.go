package test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/cluster"
	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/embeddednats"
	"github.com/jetinfer/jetinfer/node"
)

// TestThreeServerCluster: workers connected to different servers of a
// 3-server JetStream cluster (in-process servers routed over loopback)
// share the endpoints, and the deployment survives the loss of a server.
func TestThreeServerCluster(t *testing.T) {
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel)
	var clientAddrs, routes []string
	var clusterAddrs []string
	for range 3 {
		clientAddrs = append(clientAddrs, freeAddr(t))
		c := freeAddr(t)
		clusterAddrs = append(clusterAddrs, c)
		routes = append(routes, "nats-route://"+c)
	}
	servers := make([]*embeddednats.Server, 3)
	for i := range servers {
		srv, err := embeddednats.Start(embeddednats.Config{
			StoreDir: t.TempDir(), Listen: clientAddrs[i], ServerName: fmt.Sprintf("s%d", i+1),
			ClusterName: "jetinfer-test", ClusterListen: clusterAddrs[i], Routes: routes,
		}, log)
		if err != nil {
			t.Fatal(err)
		}
		servers[i] = srv
		t.Cleanup(srv.Shutdown)
	}
	urls := make([]string, 3)
	for i, s := range servers {
		urls[i] = s.ClientURL()
	}
	waitJetStream(t, urls[0])

	onServer := func(i int, name string, workerOnly bool) *testNode {
		return startNodeWith(t, func(c *node.Config) {
			c.NATSURL = urls[i] // the others are discovered from the cluster
			c.KVReplicas = 3
			c.NodeName = name
			c.Processors = 2
			c.Heartbeat = testHeartbeat
			c.AckWait = 2 * time.Second
			c.WorkerOnly = workerOnly
		}, testRuntime)
	}
	a := onServer(0, "a", false) // HTTP API and a worker, on s1
	onServer(1, "b", true)       // a worker on s2
	onServer(2, "c", true)       // a worker on s3
	waitRegistered(t, connectJS(t, urls[0]), 3, 3)

	body := strings.Replace(e5Body, `"num_allocations":2`, `"num_allocations":3`, 1)
	a.do(t, "PUT", "/_inference/text_embedding/clustered?timeout=2m", body).mustStatus(t, 200)
	js := connectJS(t, urls[2])
	planOf(t, js, 3, "clustered", nodesAre(map[string]int{"a": 1, "b": 1, "c": 1}))
	running(t, js, 3, "clustered", map[string]int{"a": 1, "b": 1, "c": 1})

	res := watchResults(t, js, "clustered")
	ids := docIDs(900)
	publishDocs(t, js, "clustered", ids[:450], func(id string) []byte { return docBody(id, docText(id)) })
	res.until(50, time.Minute)
	servers[1].Shutdown() // b's server: b reconnects to another
	publishDocs(t, js, "clustered", ids[450:], func(id string) []byte { return docBody(id, docText(id)) })
	res.until(len(ids), 2*time.Minute)
	res.quiet(3 * time.Second)
	if len(res.byID) != len(ids) || res.dups != 0 {
		t.Fatalf("%d documents with results, %d duplicates; want %d, 0", len(res.byID), res.dups, len(ids))
	}
	// Groups whose acks were lost with the server are done again, no more.
	requireWork(t, js, "clustered", int64(len(ids)), int64(len(ids))+groupSlack(3))
	// The deployment is whole again: every allocation placed, on the live
	// workers (b's may have moved while b reconnected), and b, reconnected
	// through another server, is back in the registry.
	planOf(t, js, 3, "clustered", func(p cluster.Plan) bool { return p.Target == 3 && p.Pending == 0 })
	a.do(t, "POST", "/_inference/clustered", `{"input":"still here"}`).mustStatus(t, 200)
	reg, err := cluster.OpenRegistry(context.Background(), js, config.StoreConfig{Replicas: 3}, 5*testHeartbeat)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		nodes, err := reg.Nodes(context.Background())
		if err == nil && len(nodes) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry after the server loss: %+v (%v)", nodes, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitJetStream waits for the cluster's JetStream to have a meta leader.
func waitJetStream(t *testing.T, url string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("JetStream cluster not ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
