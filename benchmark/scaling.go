package benchmark

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/cluster"
	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/node"
	"github.com/jetinfer/jetinfer/wire"
)

// ScalingEndpoint is the adaptive endpoint the scaling demo loads.
const ScalingEndpoint = "bench-adaptive"

// ScalingProfile is the scaling demo's load, and the node settings it runs
// under. Zero fields take DefaultScalingProfile's values.
type ScalingProfile struct {
	// Idle precedes the burst.
	Idle time.Duration
	// BurstDocs are published all at once.
	BurstDocs int
	// Steady is how long SteadyRate documents a second follow the burst.
	Steady     time.Duration
	SteadyRate float64
	// DocWords, when set, makes every document that many words long;
	// 0 takes the mixed-length corpus.
	DocWords int
	// ZeroWait bounds the final idle: after the last publish, the wait for
	// every result and for the endpoint to drop to no allocation.
	ZeroWait time.Duration
	// MaxAllocations is the endpoint's max_number_of_allocations.
	MaxAllocations int
	// Heartbeat, ScaleToZeroAfter, Cooldown (ScaleDownCooldown) and
	// Processors are the node's settings.
	Heartbeat        time.Duration
	ScaleToZeroAfter time.Duration
	Cooldown         time.Duration
	Processors       int
}

// DefaultScalingProfile is about two minutes of load on the MiniLM-sized
// model: a burst of about 20 s of one allocation's work, then a trickle
// that one allocation handles with some room, then idle until zero.
func DefaultScalingProfile() ScalingProfile {
	return ScalingProfile{
		Idle:             10 * time.Second,
		BurstDocs:        400,
		Steady:           40 * time.Second,
		SteadyRate:       12,
		ZeroWait:         90 * time.Second,
		MaxAllocations:   4,
		Heartbeat:        time.Second,
		ScaleToZeroAfter: 20 * time.Second,
		Cooldown:         10 * time.Second,
		Processors:       4,
	}
}

func (p ScalingProfile) withDefaults() ScalingProfile {
	d := DefaultScalingProfile()
	set := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	set(&p.Idle, d.Idle)
	set(&p.Steady, d.Steady)
	set(&p.ZeroWait, d.ZeroWait)
	set(&p.Heartbeat, d.Heartbeat)
	set(&p.ScaleToZeroAfter, d.ScaleToZeroAfter)
	set(&p.Cooldown, d.Cooldown)
	if p.BurstDocs == 0 {
		p.BurstDocs = d.BurstDocs
	}
	if p.SteadyRate == 0 {
		p.SteadyRate = d.SteadyRate
	}
	if p.MaxAllocations == 0 {
		p.MaxAllocations = d.MaxAllocations
	}
	if p.Processors == 0 {
		p.Processors = d.Processors
	}
	return p
}

// Phases of the profile, as the table names them.
const (
	phaseIdle   = "idle"
	phaseBurst  = "burst"
	phaseSteady = "steady"
	phaseTail   = "idle (after)"
)

// ScalingRow is one second of the demo.
type ScalingRow struct {
	// T is the end of the second, in seconds since the profile started.
	T     int
	Phase string
	// Arrivals are the documents published in the second, Results the
	// results received in it.
	Arrivals, Results int
	// Backlog is the documents pending or unacknowledged at T.
	Backlog int64
	// Target is the allocations the plan gives the endpoint at T, Running
	// those the node last reported running.
	Target, Running int
}

// TargetChange is the plan's target changing, At after the profile's start
// (the first is the plan found at the start).
type TargetChange struct {
	At     time.Duration
	Target int
}

// ScalingResult is what Scaling recorded. Times are offsets from the start
// of the profile; the negative ones did not happen.
type ScalingResult struct {
	Profile ScalingProfile
	// Model names the dense model served.
	Model string
	Rows  []ScalingRow
	// Targets are every change of the plan's target, as they were seen.
	Targets []TargetChange
	// Published documents, and the results received for them.
	Published, Results int
	// BurstAt is the burst's first publish; SteadyAt and SteadyEnd bound
	// the steady load.
	BurstAt, SteadyAt, SteadyEnd time.Duration
	// Reaction runs from the burst's first publish to the plan's target
	// first above 1.
	Reaction    time.Duration
	MaxTarget   int
	BacklogPeak int64
	// BacklogPeakAt is the T of the row with the peak.
	BacklogPeakAt int
	// BurstDone is when the burst's last result arrived, LastResult when
	// any last did, and Zero when the target next fell to 0.
	BurstDone, LastResult, Zero time.Duration
}

