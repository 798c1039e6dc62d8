// Package worker is the serving side of a jetinfer process: it watches the
// endpoint bucket and the controller's plan and, for each endpoint the plan
// gives this node allocations of, runs a consumer.Deployment on the
// endpoint's model. It owns each endpoint's state machine (endpoint.go:
// deploy, fail, retry, undeploy, stop), the process's processor budget, its
// entry in the node registry (heartbeat.go) and the deployment state it
// reports in the inference_deployments bucket. Models come from a Models it
// is given: ModelCache (models.go) fetches them from the model store, the
// model repository and a local cache and loads one copy per model and
// thread count.
package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/cluster"
	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/consumer"
)

// DefaultRetryInterval is how often a deployment whose model could not be
// loaded tries again (the model may be imported meanwhile).
const DefaultRetryInterval = 30 * time.Second

// DefaultHeartbeat paces the node's registry entry, and so how fresh the
// load the controller scales on is.
const DefaultHeartbeat = time.Second

// Config configures a Worker.
type Config struct {
	NC          *nats.Conn
	JS          jetstream.JetStream
	Endpoints   *config.Store
	Deployments *config.DeploymentStore
	States      *cluster.States
	Registry    *cluster.Registry
	Plans       *cluster.Plans
	// Models loads the deployments' models (a *ModelCache).
	Models Models
	// NodeName names this worker in the deployment state.
	NodeName string
	// Processors is this process's processor budget: the sum of
	// allocations × num_threads over its deployments never exceeds it.
	// 0 means runtime.NumCPU().
	Processors int
	// Deployment carries the consumer settings of every deployment
	// (NC, JS, Endpoint and Log are set per endpoint).
	Deployment consumer.DeploymentConfig
	// RetryInterval is DefaultRetryInterval when 0.
	RetryInterval time.Duration
	// Heartbeat is how often the node announces itself and its load;
	// DefaultHeartbeat when 0.
	Heartbeat time.Duration
	Log       zerolog.Logger
}

// Models loads the models of the worker's deployments; ModelCache is the
// real one, and tests give the worker their own (as ollama's scheduler
// takes its server constructor).
type Models interface {
	// Acquire returns modelID loaded to run on threads threads, and the
	// func that releases it; ctx bounds the wait for the load.
	Acquire(ctx context.Context, modelID string, threads int) (Model, func(), error)
	// Cached lists the model ids this node has a local copy of (the
	// controller prefers nodes that do).
	Cached() []string
	// Close abandons the loads in progress (a model download stops, to be
	// resumed by the next start) and returns when no load or close is in
	// progress, or ctx ends.
	Close(ctx context.Context) error
}

// Model is a loaded model as the worker uses it.
type Model interface {
	// Task is the task type its head serves.
	Task() config.TaskType
	// Runner runs ep's work on the model; an ingest result that could not
	// fit in maxResultBytes fails before the model runs.
	Runner(ep config.Endpoint, maxResultBytes int64) consumer.Runner
}

// Worker runs the deployments of this process.
type Worker struct {
	cfg    Config
	log    zerolog.Logger
	budget *budget
	// abort is closed when Close's context ends: the deployments still
	// stopping cancel the work in their hands.
	abort     chan struct{}
	abortOnce sync.Once

	started time.Time

	mu        sync.Mutex
	endpoints map[string]*endpoint
	// served are the endpoints the plan has given this node allocations of
	// since they were defined here: the only ones with anything to report,
	// so that the heartbeat does not walk a thousand idle endpoints.
	served map[string]*endpoint
	// planned is this node's allocations per inference id, as the plan
	// says; an endpoint seen later starts from it.
	planned map[string]int
	// stopped holds, per id, the done channel of a deployment still
	// stopping: one of the same id waits for it, so that the old one's
	// clean-up never removes the new one's consumer.
	stopped map[string]chan struct{}
	cancel  context.CancelFunc
	watch   sync.WaitGroup
	running sync.WaitGroup
}

