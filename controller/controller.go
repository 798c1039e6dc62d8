// Package controller is the one controller of a jetinfer deployment: the
// worker that holds the controller lease decides, every interval, how many
// allocations each endpoint gets (its num_allocations, or what the adaptive
// scaler makes of its load) and on which nodes they run, and writes that
// plan for the workers to follow. It also makes sure every endpoint has its
// durable consumer, so that documents queue even while no allocation runs.
package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/cluster"
	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/metrics"
	"github.com/jetinfer/jetinfer/wire"
)

// Defaults of Config.
const (
	DefaultInterval         = time.Second
	DefaultScaleToZeroAfter = 15 * time.Minute
	DefaultCooldown         = time.Minute
	DefaultDrainTime        = 10 * time.Second
)

// Config configures a Controller.
type Config struct {
	NC          *nats.Conn
	JS          jetstream.JetStream
	Endpoints   *config.Store
	Deployments *config.DeploymentStore
	Registry    *cluster.Registry
	Plans       *cluster.Plans
	Lease       *cluster.Lease
	// Interval paces leadership and planning; 0 means DefaultInterval.
	Interval time.Duration
	// Scaling carries ScaleToZeroAfter, Cooldown and DrainTime for every
	// adaptive endpoint (Min and Max come from each endpoint); zero values
	// take the defaults.
	Scaling ScalerConfig
	// Queue is what the streams and consumers of the endpoints are created with.
	Queue wire.QueueConfig
	Log   zerolog.Logger
}

// Controller runs for as long as its worker does; it acts only while it
// holds the lease.
type Controller struct {
	cfg    Config
	log    zerolog.Logger
	leader atomic.Bool

	// Leader-only state, touched by Run's goroutine alone.
	scalers  map[string]*Scaler
	counters map[string]map[string]cluster.DeploymentStats // inference id → node → last counters
	ensured  map[string]uint64                             // consumers created, by inference id and revision
	demand   chan demand
	activity map[string]activity // adaptive endpoints', by inference id
	// backlogs are the documents queued per endpoint at the last sweep
	// (swept then), for endpoints with no allocation: one listing of every
	// request stream every sweepEvery, not a request per endpoint per
	// interval. Between sweeps, listening is a subscription to the ingest
	// subject of each endpoint at zero: a document published to one is its
	// demand, at once.
	backlogs  map[string]uint64
	swept     time.Time
	listening map[string]*nats.Subscription
	// unlooked are the endpoints listened to whose queue is still to be
	// looked at (see lookAtQueues), true once a look failed.
	unlooked map[string]bool
	// asleep are the units at zero with nothing to do, by plan key, and
	// awake the others: between full passes reconcile visits only these
	// (see reconcile). listen are the ingest subjects' endpoints listened
	// to: those of the units at zero with nothing to do (asleep, or awake
	// until their zero plan is written); dormant is a plan's set of the
	// units found so. All are kept between intervals, so that a thousand
	// endpoints do not make a thousand entries of garbage every second.
	asleep  map[string]unit
	awake   []unit
	listen  map[string]bool
	dormant map[string]cluster.Plan
	// attached are the endpoints attached to each trained model
	// deployment, and deploymentOf the other way round, as of the last
	// full pass; generations are the mirrors' then.
	attached     map[string][]string
	deploymentOf map[string]string
	generations  [2]uint64
	// ensuredAll: every endpoint's streams were ensured at the last full
	// pass; unsettled: something only a full pass retries failed (a plan's
	// removal, a subscription). Either makes the next pass a full one.
	ensuredAll, unsettled bool
	// plans are the plans this controller last wrote (it is their only
	// writer), read from the bucket when it is elected.
	plans map[string]cluster.Plan

	// defs, deps and nodes are kept by Run's watches, leader or not: the
	// endpoint definitions, the trained model deployments, the registry.
	defs     *mirror[config.Entry]
	deps     *mirror[config.DeploymentEntry]
	nodes    *cluster.LiveNodes
	lastTick time.Time
	kick     chan struct{}

	// planned is a copy of plans for the metrics, replaced when a plan is
	// written; planDuration observes each plan's making.
	planned      atomic.Pointer[map[string]cluster.Plan]
	planDuration prometheus.Histogram
	// queues are the endpoints' queues as last looked at (an allocated
	// endpoint's consumer each interval, the others' streams at each
	// sweep), for the metrics.
	queueMu sync.Mutex
	queues  map[string]queueDepth
}