// Drain is the time from the burst's first publish to its last result.
func (r ScalingResult) Drain() time.Duration {
	if r.BurstDone < 0 {
		return -1
	}
	return r.BurstDone - r.BurstAt
}

// ToZero is the time from the last result to no allocation.
func (r ScalingResult) ToZero() time.Duration {
	if r.Zero < 0 || r.LastResult < 0 {
		return -1
	}
	return r.Zero - r.LastResult
}

// adaptiveBody defines the demo's endpoint: adaptive between 0 and max
// single-threaded allocations, no chunking (a document is one input).
func adaptiveBody(maxAllocations int) []byte {
	return fmt.Appendf(nil, `{"service":"elasticsearch","service_settings":{"model_id":%q,"num_threads":1,"adaptive_allocations":{"enabled":true,"min_number_of_allocations":0,"max_number_of_allocations":%d}},"chunking_settings":{"strategy":"none"}}`,
		config.ModelE5Small, maxAllocations)
}

// Scaling replays a load profile (idle, burst, steady trickle, idle) on an
// adaptive endpoint of an in-process node and records, second by second,
// the documents arriving, the backlog, the allocations planned and
// running, and the results; it watches the plan to time the controller's
// reaction. It returns what it recorded even with an error, when it has
// rows.
func Scaling(ctx context.Context, cfg Config, p ScalingProfile) (r ScalingResult, err error) {
	cfg = cfg.withDefaults()
	p = p.withDefaults()
	r = ScalingResult{Profile: p, Model: denseName(cfg), Reaction: -1, BurstDone: -1, LastResult: -1, Zero: -1}
	var nodeName string
	b, err := startNode(ctx, cfg, func(sc *node.Config) {
		nodeName = sc.NodeName
		sc.Heartbeat = p.Heartbeat
		sc.ScaleToZeroAfter = p.ScaleToZeroAfter
		sc.ScaleDownCooldown = p.Cooldown
		sc.Processors = p.Processors
	})
	if err != nil {
		return r, err
	}
	defer func() { err = errors.Join(err, b.close(ctx)) }()
	// The first deployment imports the model: more than the default 30s.
	if _, err := b.do(ctx, http.MethodPut, "/_inference/text_embedding/"+ScalingEndpoint+"?timeout=5m", adaptiveBody(p.MaxAllocations)); err != nil {
		return r, err
	}

	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()

	results, err := countResults(runCtx, b.js)
	if err != nil {
		return r, err
	}
	defer results.stop()
	// A few documents like the profile's before it: the endpoint has served
	// such documents before, so the scaler knows their inference time (it
	// learns a new one only over several samples), and the idle phase
	// starts from work, not from the model's import.
	if err := warmUp(runCtx, b.js, p, results); err != nil {
		return r, err
	}

	plans, err := cluster.OpenPlans(ctx, b.js, config.StoreConfig{Replicas: 1})
	if err != nil {
		return r, err
	}
	nodes, err := b.js.KeyValue(ctx, cluster.NodesBucket)
	if err != nil {
		return r, fmt.Errorf("bucket %s: %w", cluster.NodesBucket, err)
	}
	texts := scalingTexts(p)
	var docs []scalingDoc
	for i := range p.BurstDocs {
		docs = append(docs, scalingDoc{id: fmt.Sprintf("burst-%d", i), text: texts[i]})
	}
	steadyDocs := int(p.Steady.Seconds() * p.SteadyRate)
	for i := range steadyDocs {
		docs = append(docs, scalingDoc{id: fmt.Sprintf("steady-%d", i), text: texts[p.BurstDocs+i]})
	}

	start := time.Now()
	since := func() time.Duration { return time.Since(start) }
	// The plan is watched rather than polled each second: the reaction is
	// timed to the write, not to the next sample.
	var (
		targetMu sync.Mutex
		target   = -1
		changes  []TargetChange
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		plans.Watch(runCtx, func(c cluster.PlanChange) {
			if c.InferenceID != ScalingEndpoint {
				return
			}
			t := c.Target
			if c.Deleted {
				t = 0
			}
			targetMu.Lock()
			defer targetMu.Unlock()
			if t != target {
				target = t
				changes = append(changes, TargetChange{At: since(), Target: t})
			}
		})
	}()
	currentTarget := func() int {
		targetMu.Lock()
		defer targetMu.Unlock()
		return target
	}

	st := newReplayState()
	pubDone := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Half a second out of step with the samples, so that the burst
		// never straddles two rows.
		if !sleep(runCtx, 500*time.Millisecond) {
			pubDone <- runCtx.Err()
			return
		}
		pubDone <- replay(runCtx, b.js, p, docs, st, since)
	}()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var (
		lastPublished, lastResults int
		pubFinished                bool
		finishedAt                 time.Duration
		backlogErr                 error
		prevPhase                  = phaseIdle
	)
	for t := 1; ; {
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case err := <-pubDone:
			if err != nil {
				return r, err
			}
			pubFinished, finishedAt = true, since()
			continue
		case <-tick.C:
		}
		// A row is named after the phase it began in: the last steady
		// second is steady, though the phase ended within it.
		row := ScalingRow{T: t, Phase: prevPhase, Target: currentTarget()}
		prevPhase = st.phase.Load().(string)
		// The burst takes less than a second: its row is named after it.
		if burstAt := time.Duration(st.burstAt.Load()); burstAt >= 0 && burstAt > time.Duration(t-1)*time.Second {
			row.Phase = phaseBurst
		}
		n := int(st.published.Load())
		row.Arrivals, lastPublished = n-lastPublished, n
		got := results.count()
		row.Results, lastResults = got-lastResults, got
		if backlog, err := scalingBacklog(runCtx, b.js); err == nil {
			row.Backlog = backlog
		} else {
			// One failed read is a gap in the table, not the end of the demo.
			backlogErr, row.Backlog = err, -1
		}
		row.Running = running(runCtx, nodes, nodeName)
		r.Rows = append(r.Rows, row)
		t++
		// The end is the node having stopped its last allocation, a
		// heartbeat after the plan said so.
		if pubFinished && (got >= n && row.Target == 0 && row.Running == 0 && row.Backlog == 0 || since()-finishedAt > p.ZeroWait) {
			break
		}
	}

	r.BurstAt, r.SteadyAt, r.SteadyEnd = time.Duration(st.burstAt.Load()), time.Duration(st.steadyAt.Load()), time.Duration(st.endAt.Load())
	r.Published = int(st.published.Load())
	res := results.summary()
	r.Results = res.count
	if !res.burstDone.IsZero() {
		r.BurstDone = res.burstDone.Sub(start)
	}
	if !res.last.IsZero() {
		r.LastResult = res.last.Sub(start)
	}
	targetMu.Lock()
	r.Targets = append([]TargetChange(nil), changes...)
	targetMu.Unlock()
	for _, c := range r.Targets {
		if c.Target > r.MaxTarget {
			r.MaxTarget = c.Target
		}
		if r.BurstAt >= 0 && r.Reaction < 0 && c.Target > 1 && c.At >= r.BurstAt {
			r.Reaction = c.At - r.BurstAt
		}
		if r.LastResult >= 0 && c.At >= r.LastResult && c.Target == 0 && r.Zero < 0 {
			r.Zero = c.At
		}
	}
	for _, row := range r.Rows {
		if row.Backlog > r.BacklogPeak {
			r.BacklogPeak, r.BacklogPeakAt = row.Backlog, row.T
		}
	}
	switch {
	case res.failed != nil:
		return r, res.failed
	case r.Results < r.Published:
		err := fmt.Errorf("%d of %d results within %s of the last publish", r.Results, r.Published, p.ZeroWait)
		if backlogErr != nil {
			err = fmt.Errorf("%w (and the backlog could not be read: %w)", err, backlogErr)
		}
		return r, err
	}
	return r, nil
}

