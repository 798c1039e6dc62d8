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
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/wire"
)

// Runner is what a deployment runs its work on: the endpoint's loaded model
// (pipeline.Runner).
type Runner interface {
	// Infer answers a validated POST _inference request.
	Infer(ctx context.Context, req inferapi.Request) ([]byte, error)
	// Ingest returns one result body per document.
	Ingest(ctx context.Context, docs []inferapi.Request) ([][]byte, error)
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
	// MaxDeliver bounds the attempts at one document; 0 means
	// DefaultMaxDeliver. The last failed attempt publishes an error result.
	MaxDeliver int
	// AckWait is the consumer's ack wait; a document being worked on is
	// kept alive (InProgress) every third of it. 0 means DefaultAckWait.
	AckWait time.Duration
	// NakDelay is the redelivery delay after a failed attempt; 0 means
	// DefaultNakDelay.
	NakDelay time.Duration
	// PollWait bounds one fetch, and so how long an idle deployment takes
	// to notice it is stopping; 0 means DefaultPollWait.
	PollWait time.Duration
	// GroupDocs bounds the documents an allocation takes at once (and
	// embeds in one engine call); 0 means DefaultGroupDocs.
	GroupDocs int
	Log       zerolog.Logger
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

	searchQ chan *nats.Msg
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

	stats DeploymentStats
}

// DeploymentStats counts what a deployment did in this process.
type DeploymentStats struct {
	Documents  atomic.Int64 // results published, errors included
	Errors     atomic.Int64 // error results published
	Inferences atomic.Int64 // infer requests answered, errors included
	Rejected   atomic.Int64 // infer requests refused with 429
	// BusyNanos is the time spent computing documents and requests.
	BusyNanos atomic.Int64

	mu sync.Mutex
	// minute is the minute (Unix time / 60) count belongs to; last the
	// count of the minute before; peak the highest whole-minute count.
	minute, count, last, peak int64
	lastAccess                time.Time
}

// done counts n documents or requests finished now.
func (s *DeploymentStats) done(n int64) {
	now := time.Now()
	m := now.Unix() / 60
	s.mu.Lock()
	defer s.mu.Unlock()
	s.roll(m)
	s.count += n
	s.peak = max(s.peak, s.count)
	s.lastAccess = now
}

func (s *DeploymentStats) roll(m int64) {
	if m == s.minute {
		return
	}
	if m == s.minute+1 {
		s.last = s.count
	} else {
		s.last = 0
	}
	s.minute, s.count = m, 0
}

// Throughput returns the documents and requests finished in the last whole
// minute, the most in any minute so far (the current one included), and
// when the last one finished.
func (s *DeploymentStats) Throughput() (lastMinute, peakPerMinute int64, lastAccess time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.roll(time.Now().Unix() / 60)
	return s.last, s.peak, s.lastAccess
}

type lane struct {
	cancel context.CancelFunc
}

// NewDeployment checks cfg and fills in its defaults.
func NewDeployment(cfg DeploymentConfig) (*Deployment, error) {
	switch {
	case cfg.NC == nil || cfg.JS == nil:
		return nil, errors.New("deployment: NATS connection and JetStream are required")
	case cfg.Endpoint.InferenceID == "":
		return nil, errors.New("deployment: endpoint inference id is required")
	case cfg.MaxDeliver < 0:
		return nil, fmt.Errorf("deployment: max deliver %d is negative", cfg.MaxDeliver)
	}
	if cfg.SearchCapacity <= 0 {
		cfg.SearchCapacity = config.DefaultQueueCapacity
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = wire.DefaultMaxDeliver
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = wire.DefaultAckWait
	}
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
		searchQ:  make(chan *nats.Msg, cfg.SearchCapacity),
		ingestQ:  make(chan []jetstream.Msg),
		wake:     make(chan struct{}, 1),
		draining: make(chan struct{}),
		gen:      new(sync.WaitGroup),
	}, nil
}