// queueDepth is an endpoint's documents waiting, and in workers' hands.
type queueDepth struct {
	pending, unacknowledged uint64
}

// activity is what the controller last saw of an adaptive endpoint's work.
type activity struct {
	// lastUsed is when it last had work, or a request waited for it.
	lastUsed time.Time
	// busy: its last measured interval finished work or ended with some
	// queued; queued: it ended with documents or requests waiting.
	busy, queued bool
}

// demand is a request that found no allocation of an endpoint; reply is
// the requester's inbox for the verdict ("" when it only announces).
type demand struct {
	id, reply string
}

// New checks cfg and fills in its defaults.
func New(cfg Config) (*Controller, error) {
	if cfg.NC == nil || cfg.JS == nil || cfg.Endpoints == nil || cfg.Deployments == nil || cfg.Registry == nil || cfg.Plans == nil || cfg.Lease == nil {
		return nil, errors.New("controller: NATS, endpoint store, registry, plans and lease are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Scaling.ScaleToZeroAfter <= 0 {
		cfg.Scaling.ScaleToZeroAfter = DefaultScaleToZeroAfter
	}
	if cfg.Scaling.Cooldown <= 0 {
		cfg.Scaling.Cooldown = DefaultCooldown
	}
	if cfg.Scaling.DrainTime <= 0 {
		cfg.Scaling.DrainTime = DefaultDrainTime
	}
	return &Controller{cfg: cfg, log: cfg.Log.With().Str("component", "controller").Logger(),
		defs: newMirror[config.Entry](), deps: newMirror[config.DeploymentEntry](), nodes: cfg.Registry.Live(),
		planDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: metrics.Namespace, Name: "controller_plan_duration_seconds",
			Help: "Time the controller took to make and write one plan.", Buckets: metrics.DurationBuckets}),
	}, nil
}

// Leader reports whether this controller holds the lease.
func (c *Controller) Leader() bool { return c.leader.Load() }

