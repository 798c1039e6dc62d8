// Package consumer serves endpoints in this process: a Deployment pulls an
// endpoint's documents from its durable consumer and answers its infer
// requests, on as many allocations as the worker gives it, runs them on the
// endpoint's model (a Runner) and publishes and settles what they compute.
// The protocol it speaks (subjects, headers, streams, framing) is package
// wire's.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/tracing"
	"github.com/jetinfer/jetinfer/wire"
)

// Runner is what a deployment runs its work on: the endpoint's loaded model
// (pipeline.Runner).
type Runner interface {
	// Infer answers a validated POST _inference request.
	Infer(ctx context.Context, req inferapi.Request, opts inferapi.Options) (inferapi.Result, error)
	// Ingest returns one result body per document.
	Ingest(ctx context.Context, docs []inferapi.Request) ([][]byte, error)
}

// GiveBacks is the ledger of deliveries handed back unrun (wire.GiveBacks):
// they do not count as attempts.
type GiveBacks interface {
	Add(ctx context.Context, token string, meta *jetstream.MsgMetadata) error
	Count(ctx context.Context, token string, meta *jetstream.MsgMetadata) (uint64, error)
}

// Defaults of DeploymentConfig.
const (
	DefaultNakDelay  = time.Second
	DefaultPollWait  = time.Second
	DefaultGroupDocs = 32
)

// DeploymentConfig configures a Deployment.
type DeploymentConfig struct {
	NC       *nats.Conn
	JS       jetstream.JetStream
	Endpoint config.Endpoint
	// SearchCapacity bounds the infer requests waiting in this process;
	// beyond it they are answered 429. 0 means config.DefaultQueueCapacity.
	SearchCapacity int
	// Queue is what the endpoint's streams and consumer are created with.
	// Its MaxDeliver bounds the attempts at one document (the last failed
	// one publishes an error result); a document being worked on is kept
	// alive (InProgress) every third of its AckWait.
	Queue wire.QueueConfig
	// GiveBacks records the documents handed back unrun when allocations
	// stop; nil counts every delivery as an attempt.
	GiveBacks GiveBacks
	// Tracer traces requests and documents, continuing the trace their
	// messages carry; nil traces nothing, at no cost per message.
	Tracer trace.TracerProvider
	// NakDelay is the redelivery delay after a failed attempt; 0 means
	// DefaultNakDelay.
	NakDelay time.Duration
	// PollWait bounds one fetch, and so how long a serving deployment
	// takes to notice it is stopping (one without lanes waits for a wake);
	// 0 means DefaultPollWait.
	PollWait time.Duration
	// GroupDocs bounds the documents an allocation takes at once (and
	// embeds in one engine call); 0 means DefaultGroupDocs.
	GroupDocs int
	// FailedRequest, if set, is called when a request is answered with the
	// deployment's failure (from the subscription's goroutine: it must not
	// block), so that the owner can retry the deployment on demand.
	FailedRequest func()
	Log           zerolog.Logger
}

// Deployment serves one endpoint in this process: it pulls documents from
// the endpoint's durable consumer endpoint_<token> and answers requests on
// inference.<token>.infer (queue group endpoint_<token>), on as many
// allocations as SetRunner gives it.
//
// Each allocation is two goroutines: a bulk lane that serves ingest
// documents, in groups embedded by one engine call, and a search lane that
// serves infer requests only. Search requests therefore never wait behind a
// bulk group: they run beside it on the shared session (the OS shares the
// cores between them), and the bulk lane takes waiting search requests
// before its next group.
type Deployment struct {
	cfg   DeploymentConfig
	token string
	log   zerolog.Logger

	searchQ *searchQueue
	ingestQ chan []jetstream.Msg
	// wake tells the fetcher that the runner or the lanes changed.
	wake chan struct{}

	mu       sync.Mutex
	runner   Runner
	failure  error
	lanes    []*lane
	stopping bool
	// gen counts the work in progress since the last SetRunner, so that
	// the caller can wait for it before it closes the runner replaced.
	gen *sync.WaitGroup

	sub      *nats.Subscription
	cons     jetstream.Consumer
	cancel   context.CancelFunc
	fetcher  sync.WaitGroup
	laneWG   sync.WaitGroup
	draining chan struct{} // closed when lanes must drain searchQ and exit
	// running counts the goroutines of every lane not yet returned, those
	// scaled away and finishing their work included: a stop past its
	// deadline cancels their work.
	running map[*lane]int

	stats *DeploymentStats
}

// lane is one goroutine of an allocation. Closing quit asks it to finish
// the work in its hands and return; cancel cancels that work (an ONNX
// Runtime run in progress included).
type lane struct {
	quit   chan struct{}
	cancel context.CancelFunc
}

