// Package worker is the serving side of a jetinfer process: it watches the
// endpoint bucket and the controller's plan and, for each endpoint the plan
// gives this node allocations of, runs a consumer.Deployment on the
// endpoint's model. It owns model loading (model store, model repository,
// one loaded copy per model and thread count), the process's processor
// budget, its entry in the node registry (heartbeats with its load), and the
// deployment state it reports in the inference_deployments bucket.
package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/cluster"
	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/consumer"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/modelstore"
	"github.com/jetinfer/jetinfer/pipeline"
	"github.com/jetinfer/jetinfer/wire"
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
	Models      *modelstore.Store
	States      *cluster.States
	Registry    *cluster.Registry
	Plans       *cluster.Plans
	Runtime     *inference.Runtime
	// NodeName names this worker in the deployment state.
	NodeName string
	// Processors is this process's processor budget: the sum of
	// allocations × num_threads over its deployments never exceeds it.
	// 0 means runtime.NumCPU().
	Processors int
	// ModelRepository holds built-in models as <dir>/<model_id>/ (ES's
	// xpack.ml.model_repository); they are imported on first use.
	ModelRepository string
	// CacheDir holds the models fetched from the model store.
	CacheDir string
	// Deployment carries the consumer settings of every deployment
	// (NC, JS, Endpoint, OnDemand and Log are set per endpoint).
	Deployment consumer.DeploymentConfig
	// RetryInterval is DefaultRetryInterval when 0.
	RetryInterval time.Duration
	// Heartbeat is how often the node announces itself and its load;
	// DefaultHeartbeat when 0.
	Heartbeat time.Duration
	Log       zerolog.Logger
}

// Worker runs the deployments of this process.
type Worker struct {
	cfg    Config
	log    zerolog.Logger
	models *models
	budget *budget

	started time.Time

	mu        sync.Mutex
	endpoints map[string]*endpoint
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
		cfg.Registry == nil || cfg.Plans == nil || cfg.Runtime == nil {
		return nil, errors.New("worker: NATS, stores, buckets and runtime are required")
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
		cfg: cfg,
		log: cfg.Log.With().Str("component", "worker").Logger(),
		models: &models{rt: cfg.Runtime, store: cfg.Models, repository: cfg.ModelRepository,
			cacheDir: cfg.CacheDir, log: cfg.Log, entries: map[modelKey]*modelEntry{}},
		budget:    newBudget(cfg.Processors),
		endpoints: map[string]*endpoint{},
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
	w.log.Info().Int("processors", cfg.Processors).Str("model_repository", cfg.ModelRepository).Msg("worker started")
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
			}
		}
	})
}

// heartbeat announces the node, its budget, cached models and the load of
// its deployments, until ctx ends; then it leaves the registry.
func (w *Worker) heartbeat(ctx context.Context) {
	t := time.NewTicker(w.cfg.Heartbeat)
	defer t.Stop()
	for {
		if err := w.cfg.Registry.Announce(ctx, w.describe()); err != nil && ctx.Err() == nil {
			w.log.Warn().Err(err).Msg("announce node")
		}
		select {
		case <-ctx.Done():
			if err := w.cfg.Registry.Leave(context.WithoutCancel(ctx), w.cfg.NodeName); err != nil {
				w.log.Warn().Err(err).Msg("leave node registry")
			}
			return
		case <-t.C:
		}
	}
}

// describe is the node's registry entry.
func (w *Worker) describe() cluster.Node {
	n := cluster.Node{Name: w.cfg.NodeName, Processors: w.cfg.Processors, MemoryBytes: availableMemory(),
		Models: cachedModels(w.cfg.CacheDir), Deployments: map[string]cluster.DeploymentStats{}, Started: w.started}
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, e := range w.endpoints {
		dep := e.deployment.Load()
		if dep == nil {
			continue
		}
		st := dep.Stats()
		lastMinute, peak, lastAccess := st.Throughput()
		n.Deployments[id] = cluster.DeploymentStats{
			Allocations: dep.Allocations(), Threads: int(e.threads.Load()),
			Documents: st.Documents.Load(), Inferences: st.Inferences.Load(), Errors: st.Errors.Load(),
			Rejected: st.Rejected.Load(), BusyNanos: st.BusyNanos.Load(), Waiting: dep.Waiting(),
			PeakPerMinute: peak, LastMinute: lastMinute, LastAccess: lastAccess, Started: e.started,
		}
	}
	return n
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
			w.stopped[c.ID] = e.done
			e.stop(c.Deleted)
		}
	case e == nil:
		e = w.newEndpoint(c.Entry)
		e.plan(w.planned[e.planKey])
		w.endpoints[c.ID] = e
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
	w.cancel()
	w.watch.Wait()
	w.mu.Lock()
	for id, e := range w.endpoints {
		e.stopCtx = ctx
		e.stop(false)
		delete(w.endpoints, id)
	}
	w.mu.Unlock()
	done := make(chan struct{})
	go func() {
		w.running.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("worker: %w", ctx.Err())
	}
	// Every model is released now; wait for loads still running and for
	// the closes, so that ONNX Runtime can be shut down after Close.
	if err := w.models.wait(ctx); err != nil {
		return fmt.Errorf("worker: models: %w", err)
	}
	return nil
}