// Run contends for the lease and, while it holds it, plans every interval,
// until ctx ends; then it gives the lease up so that another worker takes
// over at once.
func (c *Controller) Run(ctx context.Context) {
	tick := time.NewTicker(c.cfg.Interval)
	defer tick.Stop()
	// A definition stored or changed, or a request waiting for an
	// allocation, is planned for at once rather than at the next tick.
	c.kick = make(chan struct{}, 1)
	var watch sync.WaitGroup
	defer watch.Wait()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch.Add(3)
	go func() {
		defer watch.Done()
		c.cfg.Endpoints.Watch(watchCtx, func(ch config.Change) {
			c.defs.apply(ch.ID, ch.Revision, ch.Deleted, ch.Entry)
			c.poke()
		})
	}()
	go func() {
		defer watch.Done()
		c.cfg.Deployments.Watch(watchCtx, func(ch config.DeploymentChange) {
			c.deps.apply(ch.ID, ch.Revision, ch.Deleted, ch.DeploymentEntry)
			c.poke()
		})
	}()
	go func() {
		defer watch.Done()
		c.nodes.Keep(watchCtx)
	}()
	var sub *nats.Subscription
	stepDown := func() {
		if sub != nil {
			_ = sub.Unsubscribe()
			sub = nil
		}
		c.listenTo(nil, false)
		c.leader.Store(false)
	}
	defer func() {
		if c.leader.Load() {
			if err := c.cfg.Lease.Release(context.WithoutCancel(ctx)); err != nil {
				c.log.Warn().Err(err).Msg("release controller lease")
			}
		}
		stepDown()
	}()
	var renewed time.Time
	for {
		opCtx, cancel := context.WithTimeout(ctx, 2*c.cfg.Interval)
		if !c.leader.Load() {
			if err := c.cfg.Lease.Acquire(opCtx); err == nil {
				renewed = time.Now()
				c.becomeLeader()
				var err error
				ch := c.demand // a late callback of an earlier term keeps its own
				if sub, err = c.cfg.NC.Subscribe(wire.DemandSubject("*"), func(msg *nats.Msg) { c.onDemand(ch, msg) }); err != nil {
					c.log.Error().Err(err).Msg("subscribe to demand")
				}
			} else if !errors.Is(err, cluster.ErrLeaseHeld) && ctx.Err() == nil {
				c.log.Warn().Err(err).Msg("acquire controller lease")
			}
		} else if err := c.cfg.Lease.Renew(opCtx); err == nil {
			renewed = time.Now()
		} else if errors.Is(err, cluster.ErrLeaseHeld) || time.Since(renewed) >= c.cfg.Lease.TTL()-c.cfg.Interval {
			// Lost, or about to expire unrenewed: another worker may hold it.
			if ctx.Err() == nil {
				c.log.Warn().Err(err).Msg("controller lease lost")
			}
			stepDown()
		} else if ctx.Err() == nil {
			// A passing error: the key still names this node, and stepping
			// down now would leave nobody planning until it expires.
			c.log.Warn().Err(err).Msg("renew controller lease; retrying")
		}
		if c.leader.Load() {
			start := time.Now()
			if err := c.reconcile(opCtx); err != nil && ctx.Err() == nil {
				c.log.Warn().Err(err).Msg("plan")
			}
			c.planDuration.Observe(time.Since(start).Seconds())
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-c.kick:
		}
	}
}

// finite keeps a plan writable: JSON has no NaN or infinities.
func finite(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	return x
}

func (c *Controller) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Controller) becomeLeader() {
	c.scalers = map[string]*Scaler{}
	c.counters = map[string]map[string]cluster.DeploymentStats{}
	c.ensured = map[string]uint64{}
	c.demand = make(chan demand, 1024)
	c.activity = map[string]activity{}
	c.plans = nil
	c.backlogs, c.swept = nil, time.Time{}
	c.lastTick = time.Time{}
	c.asleep, c.awake, c.listen, c.dormant = map[string]unit{}, nil, map[string]bool{}, map[string]cluster.Plan{}
	c.attached, c.deploymentOf = map[string][]string{}, map[string]string{}
	c.ensuredAll = false
	c.leader.Store(true)
	c.log.Info().Msg("controller elected")
}

// onDemand hears a request that found no allocation.
func (c *Controller) onDemand(ch chan<- demand, msg *nats.Msg) {
	select {
	case ch <- demand{id: wire.DemandInferenceID(msg.Subject), reply: msg.Reply}:
		c.poke()
	default:
	}
}

// unit is what allocations are planned for: an endpoint of its own, or a
// trained model deployment, which the endpoints attached to it share. ep
// points into the mirror's entries, shared until the next change: a
// thousand definitions are not copied every interval.
type unit struct {
	ep       *config.Endpoint
	revision uint64
}