// NewDeployment checks cfg and fills in its defaults.
func NewDeployment(cfg DeploymentConfig) (*Deployment, error) {
	switch {
	case cfg.NC == nil || cfg.JS == nil:
		return nil, errors.New("deployment: NATS connection and JetStream are required")
	case cfg.Endpoint.InferenceID == "":
		return nil, errors.New("deployment: endpoint inference id is required")
	case cfg.Queue.MaxDeliver < 0:
		return nil, fmt.Errorf("deployment: max deliver %d is negative", cfg.Queue.MaxDeliver)
	}
	if cfg.SearchCapacity <= 0 {
		cfg.SearchCapacity = config.DefaultQueueCapacity
	}
	cfg.Queue = cfg.Queue.WithDefaults()
	if cfg.NakDelay <= 0 {
		cfg.NakDelay = DefaultNakDelay
	}
	if cfg.PollWait <= 0 {
		cfg.PollWait = DefaultPollWait
	}
	if cfg.GroupDocs <= 0 {
		cfg.GroupDocs = DefaultGroupDocs
	}
	return &Deployment{
		cfg:      cfg,
		token:    config.Token(cfg.Endpoint.InferenceID),
		log:      cfg.Log.With().Str("inference_id", cfg.Endpoint.InferenceID).Logger(),
		searchQ:  newSearchQueue(cfg.SearchCapacity),
		ingestQ:  make(chan []jetstream.Msg),
		wake:     make(chan struct{}, 1),
		draining: make(chan struct{}),
		gen:      new(sync.WaitGroup),
		running:  map[*lane]int{},
		stats:    newDeploymentStats(cfg.Endpoint.InferenceID, cfg.Endpoint.TaskType),
	}, nil
}

// Start creates or binds the endpoint's streams and durable consumer, subscribes to its
// infer subject and starts fetching; nothing is served until SetRunner.
func (d *Deployment) Start(ctx context.Context) error {
	cons, err := wire.EnsureEndpoint(ctx, d.cfg.JS, d.cfg.Endpoint.InferenceID, d.cfg.Queue)
	if err != nil {
		return err
	}
	d.cons = cons
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.cancel = cancel
	d.fetcher.Add(1)
	go func() {
		defer d.fetcher.Done()
		d.fetch(runCtx)
	}()
	return nil
}

// subscribe joins the endpoint's infer queue group; a process serves
// requests only while it has allocations, so that NATS never routes one to
// a process that cannot answer it.
func (d *Deployment) subscribe() error {
	if d.sub != nil {
		return nil
	}
	sub, err := d.cfg.NC.QueueSubscribe(wire.InferSubject(d.token), wire.ConsumerName(d.token), d.onInfer)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", wire.InferSubject(d.token), err)
	}
	// The subscription's own buffer is not the queue: searchQ is, and it
	// answers 429 when full, so the client library must never drop.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		_ = sub.Unsubscribe()
		return err
	}
	d.sub = sub
	return nil
}

// leave takes the deployment out of the queue group; the requests already
// received are handed to onInfer first when the server can be reached. It
// must be called without d.mu held: onInfer takes it.
func (d *Deployment) leave(ctx context.Context) {
	d.mu.Lock()
	sub := d.sub
	d.sub = nil
	d.mu.Unlock()
	if sub == nil {
		return
	}
	if !d.cfg.NC.IsConnected() || sub.Drain() != nil {
		_ = sub.Unsubscribe()
	}
	for sub.IsValid() && ctx.Err() == nil && d.cfg.NC.IsConnected() {
		time.Sleep(5 * time.Millisecond)
	}
}