// Start begins watching the endpoint bucket.
func Start(ctx context.Context, cfg Config) (*Worker, error) {
	if cfg.NC == nil || cfg.JS == nil || cfg.Endpoints == nil || cfg.Deployments == nil || cfg.Models == nil || cfg.States == nil ||
		cfg.Registry == nil || cfg.Plans == nil {
		return nil, errors.New("worker: NATS, stores, buckets and models are required")
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.Processors <= 0 {
		cfg.Processors = runtime.NumCPU()
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = DefaultRetryInterval
	}
	w := &Worker{
		cfg:       cfg,
		log:       cfg.Log.With().Str("component", "worker").Logger(),
		abort:     make(chan struct{}),
		budget:    newBudget(cfg.Processors),
		endpoints: map[string]*endpoint{},
		served:    map[string]*endpoint{},
		stopped:   map[string]chan struct{}{},
		planned:   map[string]int{},
		started:   time.Now().UTC(),
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.cancel = cancel
	w.watch.Add(4)
	go func() {
		defer w.watch.Done()
		w.watchEndpoints(runCtx)
	}()
	go func() {
		defer w.watch.Done()
		w.watchDeployments(runCtx)
	}()
	go func() {
		defer w.watch.Done()
		w.watchPlans(runCtx)
	}()
	go func() {
		defer w.watch.Done()
		w.heartbeat(runCtx)
	}()
	w.log.Info().Int("processors", cfg.Processors).Msg("worker started")
	return w, nil
}

// watchEndpoints follows the endpoint bucket until ctx ends.
func (w *Worker) watchEndpoints(ctx context.Context) {
	w.cfg.Endpoints.Watch(ctx, func(c config.Change) { w.apply(ctx, c) })
}

// watchDeployments runs the trained model deployments started through the
// _ml API like endpoints of their own id (they take their model's task).
func (w *Worker) watchDeployments(ctx context.Context) {
	w.cfg.Deployments.Watch(ctx, func(c config.DeploymentChange) {
		w.apply(ctx, config.Change{Entry: config.Entry{ID: c.ID, Endpoint: c.Deployment.Endpoint(), Revision: c.Revision}, Deleted: c.Deleted})
	})
}

// watchPlans follows the controller's plan: each endpoint learns how many
// allocations this node runs.
func (w *Worker) watchPlans(ctx context.Context) {
	w.cfg.Plans.Watch(ctx, func(c cluster.PlanChange) {
		n := 0
		if !c.Deleted {
			n = c.Nodes[w.cfg.NodeName]
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.planned[c.InferenceID] = n
		if c.Deleted {
			delete(w.planned, c.InferenceID)
		}
		// The endpoints attached to a deployment follow its plan.
		for _, e := range w.endpoints {
			if e.planKey == c.InferenceID {
				e.plan(n)
				if n > 0 {
					w.served[e.id] = e
				}
			}
		}
	})
}

// apply routes one definition change to its endpoint's goroutine.
func (w *Worker) apply(ctx context.Context, c config.Change) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.endpoints[c.ID]
	switch {
	case c.Deleted || c.Err != nil:
		if c.Err != nil {
			w.log.Error().Str("inference_id", c.ID).Err(c.Err).Msg("invalid endpoint definition; not deployed")
		}
		if e != nil {
			delete(w.endpoints, c.ID)
			delete(w.served, c.ID)
			w.stopped[c.ID] = e.done
			e.stop(c.Deleted)
		}
	case e == nil:
		e = w.newEndpoint(c.Entry)
		n := w.planned[e.planKey]
		e.plan(n)
		w.endpoints[c.ID] = e
		if n > 0 {
			w.served[c.ID] = e
		}
		prev := w.stopped[c.ID]
		delete(w.stopped, c.ID)
		w.running.Add(1)
		go func() {
			defer w.running.Done()
			if prev != nil {
				<-prev
			}
			e.run(ctx)
			close(e.done)
			w.mu.Lock()
			if w.stopped[e.id] == e.done {
				delete(w.stopped, e.id)
			}
			w.mu.Unlock()
		}()
	default:
		e.update(c.Entry)
	}
}

// Close stops every deployment, finishing the work in hand, until ctx ends.
func (w *Worker) Close(ctx context.Context) error {
	abort := func() { w.abortOnce.Do(func() { close(w.abort) }) }
	defer context.AfterFunc(ctx, abort)()
	w.cancel()
	w.watch.Wait()
	w.mu.Lock()
	for id, e := range w.endpoints {
		e.closing = true
		e.stop(false)
		delete(w.endpoints, id)
	}
	clear(w.served)
	w.mu.Unlock()
	done := make(chan struct{})
	go func() {
		w.running.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		abort() // the after-func may not have run yet
		return fmt.Errorf("worker: %w", ctx.Err())
	}
	// Every model is released now; stop the loads still running and wait
	// for them and the closes, so that ONNX Runtime can be shut down after
	// Close.
	if err := w.cfg.Models.Close(ctx); err != nil {
		return fmt.Errorf("worker: models: %w", err)
	}
	return nil
}
