package worker

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/cluster"
	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/consumer"
	"github.com/jetinfer/jetinfer/embeddednats/natstest"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/wire"
)

// fakeModels is a Models whose loads fail while failing is set; the
// worker's state machine is what is under test, not the model.
type fakeModels struct {
	failing  atomic.Bool
	failures atomic.Int32 // loads that failed
	acquires atomic.Int32 // loads that succeeded
	releases atomic.Int32
}

var errNoModel = eserror.New(http.StatusNotFound, eserror.TypeResourceNotFound, "Could not deploy model [my-model] as the model cannot be found.")

func (f *fakeModels) Acquire(_ context.Context, modelID string, threads int) (Model, func(), error) {
	if f.failing.Load() {
		f.failures.Add(1)
		return nil, nil, errNoModel
	}
	f.acquires.Add(1)
	var once sync.Once
	return fakeModel{}, func() { once.Do(func() { f.releases.Add(1) }) }, nil
}

func (f *fakeModels) Cached() []string                { return nil }
func (f *fakeModels) Close(ctx context.Context) error { return nil }

type fakeModel struct{}

func (fakeModel) Task() config.TaskType { return config.TextEmbedding }

func (fakeModel) Runner(ep config.Endpoint, _ int64) consumer.Runner {
	return echoRunner{ep.InferenceID}
}

// echoRunner answers with the endpoint's id and the inputs.
type echoRunner struct{ id string }

func (r echoRunner) Infer(_ context.Context, req inferapi.Request, _ inferapi.Options) (inferapi.Result, error) {
	body, err := json.Marshal(map[string]any{"endpoint": r.id, "input": req.Input})
	return inferapi.Result{Body: body}, err
}

func (r echoRunner) Ingest(ctx context.Context, docs []inferapi.Request) ([][]byte, error) {
	out := make([][]byte, len(docs))
	for i, d := range docs {
		res, _ := r.Infer(ctx, d, inferapi.Options{})
		out[i] = res.Body
	}
	return out, nil
}

type bench struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	store  *config.Store
	states *cluster.States
	plans  *cluster.Plans
}

func startBench(t *testing.T) bench {
	t.Helper()
	nc, js := natstest.Start(t)
	ctx := context.Background()
	b := bench{nc: nc, js: js}
	var err error
	if b.store, err = config.OpenStore(ctx, js, config.StoreConfig{}); err != nil {
		t.Fatal(err)
	}
	if b.states, err = cluster.OpenStates(ctx, js, config.StoreConfig{}); err != nil {
		t.Fatal(err)
	}
	if b.plans, err = cluster.OpenPlans(ctx, js, config.StoreConfig{}); err != nil {
		t.Fatal(err)
	}
	return b
}

// waitState polls the deployment state of id on node n1 until ok accepts
// it (a nil state: none is stored).
func waitState(t *testing.T, b bench, id, what string, ok func(*cluster.State) bool) *cluster.State {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		states, err := b.states.Of(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		var st *cluster.State
		for i := range states {
			if states[i].Node == "n1" {
				st = &states[i]
			}
		}
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: state %+v after 30s", what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEndpointLifecycle drives one endpoint through deploy → fail → retry
// → started → undeploy → delete on a worker whose model loads are
// injected: the first load fails, the retry succeeds.
func TestEndpointLifecycle(t *testing.T) {
	b := startBench(t)
	ctx := context.Background()
	deployments, err := config.OpenDeploymentStore(ctx, b.js, config.StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	registry, err := cluster.OpenRegistry(ctx, b.js, config.StoreConfig{}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	models := &fakeModels{}
	models.failing.Store(true)
	w, err := Start(ctx, Config{
		NC: b.nc, JS: b.js, Endpoints: b.store, Deployments: deployments, States: b.states, Registry: registry, Plans: b.plans,
		Models: models, NodeName: "n1", Processors: 2, RetryInterval: 200 * time.Millisecond, Heartbeat: 100 * time.Millisecond,
		Log: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = w.Close(context.Background())
		}
	}()

	const id = "lifecycle"
	ep, err := config.ParsePut(id, config.TextEmbedding, []byte(`{"service":"elasticsearch","service_settings":{"model_id":"my-model","num_allocations":1,"num_threads":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	rev, err := b.store.Create(ctx, ep)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.plans.Put(ctx, cluster.Plan{InferenceID: id, Revision: rev, Target: 1, Nodes: map[string]int{"n1": 1}}); err != nil {
		t.Fatal(err)
	}

	// Deploy → fail: the load's error is the state, and requests get it.
	st := waitState(t, b, id, "failed", func(s *cluster.State) bool { return s != nil && s.State == cluster.StateFailed })
	if st.ErrorStatus != http.StatusNotFound || st.Allocations != 0 || st.TargetAllocations != 1 {
		t.Fatalf("failed state %+v; want status 404, 0 of 1 allocations", st)
	}
	var reply *wire.ReplyError
	if _, err := wire.Request(ctx, b.nc, id, []byte(`{"input":"x"}`), inferapi.Options{}); !errors.As(err, &reply) || reply.Status != http.StatusNotFound {
		t.Fatalf("request to the failed deployment = %v; want its 404", err)
	}

	// → retry: the model appears, the next attempt starts it.
	models.failing.Store(false)
	st = waitState(t, b, id, "started", func(s *cluster.State) bool { return s != nil && s.State == cluster.StateStarted })
	if st.Allocations != 1 || st.Revision != rev {
		t.Fatalf("started state %+v; want 1 allocation at revision %d", st, rev)
	}
	if got := models.acquires.Load(); got != 1 || models.failures.Load() == 0 {
		t.Fatalf("%d loads after %d failed ones; want 1 after at least 1", got, models.failures.Load())
	}
	out, err := wire.Request(ctx, b.nc, id, []byte(`{"input":"x"}`), inferapi.Options{})
	if err != nil || string(out.Body) != `{"endpoint":"lifecycle","input":["x"]}` {
		t.Fatalf("request = %s, %v; want the runner's answer", out.Body, err)
	}

	// → undeploy: the plan takes this node's allocation away; the state
	// goes and the model is released.
	if _, err := b.plans.Put(ctx, cluster.Plan{InferenceID: id, Revision: rev, Target: 0, Nodes: map[string]int{}}); err != nil {
		t.Fatal(err)
	}
	waitState(t, b, id, "undeployed", func(s *cluster.State) bool { return s == nil })
	if got := models.releases.Load(); got != 1 {
		t.Fatalf("%d releases after undeploy; want 1", got)
	}

	// → delete: the endpoint's streams go with it.
	if err := b.store.Delete(ctx, id, rev); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := b.js.Stream(ctx, wire.RequestsStream(config.Token(id)))
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("request stream of the deleted endpoint still there after 30s (%v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	closed = true
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := models.acquires.Load(); got != 1 {
		t.Fatalf("%d loads in all; want 1", got)
	}
}