// reconcile plans the endpoints and writes what changed.
//
// A full pass visits every endpoint: after a definition changed, at each
// sweep of the queues (every sweepEvery, and the first plan of a newly
// elected controller), while streams are left to ensure and after a failure
// only a full pass retries (a plan's removal, a subscription). Between full
// passes only the awake endpoints are visited, and those asleep that
// demand wakes (a request, or a document published to one listened to):
// nothing else can change an asleep endpoint's plan, and a thousand of
// them then cost nothing each interval.
func (c *Controller) reconcile(ctx context.Context) error {
	now := time.Now()
	elapsed := c.cfg.Interval
	if !c.lastTick.IsZero() {
		elapsed = now.Sub(c.lastTick)
	}
	// Planning early (a definition changed) must not feed the scalers a
	// sliver of an interval: they measure on whole ones.
	measure := elapsed >= c.cfg.Interval/2
	if measure {
		c.lastTick = now
	}
	nodes, err := c.nodes.Nodes(ctx)
	if err != nil {
		return fmt.Errorf("nodes: %w", err)
	}
	// swept: this pass lists every queue (listed: and read them all).
	swept, listed := false, false
	if measure && now.Sub(c.swept) >= sweepEvery {
		if c.backlogs, err = wire.Backlogs(ctx, c.cfg.JS); err != nil {
			c.log.Warn().Err(err).Msg("read the endpoints' queues")
		}
		listed = err == nil
		c.queueMu.Lock()
		c.queues = make(map[string]queueDepth, len(c.backlogs))
		for id, n := range c.backlogs {
			c.queues[id] = queueDepth{pending: n}
		}
		c.queueMu.Unlock()
		c.swept, swept = now, true
	}
	if err := c.defs.seed(ctx, c.cfg.Endpoints.List, func(e config.Entry) (string, uint64) { return e.ID, e.Revision }); err != nil {
		return fmt.Errorf("endpoints: %w", err)
	}
	if err := c.deps.seed(ctx, c.cfg.Deployments.List, func(d config.DeploymentEntry) (string, uint64) {
		return d.Deployment.DeploymentID, d.Revision
	}); err != nil {
		return fmt.Errorf("deployments: %w", err)
	}
	if c.plans == nil {
		all, err := c.cfg.Plans.All(ctx)
		if err != nil {
			return fmt.Errorf("plans: %w", err)
		}
		c.plans = all
		c.publishPlans()
	}
	prev := c.plans
	demanded := map[string]bool{}
	var replies []demand
	for more := true; more; {
		select {
		case d := <-c.demand:
			demanded[d.id] = true
			if d.reply != "" {
				replies = append(replies, d)
			}
		default:
			more = false
		}
	}

	caps := make([]NodeCap, 0, len(nodes))
	for _, n := range nodes {
		models := map[string]bool{}
		for _, m := range n.Models {
			models[m] = true
		}
		caps = append(caps, NodeCap{Name: n.Name, Processors: n.Processors, Models: models})
	}
	full := swept || !c.ensuredAll || c.unsettled ||
		c.defs.generation() != c.generations[0] || c.deps.generation() != c.generations[1]
	var units []unit
	if full {
		c.unsettled = false
		units = c.allUnits(ctx)
		clear(c.asleep)
		clear(c.listen)
	} else {
		units = c.wokenUnits(demanded)
	}
	c.awake = c.awake[:0]
	var wants []Want
	dormant := c.dormant
	clear(dormant)
	listenChanged := full
	scalerStats := map[string]*cluster.ScalerStats{}
	defer func() {
		if listenChanged {
			c.listenTo(c.listen, listed)
		}
		c.lookAtQueues(ctx)
	}()
	for _, u := range units {
		ep := u.ep
		w := Want{InferenceID: ep.InferenceID, Revision: u.revision, ModelID: ep.ServiceSettings.ModelID, Threads: ep.ServiceSettings.NumThreads}
		// The endpoints attached to a deployment bring it their load and
		// their requests' demand.
		attached := c.attached[ep.InferenceID]
		demand, queued := demanded[ep.InferenceID], c.backlogs[ep.InferenceID] > 0
		for _, id := range attached {
			demand, queued = demand || demanded[id], queued || c.backlogs[id] > 0
		}
		// The ingest subjects listened to are those of the endpoints
		// asleep; an awake one is served by its consumer.
		listened := ep.InferenceID
		if ep.ServiceSettings.DeploymentID != "" {
			listened = "" // a deployment has no subject of its own
		}
		if n := ep.ServiceSettings.NumAllocations; n != nil {
			w.Target, w.Reclaim, w.Held = *n, true, *n
			delete(c.scalers, ep.InferenceID)
		} else {
			s := c.scaler(ep, prev)
			w.Target = s.Current()
			act := c.activity[ep.InferenceID]
			// An endpoint at zero that nothing asks for (no request, no
			// document at the last sweep, nothing running from an earlier
			// plan) and whose minimum is zero has nothing to measure or
			// place: it sleeps.
			if p, ok := prev[ep.InferenceID]; w.Target == 0 && s.Min() == 0 && !demand && !queued && !act.queued && len(p.Nodes) == 0 {
				if !ok || p.Revision != u.revision || p.Target != 0 || p.Pending != 0 {
					p = cluster.Plan{InferenceID: ep.InferenceID, Revision: u.revision, Nodes: map[string]int{}}
				}
				dormant[ep.InferenceID] = p
				c.asleep[ep.InferenceID] = u
				if listened != "" {
					c.listen[listened] = true
				}
				for _, id := range attached {
					c.listen[id] = true
				}
				listenChanged = true
				continue
			}
			if measure || demand && w.Target == 0 {
				ids := append([]string{ep.InferenceID}, attached...)
				sample := c.sample(ctx, ids, nodes, elapsed, demand, demand || prev[ep.InferenceID].Target > 0)
				act.busy, act.queued = sample.Completed > 0 || sample.Backlog > 0, sample.Backlog > 0
				if act.busy {
					act.lastUsed = now
				}
				w.Target = s.Observe(now, sample)
			}
			if demand {
				act.lastUsed = now
			}
			c.activity[ep.InferenceID] = act
			rate, t, backlog, needed := s.Stats()
			scalerStats[ep.InferenceID] = &cluster.ScalerStats{RequestRate: finite(rate), InferenceTimeSec: finite(t), Backlog: backlog, Needed: needed}
			// Work waiting (a request, or queued documents) may reclaim an
			// idle endpoint's allocation; without any, an endpoint whose
			// minimum is 0 does not wait for a processor: it goes to zero.
			wanted := demand || act.queued
			elastic := s.Min() == 0
			w.Held = s.Min()
			w.Elastic = elastic && !wanted
			w.Reclaim = wanted
			w.Idle = elastic && !wanted && !act.busy
			w.LastUsed = act.lastUsed
		}
		c.awake = append(c.awake, u)
		for _, id := range append([]string{listened}, attached...) {
			if c.listen[id] {
				delete(c.listen, id)
				listenChanged = true
			}
		}
		wants = append(wants, w)
	}
	if full {
		c.forgetDeleted()
	}

	plans := Place(wants, caps, prev)
	// An adaptive endpoint planned below its scaler's count (it started at
	// zero, or another reclaimed an idle allocation) continues from there.
	for id, p := range plans {
		if s, ok := c.scalers[id]; ok && p.Target < s.Current() {
			s.Set(p.Target)
		}
	}
	defer c.answer(replies, plans)
	var errs []error
	// c.plans (prev) follows what is written, in place.
	changed := false
	defer func() {
		if changed {
			c.publishPlans()
		}
	}()
	write := func(id string, p cluster.Plan) error {
		p.Scaler = scalerStats[id]
		old, ok := prev[id]
		// The scaler's estimates are refreshed at most every ten
		// intervals, and only when they moved: an idle endpoint's plan is
		// not rewritten (and sent to every worker) for nothing.
		if ok && old.Same(p) && (p.Scaler == nil || now.Sub(old.Updated) < 10*c.cfg.Interval || old.Scaler.Close(*p.Scaler)) {
			return nil
		}
		if !ok || !old.Same(p) {
			c.log.Info().Str("inference_id", id).Int("target", p.Target).Interface("nodes", p.Nodes).Int("pending", p.Pending).Msg("allocations planned")
		}
		written, err := c.cfg.Plans.Put(ctx, p)
		if err == nil {
			prev[id] = written
			changed = true
		}
		errs = append(errs, err)
		return err
	}
	for id, p := range plans {
		_ = write(id, p) // in errs; tried again next interval
	}
	for id, p := range dormant {
		if write(id, p) != nil {
			// Asleep, it would not be visited again until the next full
			// pass: it stays awake until its plan is written.
			c.awake = append(c.awake, c.asleep[id])
			delete(c.asleep, id)
		}
	}
	if !full {
		// Only a full pass sees an endpoint deleted.
		return errors.Join(errs...)
	}
	for id := range prev {
		_, placed := plans[id]
		if _, zero := dormant[id]; placed || zero {
			continue
		}
		if err := c.cfg.Plans.Remove(ctx, id); err != nil {
			errs = append(errs, err)
			c.unsettled = true
			continue
		}
		delete(prev, id)
		changed = true
	}
	return errors.Join(errs...)
}