// endpoint is the goroutine that owns one endpoint's deployment in this
// process.
type endpoint struct {
	w  *Worker
	id string
	// planKey is the deployment whose plan the endpoint follows: its own
	// id, or the deployment_id it is attached to. Only the deployment's own
	// goroutine charges the processor budget.
	planKey string
	log     zerolog.Logger
	updates chan config.Entry // latest definition; capacity 1
	planned chan int          // latest allocations the plan gives this node; capacity 1
	quit    chan struct{}     // closed to stop
	done    chan struct{}     // closed when run has returned
	deleted bool
	stopCtx context.Context

	ep   config.Endpoint
	rev  uint64
	want int
	// failed is set while the last deploy failed: the deployment answers
	// with the failure until it is deployed or undeployed.
	failed bool
	// started is when this node began to follow the endpoint.
	started time.Time
	dep     *consumer.Deployment
	// deployment and threads are read by the heartbeat.
	deployment atomic.Pointer[consumer.Deployment]
	threads    atomic.Int64
	model      *inference.Model
	key        modelKey
	release    func()
}

func (w *Worker) newEndpoint(entry config.Entry) *endpoint {
	e := &endpoint{
		w: w, id: entry.ID, ep: entry.Endpoint, rev: entry.Revision, started: time.Now().UTC(), planKey: entry.ID,
		log:     w.cfg.Log.With().Str("inference_id", entry.ID).Logger(),
		updates: make(chan config.Entry, 1),
		planned: make(chan int, 1),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if d := entry.Endpoint.ServiceSettings.DeploymentID; d != "" {
		e.planKey = d
	}
	return e
}

// charges reports whether the endpoint holds processors of the budget.
func (e *endpoint) charges() bool { return e.planKey == e.id }

func (e *endpoint) update(entry config.Entry) {
	select {
	case <-e.updates:
	default:
	}
	e.updates <- entry
}

func (e *endpoint) stop(deleted bool) {
	e.deleted = deleted
	close(e.quit)
}

// plan hands the endpoint's goroutine the allocations it should run.
func (e *endpoint) plan(n int) {
	select {
	case <-e.planned:
	default:
	}
	e.planned <- n
}

func (e *endpoint) run(ctx context.Context) {
	cfg := e.w.cfg.Deployment
	cfg.NC, cfg.JS, cfg.Endpoint, cfg.Log = e.w.cfg.NC, e.w.cfg.JS, e.ep, e.w.cfg.Log
	dep, err := consumer.NewDeployment(cfg)
	if err != nil {
		e.log.Error().Err(err).Msg("deployment")
		return
	}
	for {
		if err = dep.Start(ctx); err == nil {
			break
		}
		e.log.Warn().Err(err).Msg("start deployment; retrying")
		select {
		case <-e.quit:
			return
		case <-time.After(2 * time.Second):
		}
	}
	e.dep = dep
	e.deployment.Store(dep)
	e.threads.Store(int64(e.ep.ServiceSettings.NumThreads))
	defer e.shutdown()

	var retry <-chan time.Time
	var failure error
	heartbeat := time.NewTicker(cluster.StateHeartbeat)
	defer heartbeat.Stop()
	redeploy := true
	for {
		if redeploy {
			retry, failure = nil, nil
			if e.want > 0 {
				if failure = e.deploy(); failure != nil {
					e.fail(failure)
					retry = time.After(e.w.cfg.RetryInterval)
				}
			} else {
				e.undeploy()
			}
		}
		redeploy = true
		select {
		case <-e.quit:
			return
		case entry := <-e.updates:
			e.ep, e.rev = entry.Endpoint, entry.Revision
			e.threads.Store(int64(e.ep.ServiceSettings.NumThreads))
		case e.want = <-e.planned:
		case <-retry:
		case <-e.w.budget.freed():
		case <-heartbeat.C:
			// Keep the state fresh (its bucket expires what is not
			// rewritten); a failed load waits for its retry.
			redeploy = false
			if e.want > 0 {
				e.report(failure)
			}
		}
	}
}

// undeploy stops this node's allocations of the endpoint and unloads the
// model (the controller scaled it down to none here); documents stay queued
// for other nodes.
func (e *endpoint) undeploy() {
	if e.model == nil && e.dep.Allocations() == 0 && !e.failed {
		return
	}
	e.failed = false
	e.dep.SetRunner(nil, 0)() // clears a failure too; waits for the work in hand
	e.w.budget.release(e.id)
	if e.release != nil {
		e.release()
		e.model, e.release = nil, nil
	}
	if err := e.w.cfg.States.Remove(context.Background(), e.id, e.w.cfg.NodeName); err != nil {
		e.log.Warn().Err(err).Msg("remove deployment state")
	}
	e.log.Info().Msg("allocations stopped on this node")
}

// deploy brings the deployment in line with the definition: the model
// loaded for its thread count, and as many allocations as the budget
// allows.
func (e *endpoint) deploy() error {
	ss := e.ep.ServiceSettings
	key := modelKey{ss.ModelID, ss.NumThreads}
	if e.model == nil || e.key != key {
		e.report(nil) // starting
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-e.quit:
				cancel()
			case <-ctx.Done():
			}
		}()
		m, release, err := e.w.models.acquire(ctx, key.id, key.threads)
		cancel()
		if err != nil {
			return err
		}
		if e.release != nil {
			// Another model or thread count: the old one serves until its
			// work in hand is done, then closes.
			e.dep.SetRunner(nil, 0)()
			e.release()
		}
		e.model, e.key, e.release = m, key, release
	}
	if e.ep.TaskType == "" {
		// A trained model deployment serves its model's task.
		e.ep.TaskType = config.TaskType(e.model.Spec().Task)
	}
	if err := checkTask(e.ep, e.model); err != nil {
		return err
	}
	n := e.want
	if e.charges() {
		n = e.w.budget.grant(e.id, e.want, max(ss.NumThreads, 1))
	}
	e.dep.SetRunner(pipeline.Runner{Model: e.model, Endpoint: e.ep}, n)
	e.failed = false
	e.report(nil)
	return nil
}