// Start creates or binds the endpoint's durable consumer, subscribes to its
// infer subject and starts fetching; nothing is served until SetRunner.
func (d *Deployment) Start(ctx context.Context) error {
	cons, err := wire.EnsureConsumer(ctx, d.cfg.JS, d.cfg.Endpoint.InferenceID, wire.ConsumerConfig{AckWait: d.cfg.AckWait, MaxDeliver: d.cfg.MaxDeliver})
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
	if d.stopping {
		return func() {}
	}
	d.runner, d.failure = r, nil
	for len(d.lanes) > n {
		last := d.lanes[len(d.lanes)-1]
		last.cancel()
		d.lanes = d.lanes[:len(d.lanes)-1]
	}
	for len(d.lanes) < n {
		ctx, cancel := context.WithCancel(context.Background())
		d.lanes = append(d.lanes, &lane{cancel: cancel})
		d.laneWG.Add(2)
		go func() {
			defer d.laneWG.Done()
			d.bulkLane(ctx)
		}()
		go func() {
			defer d.laneWG.Done()
			d.searchLane(ctx)
		}()
	}
	if n > 0 {
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
// wait is SetRunner's.
func (d *Deployment) Fail(err error) (wait func()) {
	wait = d.SetRunner(nil, 0)
	d.mu.Lock()
	d.failure = err
	if !d.stopping {
		// Stay in the queue group to give requesters the reason.
		if serr := d.subscribe(); serr != nil {
			d.log.Error().Err(serr).Msg("serve infer requests")
		}
	}
	d.mu.Unlock()
	for {
		select {
		case msg := <-d.searchQ:
			d.replyError(msg, err)
		default:
			return wait
		}
	}
}

// Allocations is the number of allocations running.
func (d *Deployment) Allocations() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.lanes)
}

// Stats returns the deployment's counters.
func (d *Deployment) Stats() *DeploymentStats { return &d.stats }

// Waiting is the number of infer requests waiting in this process.
func (d *Deployment) Waiting() int { return len(d.searchQ) }

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
			failure = eserror.New(http.StatusServiceUnavailable, eserror.TypeStatus,
				"Inference endpoint [%s] is shutting down on this node", d.cfg.Endpoint.InferenceID)
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
		for _, l := range d.lanes {
			l.cancel()
		}
		d.mu.Unlock()
		return fmt.Errorf("stop deployment %s: %w", d.cfg.Endpoint.InferenceID, ctx.Err())
	}
}

func (d *Deployment) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *Deployment) current() (Runner, error, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.runner, d.failure, len(d.lanes)
}

// use returns the runner for one piece of work and the func that marks the
// work done (see SetRunner's wait).
func (d *Deployment) use() (Runner, error, func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	g := d.gen
	g.Add(1)
	return d.runner, d.failure, g.Done
}

// onInfer queues one infer request; it runs on the subscription's goroutine.
func (d *Deployment) onInfer(msg *nats.Msg) {
	if msg.Reply == "" {
		return // nobody would read the answer
	}
	if _, failure, _ := d.current(); failure != nil {
		d.replyError(msg, failure)
		return
	}
	select {
	case d.searchQ <- msg:
	default:
		d.stats.Rejected.Add(1)
		d.replyError(msg, ErrQueueFull)
	}
}

// ErrQueueFull is Elasticsearch's answer when a deployment's queue is full.
var ErrQueueFull = eserror.New(http.StatusTooManyRequests, eserror.TypeRejectedExecution,
	"inference process queue is full. Unable to execute command")