// allUnits is every unit defined, for a full pass; it ensures the streams
// of the endpoints defined or changed since (at most maxEnsurePerPlan, in
// half of the plan's time) and records which endpoints are attached to
// which deployment.
func (c *Controller) allUnits(ctx context.Context) []unit {
	entries, defsGen := c.defs.all()
	deployments, depsGen := c.deps.all()
	c.generations = [2]uint64{defsGen, depsGen}
	units := make([]unit, 0, len(entries)+len(deployments))
	// A loaded server may take longer to create streams than a plan lasts: ensuring gets half of the plan's time,
	// so that the plans are still written, and what it leaves the next plans ensure.
	ensureCtx := ctx
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ensureCtx, cancel = context.WithTimeout(ctx, time.Until(deadline)/2)
		defer cancel()
	}
	ensuring := 0
	c.ensuredAll = true
	clear(c.attached)
	clear(c.deploymentOf)
	for i := range entries {
		e := &entries[i]
		if e.Err != nil {
			continue
		}
		ep := &e.Endpoint
		if c.ensured[ep.InferenceID] != e.Revision {
			if ensuring == maxEnsurePerPlan || ensureCtx.Err() != nil {
				c.ensuredAll = false
			} else if _, err := wire.EnsureEndpoint(ensureCtx, c.cfg.JS, ep.InferenceID, c.cfg.Queue); err != nil {
				ensuring++
				c.ensuredAll = false
				if ensureCtx.Err() == nil { // out of time is not the endpoint's failure
					c.log.Warn().Err(err).Str("inference_id", ep.InferenceID).Msg("ensure endpoint streams")
				}
			} else {
				ensuring++
				c.ensured[ep.InferenceID] = e.Revision
			}
		}
		// One attached to a deployment runs on that deployment's
		// allocations, and its load counts there.
		if d := ep.ServiceSettings.DeploymentID; d != "" {
			c.attached[d] = append(c.attached[d], ep.InferenceID)
			c.deploymentOf[ep.InferenceID] = d
			continue
		}
		units = append(units, unit{ep, e.Revision})
	}
	for i := range deployments {
		ep := deployments[i].Deployment.Endpoint()
		units = append(units, unit{&ep, deployments[i].Revision})
	}
	return units
}