// gone reports whether the endpoint's id is defined neither as an endpoint
// nor as a trained model deployment.
func (e *endpoint) gone(ctx context.Context) bool {
	_, err := e.w.cfg.Endpoints.Get(ctx, e.id)
	if !errors.Is(err, config.ErrNotFound) {
		return false
	}
	_, _, err = e.w.cfg.Deployments.Get(ctx, e.id)
	return errors.Is(err, config.ErrDeploymentNotFound)
}

// checkTask refuses a model whose head does not serve the endpoint's task.
func checkTask(ep config.Endpoint, m *inference.Model) error {
	if got := m.Spec().Task; string(got) != string(ep.TaskType) {
		return eserror.BadRequest("Deployed model [%s] with type [%s] does not match the requested task type [%s]",
			ep.ServiceSettings.ModelID, got, ep.TaskType)
	}
	return nil
}

// fail stops the allocations and reports why; documents stay queued.
func (e *endpoint) fail(err error) {
	e.log.Error().Err(err).Str("model_id", e.ep.ServiceSettings.ModelID).Msg("deployment failed")
	e.w.budget.release(e.id)
	e.failed = true
	e.dep.Fail(err)() // the model goes once the work in hand is done
	if e.release != nil {
		e.release()
		e.model, e.release = nil, nil
	}
	e.report(err)
}

// report writes this worker's state of the endpoint.
func (e *endpoint) report(failure error) {
	st := cluster.State{
		InferenceID: e.id, Node: e.w.cfg.NodeName, ModelID: e.ep.ServiceSettings.ModelID, Revision: e.rev,
		Allocations: e.dep.Allocations(), TargetAllocations: e.want,
		ThreadsPerAlloc: e.ep.ServiceSettings.NumThreads, State: cluster.StateStarting,
	}
	switch {
	case failure != nil:
		st.State = cluster.StateFailed
		es := eserror.As(failure)
		st.ErrorStatus = es.Status
		st.Error, _ = es.MarshalJSON()
	case e.model != nil && st.Allocations > 0:
		st.State = cluster.StateStarted
	}
	if err := e.w.cfg.States.Put(context.Background(), st); err != nil {
		e.log.Warn().Err(err).Msg("report deployment state")
	}
}

// shutdown stops the deployment, finishing its work in hand; when the
// endpoint was deleted it also removes its consumer and queued documents.
func (e *endpoint) shutdown() {
	ctx := e.stopCtx
	if ctx == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
	}
	if err := e.dep.Stop(ctx); err != nil {
		e.log.Warn().Err(err).Msg("stop deployment")
	}
	e.w.budget.release(e.id)
	if e.release != nil {
		e.release()
	}
	// Each call below has its own timeout (kv.Timeout, JetStream's default).
	cctx := context.Background()
	if err := e.w.cfg.States.Remove(cctx, e.id, e.w.cfg.NodeName); err != nil {
		e.log.Warn().Err(err).Msg("remove deployment state")
	}
	// Every worker stops a deleted endpoint; the queue and consumer go only
	// if the id has not been defined again meanwhile.
	if e.deleted && e.gone(cctx) {
		if err := wire.RemoveEndpoint(cctx, e.w.cfg.JS, e.id); err != nil {
			e.log.Warn().Err(err).Msg("remove endpoint queue")
		}
	}
	e.log.Info().Bool("deleted", e.deleted).Msg("deployment stopped")
}