// fetch pulls documents while the deployment has allocations and hands
// them to the bulk lanes, as many as have arrived when a lane is free.
func (d *Deployment) fetch(ctx context.Context) {
	for ctx.Err() == nil {
		if _, _, lanes := d.current(); lanes == 0 {
			select {
			case <-ctx.Done():
			case <-d.wake:
			case <-time.After(d.cfg.PollWait):
			}
			continue
		}
		batch, err := d.cons.Fetch(d.cfg.GroupDocs, jetstream.FetchMaxWait(d.cfg.PollWait))
		if err == nil {
			err = d.handOut(ctx, batch)
		}
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
			// Removed by a worker cleaning up after a delete of the same
			// id that raced with its re-creation: the endpoint exists, so
			// its consumer must too.
			if cons, cerr := wire.EnsureConsumer(ctx, d.cfg.JS, d.cfg.Endpoint.InferenceID, wire.ConsumerConfig{AckWait: d.cfg.AckWait, MaxDeliver: d.cfg.MaxDeliver}); cerr == nil {
				d.cons = cons
				continue
			}
		}
		if err != nil && ctx.Err() == nil {
			d.log.Warn().Err(err).Msg("fetch")
			select {
			case <-ctx.Done():
			case <-time.After(d.cfg.PollWait):
			}
		}
	}
}

// handOut forwards one pull request's messages to the lanes and returns the
// pull request's error. Messages in hand when ctx ends are handed back to
// the server for redelivery.
func (d *Deployment) handOut(ctx context.Context, batch jetstream.MessageBatch) error {
	var pending []jetstream.Msg
	msgs := batch.Messages()
	// Documents in hand with no lane left to take them (this node's
	// allocations went to zero) go back at once, rather than waiting out
	// their ack wait here and being served twice later.
	check := time.NewTicker(d.cfg.PollWait)
	defer check.Stop()
	giveBack := func() {
		for _, msg := range pending {
			_ = msg.Nak()
		}
		pending = nil
		if msgs != nil {
			for msg := range msgs {
				_ = msg.Nak()
			}
			msgs = nil
		}
	}
	for msgs != nil || len(pending) > 0 {
		var out chan []jetstream.Msg
		if len(pending) > 0 {
			out = d.ingestQ
		}
		select {
		case <-check.C:
			if _, _, lanes := d.current(); lanes == 0 {
				giveBack()
			} else {
				for _, msg := range pending {
					_ = msg.InProgress()
				}
			}
		case msg, ok := <-msgs:
			if !ok {
				msgs = nil
				continue
			}
			pending = append(pending, msg)
		case out <- pending:
			pending = nil
		case <-ctx.Done():
			giveBack()
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
		return err
	}
	return nil
}

// bulkLane serves ingest groups, taking waiting search requests first.
func (d *Deployment) bulkLane(ctx context.Context) {
	for {
		select {
		case msg := <-d.searchQ:
			d.serveSearch(msg)
			continue
		default:
		}
		select {
		case <-ctx.Done():
			d.drainSearches()
			return
		case <-d.draining:
			d.drainSearches()
			return
		case msg := <-d.searchQ:
			d.serveSearch(msg)
		case group := <-d.ingestQ:
			d.serveGroup(group)
		}
	}
}

func (d *Deployment) searchLane(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			d.drainSearches()
			return
		case <-d.draining:
			d.drainSearches()
			return
		case msg := <-d.searchQ:
			d.serveSearch(msg)
		}
	}
}

func (d *Deployment) drainSearches() {
	for {
		select {
		case msg := <-d.searchQ:
			d.serveSearch(msg)
		default:
			return
		}
	}
}

// serveSearch answers one infer request. A request whose client has
// already given up (its deadline passed) is dropped unanswered.
func (d *Deployment) serveSearch(msg *nats.Msg) {
	ctx := context.Background()
	if dl, ok := wire.Deadline(msg); ok {
		if time.Until(dl) <= 0 {
			return
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl)
		defer cancel()
	}
	runner, failure, done := d.use()
	defer done()
	if runner == nil {
		if failure == nil {
			failure = wire.ErrNotDeployed(d.cfg.Endpoint.InferenceID)
		}
		d.replyError(msg, failure)
		return
	}
	req, err := d.parse(msg.Data)
	if err == nil {
		var body []byte
		start := time.Now()
		body, err = runner.Infer(ctx, req)
		d.stats.BusyNanos.Add(int64(time.Since(start)))
		if err == nil {
			d.stats.Inferences.Add(1)
			d.stats.done(1)
			if err := wire.Reply(d.cfg.NC, msg.Reply, http.StatusOK, body, false); err != nil {
				d.log.Error().Err(err).Msg("reply")
			}
			return
		}
	}
	if ctx.Err() != nil {
		return // the client has timed out and is gone
	}
	d.replyError(msg, err)
}