// wokenUnits is, between full passes, the units awake at the last pass and
// those asleep that demand woke.
func (c *Controller) wokenUnits(demanded map[string]bool) []unit {
	units := slices.Clone(c.awake)
	for id := range demanded {
		if d, ok := c.deploymentOf[id]; ok {
			id = d
		}
		if u, ok := c.asleep[id]; ok {
			delete(c.asleep, id)
			units = append(units, u)
		}
	}
	return units
}

// forgetDeleted drops, after a full pass, what the controller kept of
// endpoints no longer defined.
func (c *Controller) forgetDeleted() {
	awake := make(map[string]bool, len(c.awake))
	for _, u := range c.awake {
		awake[u.ep.InferenceID] = true
	}
	gone := func(id string) bool {
		_, asleep := c.asleep[id]
		_, attached := c.deploymentOf[id]
		return !asleep && !awake[id] && !attached
	}
	maps.DeleteFunc(c.scalers, func(id string, _ *Scaler) bool { return gone(id) })
	maps.DeleteFunc(c.counters, func(id string, _ map[string]cluster.DeploymentStats) bool { return gone(id) })
	maps.DeleteFunc(c.ensured, func(id string, _ uint64) bool { return gone(id) })
	maps.DeleteFunc(c.activity, func(id string, _ activity) bool { return gone(id) })
	c.queueMu.Lock()
	maps.DeleteFunc(c.queues, func(id string, _ queueDepth) bool { return gone(id) })
	c.queueMu.Unlock()
}