// denseName describes the dense model a Config serves.
func denseName(cfg Config) string {
	s := denseSynth(cfg)
	if cfg.DenseModel == nil {
		return fmt.Sprintf("MiniLM-L12 / multilingual-e5-small sized (%d layers, hidden %d)", s.Layers, s.Hidden)
	}
	return fmt.Sprintf("small test model (%d layers, hidden %d)", s.Layers, s.Hidden)
}

// scalingTexts are the demo's documents, burst first, then steady.
func scalingTexts(p ScalingProfile) []string {
	n := p.BurstDocs + int(p.Steady.Seconds()*p.SteadyRate)
	if p.DocWords > 0 {
		return Documents(n, p.DocWords, 11)
	}
	return Corpus(n, 11)
}

type scalingDoc struct{ id, text string }

// replayState is what the replay shares with the sampler: documents
// published, the phase, and when the phases began (nanoseconds since the
// start, -1 until then).
type replayState struct {
	published                atomic.Int64
	phase                    atomic.Value
	burstAt, steadyAt, endAt atomic.Int64
}

func newReplayState() *replayState {
	s := &replayState{}
	s.phase.Store(phaseIdle)
	s.burstAt.Store(-1)
	s.steadyAt.Store(-1)
	s.endAt.Store(-1)
	return s
}