func (d *Deployment) replyError(msg *nats.Msg, err error) {
	d.stats.Inferences.Add(1)
	e := eserror.As(err)
	if e.Status >= 500 {
		d.log.Error().Err(err).Msg("inference failed")
	}
	body, merr := e.MarshalJSON()
	if merr != nil {
		body = []byte(`{"error":{"type":"status_exception","reason":"internal error"},"status":500}`)
	}
	if rerr := wire.Reply(d.cfg.NC, msg.Reply, e.Status, body, errors.Is(err, wire.ErrNoAllocation)); rerr != nil {
		d.log.Error().Err(rerr).Msg("reply")
	}
}

// parse reads and validates a request body against the endpoint's task.
func (d *Deployment) parse(body []byte) (inferapi.Request, error) {
	req, err := inferapi.ParseRequest(body)
	if err != nil {
		return req, err
	}
	task := config.Any
	if d.cfg.Endpoint.TaskType == config.Rerank {
		task = config.Rerank
	}
	return req, req.Validate(task)
}

// doc is one ingest message in a group.
type doc struct {
	msg  jetstream.Msg
	meta *jetstream.MsgMetadata
	id   string
	req  inferapi.Request
	body []byte
	err  error
}

// errInvalid marks documents that can never succeed: they are terminated
// after one error result.
var errInvalid = errors.New("invalid document")

// serveGroup embeds a group of documents and settles every message: each is
// acked (after its result is stored), terminated or nakked.
func (d *Deployment) serveGroup(msgs []jetstream.Msg) {
	ctx := context.Background()
	docs := make([]*doc, len(msgs))
	var valid []*doc
	for i, msg := range msgs {
		dc := &doc{msg: msg}
		docs[i] = dc
		var err error
		if dc.meta, err = msg.Metadata(); err != nil {
			d.log.Error().Err(err).Msg("message without metadata")
			_ = msg.Term()
			docs[i] = nil
			continue
		}
		dc.id, dc.req, dc.err = d.parseDoc(msg.Data())
		if dc.err == nil {
			valid = append(valid, dc)
		}
	}
	stop := d.keepAlive(valid)
	start := time.Now()
	d.run(ctx, valid)
	d.stats.BusyNanos.Add(int64(time.Since(start)))
	stop()
	for _, dc := range docs {
		if dc != nil {
			d.settle(ctx, dc)
		}
	}
}