// answer tells each request that waits for an allocation whether one can
// come: when none is placed and none could ever be (fixed allocations hold
// the processors), the requester gets Elasticsearch's 429 at once instead
// of waiting out its timeout. Room held by busy adaptive endpoints comes
// free when they go idle: those requests wait.
func (c *Controller) answer(replies []demand, plans map[string]cluster.Plan) {
	for _, d := range replies {
		key := d.id
		if k, ok := c.deploymentOf[key]; ok {
			key = k
		}
		status, body := http.StatusOK, []byte("{}")
		if p, ok := plans[key]; ok && sum(p.Nodes) == 0 && p.NeverFits {
			err := eserror.New(http.StatusTooManyRequests, eserror.TypeStatus,
				"Could not start deployment because no ML nodes with sufficient capacity were found")
			err.Cause = eserror.New(http.StatusInternalServerError, eserror.TypeIllegalState,
				"Could not start deployment because no suitable nodes were found, allocation explanation [%s]", p.Reason)
			status = http.StatusTooManyRequests
			body, _ = err.MarshalJSON()
		}
		if err := wire.Reply(c.cfg.NC, d.reply, status, body, false); err != nil {
			c.log.Warn().Err(err).Str("inference_id", d.id).Msg("answer a request waiting for an allocation")
		}
	}
}

// scaler returns the endpoint's scaler, creating it at the allocations
// the plan already gives it or, for a new endpoint, at its start count:
// the minimum, at least one, except for the reserved endpoints, which
// deploy on first use.
func (c *Controller) scaler(ep *config.Endpoint, prev map[string]cluster.Plan) *Scaler {
	a := ep.ServiceSettings.AdaptiveAllocations
	minimum, maximum := 0, 0
	if a != nil && a.Min != nil {
		minimum = *a.Min
	}
	if a != nil && a.Max != nil {
		maximum = *a.Max
	}
	s, ok := c.scalers[ep.InferenceID]
	if !ok {
		start := ep.ServiceSettings.InitialAllocations()
		if config.IsDefaultID(ep.InferenceID) {
			start = minimum
		}
		if p, planned := prev[ep.InferenceID]; planned {
			start = p.Target
		}
		cfg := c.cfg.Scaling
		cfg.Min, cfg.Max = minimum, maximum
		s = NewScaler(cfg, start)
		c.scalers[ep.InferenceID] = s
	}
	s.SetBounds(minimum, maximum)
	return s
}

// sample measures an endpoint over the last interval: the work its nodes
// finished (per-node counter deltas, so a restarted node counts from
// zero), the documents queued or in progress, the requests waiting. The
// queue of an active endpoint (allocated, or asked for) is read now; that
// of one at zero comes from the last sweep.
func (c *Controller) sample(ctx context.Context, ids []string, nodes []cluster.Node, elapsed time.Duration, demand, active bool) Sample {
	s := Sample{Elapsed: elapsed, Demand: demand}
	for _, id := range ids {
		c.sampleOne(ctx, &s, id, nodes, active)
	}
	return s
}

// maxEnsurePerPlan bounds the endpoints whose streams one plan ensures: a
// controller elected over a thousand endpoints spreads that over a few
// intervals instead of overrunning the first one's deadline (the workers
// ensure their endpoints' streams too).
const maxEnsurePerPlan = 100

// sweepEvery paces the listing of every endpoint's queue: it finds the
// documents published while nobody listened (before this controller was
// elected, or as an endpoint went to zero).
const sweepEvery = time.Minute