// SetRunner makes r serve the endpoint on n allocations (a nil runner or
// n = 0 stops them). Lanes that stop finish the work in their hands; a new
// runner is used from the next piece of work on. It clears a failure. The
// returned wait blocks until the work begun before the call is done: only
// then may the runner replaced (its model) be closed.
func (d *Deployment) SetRunner(r Runner, n int) (wait func()) {
	if r == nil {
		n = 0
	}
	if n == 0 {
		// Stop taking requests before the lanes that would serve them go.
		d.leave(context.Background())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.setLocked(r, nil, n)
}

// setLocked gives the deployment runner r on n allocations, or failure;
// d.mu is held. It returns SetRunner's wait.
func (d *Deployment) setLocked(r Runner, failure error, n int) (wait func()) {
	if d.stopping {
		return func() {}
	}
	d.runner, d.failure = r, failure
	for len(d.lanes) > n {
		last := d.lanes[len(d.lanes)-1]
		close(last.quit)
		d.lanes = d.lanes[:len(d.lanes)-1]
	}
	for len(d.lanes) < n {
		// The lanes' work outlives the call: only Stop's deadline cancels it.
		ctx, cancel := context.WithCancel(context.Background())
		l := &lane{quit: make(chan struct{}), cancel: cancel}
		d.lanes = append(d.lanes, l)
		d.running[l] = 2
		d.laneWG.Add(2)
		go func() {
			defer d.laneDone(l)
			// Searches first when the cores are busy: bulk work yields.
			if err := lowerPriority(); err != nil {
				d.log.Warn().Err(err).Msg("lower the bulk lane's priority")
			}
			d.lane(ctx, l.quit, d.ingestQ) // bulk
		}()
		go func() {
			defer d.laneDone(l)
			d.lane(ctx, l.quit, nil) // search
		}()
	}
	if n > 0 || failure != nil {
		// A failed deployment stays in the queue group to give requesters
		// the reason.
		if err := d.subscribe(); err != nil {
			d.log.Error().Err(err).Msg("serve infer requests")
		}
	}
	d.poke()
	old := d.gen
	d.gen = new(sync.WaitGroup)
	return old.Wait
}

// Fail stops the allocations and answers infer requests, waiting and new,
// with err until the next SetRunner. Documents stay queued. The returned
// wait is SetRunner's. The deployment never leaves the queue group on the
// way, so that a deployment failing again on each retry answers every
// request with its failure.
func (d *Deployment) Fail(err error) (wait func()) {
	d.mu.Lock()
	wait = d.setLocked(nil, err, 0)
	d.failure = err // also while stopping
	d.mu.Unlock()
	for {
		s, ok := d.searchQ.pop()
		if !ok {
			return wait
		}
		d.replyError(s.msg, err)
		tracing.End(s.span, err)
	}
}

// Allocations is the number of allocations running.
func (d *Deployment) Allocations() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.lanes)
}

// Stats returns the deployment's counters.
func (d *Deployment) Stats() *DeploymentStats { return d.stats }

// Waiting is the number of infer requests waiting in this process.
func (d *Deployment) Waiting() int { return d.searchQ.len() }

// Stop stops taking work and finishes what is in hand: infer requests
// already received are answered, documents being embedded are published
// and acked, documents fetched but not started are handed back for
// redelivery. It returns when all is done or ctx ends.
func (d *Deployment) Stop(ctx context.Context) error {
	d.mu.Lock()
	if d.stopping {
		d.mu.Unlock()
		return nil
	}
	d.stopping = true
	d.mu.Unlock()

	d.leave(ctx)
	if d.cancel != nil {
		d.cancel()
	}
	d.fetcher.Wait()

	d.mu.Lock()
	lanes := len(d.lanes)
	failure := d.failure
	d.mu.Unlock()
	if lanes == 0 {
		// Nobody will serve what waits: say so instead of leaving the
		// clients to time out.
		if failure == nil {
			failure = d.errShuttingDown()
		}
		d.Fail(failure)
	}
	close(d.draining)
	done := make(chan struct{})
	go func() {
		d.laneWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		d.mu.Lock()
		for l := range d.running {
			l.cancel()
		}
		d.mu.Unlock()
		return fmt.Errorf("stop deployment %s: %w", d.cfg.Endpoint.InferenceID, ctx.Err())
	}
}

// errShuttingDown answers what this node will not serve because the
// deployment is stopping.
func (d *Deployment) errShuttingDown() error {
	return eserror.New(http.StatusServiceUnavailable, eserror.TypeStatus,
		"Inference endpoint [%s] is shutting down on this node", d.cfg.Endpoint.InferenceID)
}

// laneDone marks one goroutine of l returned.
func (d *Deployment) laneDone(l *lane) {
	d.mu.Lock()
	if d.running[l]--; d.running[l] == 0 {
		delete(d.running, l)
		l.cancel()
	}
	d.mu.Unlock()
	d.laneWG.Done()
}

func (d *Deployment) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// serving is what serves the deployment at one moment: the runner (nil
// when none), the failure requests are answered with (nil when none), and
// the allocations running.
type serving struct {
	runner  Runner
	failure error
	lanes   int
}

// runnerFor returns the runner, or what work fails with while there is none:
// the failure, else ErrNotDeployed.
func (s serving) runnerFor(inferenceID string) (Runner, error) {
	switch {
	case s.runner != nil:
		return s.runner, nil
	case s.failure != nil:
		return nil, s.failure
	}
	return nil, wire.ErrNotDeployed(inferenceID)
}

func (d *Deployment) current() serving {
	d.mu.Lock()
	defer d.mu.Unlock()
	return serving{d.runner, d.failure, len(d.lanes)}
}

// use returns what serves one piece of work and the func that marks the
// work done (see SetRunner's wait).
func (d *Deployment) use() (serving, func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	g := d.gen
	g.Add(1)
	return serving{d.runner, d.failure, len(d.lanes)}, g.Done
}