// keepAlive tells the server every third of AckWait that docs are still
// being worked on, so that a long group is not redelivered meanwhile.
func (d *Deployment) keepAlive(docs []*doc) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(d.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, dc := range docs {
					_ = dc.msg.InProgress()
				}
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// run embeds the valid documents in one engine call; if that fails, each
// is tried alone, so one poison document does not fail its neighbours.
func (d *Deployment) run(ctx context.Context, docs []*doc) {
	if len(docs) == 0 {
		return
	}
	runner, failure, done := d.use()
	defer done()
	if runner == nil {
		if failure == nil {
			failure = wire.ErrNotDeployed(d.cfg.Endpoint.InferenceID)
		}
		for _, dc := range docs {
			dc.err = failure
		}
		return
	}
	reqs := make([]inferapi.Request, len(docs))
	for i, dc := range docs {
		reqs[i] = dc.req
	}
	bodies, err := runner.Ingest(ctx, reqs)
	if err == nil && len(bodies) != len(docs) {
		err = fmt.Errorf("runner returned %d results for %d documents", len(bodies), len(docs))
	}
	if err == nil {
		for i, dc := range docs {
			dc.body = bodies[i]
		}
		return
	}
	if len(docs) == 1 {
		docs[0].err = err
		return
	}
	for _, dc := range docs {
		var one [][]byte
		if one, dc.err = runner.Ingest(ctx, []inferapi.Request{dc.req}); dc.err == nil {
			dc.body = one[0]
		}
	}
}

// settle publishes a document's result and acks it, or naks it for another
// attempt; an invalid document, or one on its last delivery, gets an error
// result and is terminated.
func (d *Deployment) settle(ctx context.Context, dc *doc) {
	log := d.log.With().Uint64("stream_seq", dc.meta.Sequence.Stream).Uint64("delivered", dc.meta.NumDelivered).Logger()
	body := dc.body
	if dc.err != nil {
		log.Warn().Err(dc.err).Str("document_id", dc.id).Msg("document failed")
		var merr error
		if body, merr = eserror.As(dc.err).MarshalJSON(); merr != nil {
			body = []byte(`{"error":{"type":"status_exception","reason":"internal error"},"status":500}`)
		}
	}
	last := dc.meta.NumDelivered >= uint64(d.cfg.MaxDeliver)
	if dc.err != nil && !errors.Is(dc.err, errInvalid) && !last {
		d.settled(log, dc.msg.NakWithDelay(d.cfg.NakDelay), "nak")
		return
	}
	err := d.publish(ctx, dc, body)
	if errors.Is(err, nats.ErrMaxPayload) && dc.err == nil {
		// The result can never be stored: say so in its place.
		dc.err = fmt.Errorf("%w: %w", errInvalid, eserror.New(http.StatusRequestEntityTooLarge, eserror.TypeContentTooLong,
			"the result of [%d] bytes is larger than the largest message the NATS server accepts [%d bytes]", len(body), d.cfg.NC.MaxPayload()))
		log.Warn().Err(dc.err).Str("document_id", dc.id).Msg("document failed")
		body, _ = eserror.As(dc.err).MarshalJSON()
		err = d.publish(ctx, dc, body)
	}
	if err != nil {
		// Without a result the document is not done: try again later. On
		// the last delivery the server delivers no more and the document
		// stays in the stream for an operator to see.
		log.Error().Err(err).Msg("publish result")
		d.settled(log, dc.msg.NakWithDelay(d.cfg.NakDelay), "nak")
		return
	}
	d.stats.Documents.Add(1)
	d.stats.done(1)
	if dc.err != nil {
		d.stats.Errors.Add(1)
		d.settled(log, dc.msg.TermWithReason(dc.err.Error()), "term")
		return
	}
	d.settled(log, dc.msg.DoubleAck(ctx), "ack")
}

func (d *Deployment) settled(log zerolog.Logger, err error, op string) {
	if err != nil {
		log.Error().Err(err).Str("op", op).Msg("settle message")
	}
}

// parseDoc cuts the document id out of a body and parses the rest; the
// error wraps errInvalid.
func (d *Deployment) parseDoc(data []byte) (string, inferapi.Request, error) {
	id, rest, err := wire.CutID(data)
	if err != nil {
		return id, inferapi.Request{}, fmt.Errorf("%w: %w", errInvalid, err)
	}
	req, err := d.parse(rest)
	if err == nil && id == "" {
		err = eserror.Validation(eserror.TypeActionRequestValidation, "Field [id] cannot be null")
	}
	if err != nil {
		return id, req, fmt.Errorf("%w: %w", errInvalid, err)
	}
	return id, req, nil
}

// publish sends a document's result and waits for the stream to store it.
func (d *Deployment) publish(ctx context.Context, dc *doc, body []byte) error {
	reqID := dc.msg.Headers().Get(jetstream.MsgIDHeader)
	if reqID == "" {
		reqID = strconv.FormatUint(dc.meta.Sequence.Stream, 10)
	}
	out := nats.NewMsg(wire.ResultsSubject(d.token))
	out.Header.Set(wire.HeaderDocumentID, dc.id)
	out.Header.Set(jetstream.MsgIDHeader, reqID+"-result")
	out.Data = body
	pctx, cancel := context.WithTimeout(ctx, d.cfg.AckWait)
	defer cancel()
	_, err := d.cfg.JS.PublishMsg(pctx, out)
	return err
}