// listenTo makes the ingest subjects listened to those of ids, the
// endpoints at zero (nil: none). Each document published to one is demand
// for it; once it runs, its documents go to its consumer alone. A document
// may have come between the endpoint's last allocation and the
// subscription: each endpoint newly listened to is left for
// lookAtQueues. A pass that listed every queue (listed) did so for all
// those listened to before it.
func (c *Controller) listenTo(ids map[string]bool, listed bool) {
	for id, sub := range c.listening {
		if !ids[id] {
			_ = sub.Unsubscribe()
			delete(c.listening, id)
			delete(c.unlooked, id)
		}
	}
	if c.listening == nil {
		c.listening, c.unlooked = map[string]*nats.Subscription{}, map[string]bool{}
	}
	if listed {
		clear(c.unlooked) // their queues were listed after they were listened to
	}
	ch := c.demand // becomeLeader replaces it; a late callback keeps this one
	for id := range ids {
		if c.listening[id] != nil {
			continue
		}
		sub, err := c.cfg.NC.Subscribe(wire.IngestSubject(config.Token(id)), func(*nats.Msg) { c.wake(ch, id) })
		if err != nil {
			c.unsettled = true // tried again by the next pass, a full one
			c.log.Warn().Err(err).Str("inference_id", id).Msg("listen for documents at zero")
			continue
		}
		c.listening[id] = sub
		c.unlooked[id] = false
	}
}

// lookAtQueues looks at the queues of the endpoints newly listened to
// (after their subscription), at most maxLookPerPlan per plan: one that
// holds documents is woken. Those left over, and those whose look failed,
// are looked at by the next plans, so that no document published before
// the subscription waits for the next sweep.
func (c *Controller) lookAtQueues(ctx context.Context) {
	looked := 0
	for id, failed := range c.unlooked {
		if looked == maxLookPerPlan {
			return
		}
		looked++
		n, err := wire.Queued(ctx, c.cfg.JS, id)
		if ctx.Err() != nil {
			return // the plan's time is up: the next one looks
		}
		if err != nil {
			if !failed {
				c.unlooked[id] = true
				c.log.Warn().Err(err).Str("inference_id", id).Msg("look at the queue of an endpoint at zero; looking again at the next plans")
			}
			continue
		}
		if n == 0 || c.wake(c.demand, id) {
			delete(c.unlooked, id)
		}
	}
}

// wake hands the controller demand for an endpoint at zero; false when
// its demand channel is full.
func (c *Controller) wake(ch chan<- demand, id string) bool {
	select {
	case ch <- demand{id: id}:
		c.poke()
		return true
	default:
		return false
	}
}

// maxLookPerPlan bounds the queues lookAtQueues looks at in one plan.
const maxLookPerPlan = 20

// sampleOne adds one endpoint's work and backlog to s.
func (c *Controller) sampleOne(ctx context.Context, s *Sample, id string, nodes []cluster.Node, active bool) {
	prev := c.counters[id]
	next := map[string]cluster.DeploymentStats{}
	for _, n := range nodes {
		d, ok := n.Deployments[id]
		if !ok {
			continue
		}
		next[n.Name] = d
		p := prev[n.Name]
		done := d.Documents + d.Inferences - p.Documents - p.Inferences
		busy := d.BusyNanos - p.BusyNanos
		if done < 0 || busy < 0 { // the node restarted its counters
			done, busy = d.Documents+d.Inferences, d.BusyNanos
		}
		s.Completed += done
		s.Busy += time.Duration(busy)
		s.Backlog += int64(d.Waiting)
	}
	c.counters[id] = next
	if active {
		if info, err := wire.Info(ctx, c.cfg.JS, id); err == nil {
			s.Backlog += int64(info.NumPending) + int64(info.NumAckPending)
			c.setQueue(id, queueDepth{pending: info.NumPending, unacknowledged: uint64(info.NumAckPending)})
		}
	} else if n := c.backlogs[id]; n > 0 {
		// Used once: the endpoint scales up and is measured as active.
		s.Backlog += int64(n)
		delete(c.backlogs, id)
	}
}