// replay publishes docs as the profile says: idle, the burst all at once
// (waiting for the stream to store it), then the rest at the steady rate.
func replay(ctx context.Context, js jetstream.JetStream, p ScalingProfile, docs []scalingDoc, st *replayState, since func() time.Duration) error {
	subject := wire.IngestSubject(config.Token(ScalingEndpoint))
	if !sleep(ctx, p.Idle) {
		return ctx.Err()
	}
	st.burstAt.Store(int64(since()))
	st.phase.Store(phaseBurst)
	burst := docs[:p.BurstDocs]
	futures := make([]jetstream.PubAckFuture, len(burst))
	for i, d := range burst {
		msg, err := ingestMsg(subject, d)
		if err != nil {
			return err
		}
		if futures[i], err = js.PublishMsgAsync(msg); err != nil {
			return fmt.Errorf("publish %s: %w", d.id, err)
		}
		st.published.Add(1)
	}
	if err := awaitAcks(ctx, futures); err != nil {
		return err
	}

	st.steadyAt.Store(int64(since()))
	st.phase.Store(phaseSteady)
	steady := docs[p.BurstDocs:]
	if len(steady) > 0 {
		// Each document at its own time from the start of the phase, so a
		// slow publish does not lower the rate.
		begin := time.Now()
		interval := time.Duration(float64(time.Second) / p.SteadyRate)
		for i, d := range steady {
			if !sleep(ctx, time.Until(begin.Add(time.Duration(i)*interval))) {
				return ctx.Err()
			}
			msg, err := ingestMsg(subject, d)
			if err != nil {
				return err
			}
			st.published.Add(1)
			ack, err := js.PublishMsg(ctx, msg)
			if err != nil {
				return fmt.Errorf("publish %s: %w", d.id, err)
			}
			if ack.Duplicate {
				return fmt.Errorf("publish %s: dropped as a duplicate", d.id)
			}
		}
		// The phase lasts its full length, the last interval included.
		if !sleep(ctx, time.Until(begin.Add(time.Duration(len(steady))*interval))) {
			return ctx.Err()
		}
	}
	st.endAt.Store(int64(since()))
	st.phase.Store(phaseTail)
	return nil
}

// ingestMsg is a document as producers publish it, its id as Nats-Msg-Id.
func ingestMsg(subject string, d scalingDoc) (*nats.Msg, error) {
	data, err := json.Marshal(struct {
		ID        string   `json:"id"`
		Input     []string `json:"input"`
		InputType string   `json:"input_type"`
	}{d.id, []string{d.text}, "ingest"})
	if err != nil {
		return nil, err
	}
	msg := nats.NewMsg(subject)
	msg.Header.Set(nats.MsgIdHdr, d.id)
	msg.Data = data
	return msg, nil
}

// warmPrefix starts the ids of the warm-up documents.
const warmPrefix = "warm-"

// warmUp publishes a few documents and waits for their results.
func warmUp(ctx context.Context, js jetstream.JetStream, p ScalingProfile, results *resultCounter) error {
	const n = 4
	texts := Corpus(n, 12)
	if p.DocWords > 0 {
		texts = Documents(n, p.DocWords, 12)
	}
	subject := wire.IngestSubject(config.Token(ScalingEndpoint))
	for i, text := range texts {
		msg, err := ingestMsg(subject, scalingDoc{id: fmt.Sprintf("%s%d", warmPrefix, i), text: text})
		if err != nil {
			return err
		}
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			return fmt.Errorf("publish warm-up: %w", err)
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for results.summary().warm < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("warm-up: %d of %d results within 2 minutes", results.summary().warm, n)
		}
		if !sleep(ctx, 20*time.Millisecond) {
			return ctx.Err()
		}
	}
	return nil
}

