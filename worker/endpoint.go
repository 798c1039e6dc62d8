package worker

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/cluster"
	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/consumer"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/wire"
)

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
	asked   chan struct{}     // a request found the deployment failed; capacity 1
	quit    chan struct{}     // closed to stop
	done    chan struct{}     // closed when run has returned
	// deleted and closing say why quit was closed (set before it is): the
	// endpoint was deleted, or the worker is closing.
	deleted, closing bool

	ep   config.Endpoint
	rev  uint64
	want int
	// failed is set while the last deploy failed: the deployment answers
	// with the failure until it is deployed or undeployed.
	failed bool
	// started is when this node began to follow the endpoint.
	started time.Time
	dep     *consumer.Deployment
	// deployment, threads and allocated are read by the heartbeat;
	// allocated is set while the plan gives this node allocations
	// (loading, or failed to load, included).
	deployment atomic.Pointer[consumer.Deployment]
	threads    atomic.Int64
	allocated  atomic.Bool
	model      Model
	key        modelKey
	release    func()
}

// minRetryInterval spaces the retries of a failed deployment that
// requests ask for.
const minRetryInterval = 5 * time.Second

func (w *Worker) newEndpoint(entry config.Entry) *endpoint {
	e := &endpoint{
		w: w, id: entry.ID, ep: entry.Endpoint, rev: entry.Revision, started: time.Now().UTC(), planKey: entry.ID,
		log:     w.cfg.Log.With().Str("inference_id", entry.ID).Logger(),
		updates: make(chan config.Entry, 1),
		planned: make(chan int, 1),
		asked:   make(chan struct{}, 1),
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
	cfg.FailedRequest = func() {
		select {
		case e.asked <- struct{}{}:
		default:
		}
	}
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
	// The state is rewritten while this node has allocations (its bucket
	// expires what is not): a dormant endpoint, of which a node may have
	// a thousand, keeps no timer.
	heartbeat := time.NewTicker(cluster.StateHeartbeat)
	heartbeat.Stop()
	defer heartbeat.Stop()
	// freed is taken before each deploy asks the budget for processors:
	// taken after, a release between the two would be missed, and an
	// endpoint short of processors would wait for the next event. It is
	// taken again after this endpoint released its own.
	freed := e.w.budget.freed()
	var attempted time.Time
	redeploy := true
	for {
		if redeploy {
			freed = e.w.budget.freed()
			attempted = time.Now()
			retry, failure = nil, nil
			if e.want > 0 {
				if failure = e.deploy(); failure != nil {
					e.fail(failure)
					retry = time.After(e.w.cfg.RetryInterval)
					// Its own release is not a reason to try again at once.
					freed = e.w.budget.freed()
				}
				heartbeat.Reset(cluster.StateHeartbeat)
			} else {
				e.undeploy()
				heartbeat.Stop()
				freed = e.w.budget.freed()
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
			e.allocated.Store(e.want > 0)
		case <-retry:
		case <-e.asked:
			// A request found the deployment failed: a download that
			// failed (the network, a token added since) is retried on the
			// next request, as Elasticsearch does, at most every
			// minRetryInterval.
			redeploy = failure != nil && time.Since(attempted) >= minRetryInterval
		case <-freed:
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
		m, release, err := e.w.cfg.Models.Acquire(ctx, key.id, key.threads)
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
		e.ep.TaskType = e.model.Task()
		e.dep.Stats().SetTask(e.ep.TaskType)
	}
	if err := checkTask(e.ep, e.model); err != nil {
		return err
	}
	n := e.want
	if e.charges() {
		n = e.w.budget.grant(e.id, e.want, max(ss.NumThreads, 1))
	}
	// A result is one message: one that cannot fit is refused up front.
	e.dep.SetRunner(e.model.Runner(e.ep, e.w.cfg.NC.MaxPayload()), n)
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
func checkTask(ep config.Endpoint, m Model) error {
	if got := m.Task(); got != ep.TaskType {
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
	// The work in hand is finished, until the worker's Close gives up;
	// an endpoint deleted or undefined gets a minute at most.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	if e.closing {
		cancel()
		ctx, cancel = context.WithCancel(context.Background())
	}
	defer cancel()
	go func() {
		select {
		case <-e.w.abort:
			cancel()
		case <-ctx.Done():
		}
	}()
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