// sleep waits d, or less if ctx ends first; it reports whether it waited.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// scalingBacklog is the endpoint's documents queued or in an allocation's
// hands, as the controller counts them.
func scalingBacklog(ctx context.Context, js jetstream.JetStream) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := wire.Info(ctx, js, ScalingEndpoint)
	if err != nil {
		return 0, fmt.Errorf("endpoint consumer: %w", err)
	}
	return int64(info.NumPending) + int64(info.NumAckPending), nil
}

// running is the allocations the node last announced for the endpoint in
// the node registry (every heartbeat); 0 when it announced none.
func running(ctx context.Context, nodes jetstream.KeyValue, nodeName string) int {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	e, err := nodes.Get(ctx, nodeName)
	if err != nil {
		return 0
	}
	var node cluster.Node
	if json.Unmarshal(e.Value(), &node) != nil {
		return 0
	}
	return node.Deployments[ScalingEndpoint].Allocations
}

// resultCounter counts the endpoint's results as they are stored.
type resultCounter struct {
	cc jetstream.ConsumeContext
	mu sync.Mutex
	s  resultSummary
	// seen keeps a redelivered document's second result from counting.
	seen map[string]bool
}

type resultSummary struct {
	// count leaves out the warm-up documents, counted in warm.
	count, warm     int
	burstDone, last time.Time
	failed          error
}

// countResults reads the endpoint's results from the start of the
// results stream (the node is new: they are all the demo's).
func countResults(ctx context.Context, js jetstream.JetStream) (*resultCounter, error) {
	cons, err := js.OrderedConsumer(ctx, wire.ResultsStream(config.Token(ScalingEndpoint)), jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("results consumer: %w", err)
	}
	c := &resultCounter{seen: map[string]bool{}}
	c.cc, err = cons.Consume(func(msg jetstream.Msg) {
		id := msg.Headers().Get(wire.HeaderDocumentID)
		now := time.Now()
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.seen[id] {
			return
		}
		c.seen[id] = true
		if strings.HasPrefix(id, warmPrefix) {
			c.s.warm++
			return
		}
		if bytes.HasPrefix(msg.Data(), []byte(`{"error"`)) && c.s.failed == nil {
			c.s.failed = fmt.Errorf("document %s failed: %s", id, msg.Data())
		}
		c.s.count++
		c.s.last = now
		if strings.HasPrefix(id, "burst-") {
			c.s.burstDone = now
		}
	})
	if err != nil {
		return nil, fmt.Errorf("consume results: %w", err)
	}
	return c, nil
}

func (c *resultCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s.count
}

func (c *resultCounter) summary() resultSummary {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s
}

func (c *resultCounter) stop() {
	c.cc.Stop()
	<-c.cc.Closed()
}

// WriteScaling prints the demo's seconds as a Markdown table and then its
// summary.
func WriteScaling(w io.Writer, r ScalingResult) {
	fmt.Fprintln(w, "| t (s) | phase | arrivals | backlog | allocations planned | allocations running | results |")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---:|")
	for _, row := range r.Rows {
		backlog := fmt.Sprint(row.Backlog)
		if row.Backlog < 0 {
			backlog = "?"
		}
		fmt.Fprintf(w, "| %d | %s | %d | %s | %d | %d | %d |\n", row.T, row.Phase, row.Arrivals, backlog, row.Target, row.Running, row.Results)
	}
	fmt.Fprintln(w)
	secs := func(d time.Duration) string {
		if d < 0 {
			return "never"
		}
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	// The reaction is often a fraction of a heartbeat.
	secs2 := func(d time.Duration) string {
		if d < 0 {
			return "never"
		}
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	fmt.Fprintf(w, "- documents: %d published, %d results\n", r.Published, r.Results)
	fmt.Fprintf(w, "- reaction to the burst (first publish → planned allocations above 1): %s; at most %d allocations planned\n", secs2(r.Reaction), r.MaxTarget)
	fmt.Fprintf(w, "- backlog peak: %d documents at t = %d s\n", r.BacklogPeak, r.BacklogPeakAt)
	fmt.Fprintf(w, "- burst drained (first publish → its last result): %s\n", secs(r.Drain()))
	fmt.Fprintf(w, "- last result → no allocation: %s (scale to zero after %s idle)\n", secs(r.ToZero()), r.Profile.ScaleToZeroAfter)
	var seq []string
	for _, c := range r.Targets {
		seq = append(seq, fmt.Sprintf("%d (%.1f s)", c.Target, c.At.Seconds()))
	}
	fmt.Fprintf(w, "- planned allocations over time (t of each change): %s\n", strings.Join(seq, " → "))
}
