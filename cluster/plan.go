package cluster

import (
	"context"
	"maps"
	"math"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/kv"
)

// PlanBucket holds the controller's allocation plan, one key per endpoint
// (its token).
const PlanBucket = "inference_plan"

// Plan places one endpoint's allocations on nodes.
type Plan struct {
	InferenceID string `json:"inference_id"`
	// Revision is the endpoint definition's revision the plan was made for.
	Revision uint64 `json:"revision"`
	// Target is the number of allocations the endpoint should have: its
	// num_allocations, or what the adaptive scaler decided.
	Target int `json:"target_allocations"`
	// Nodes maps node names to the allocations they run.
	Nodes map[string]int `json:"nodes"`
	// Pending counts the allocations of Target that fit on no node;
	// Reason says why, as Elasticsearch's assignment reason.
	Pending int    `json:"pending"`
	Reason  string `json:"reason,omitempty"`
	// NeverFits: no node could take a pending allocation even if every
	// allocation that may be reclaimed were: fixed allocations (and
	// adaptive minimums) hold the processors it needs.
	NeverFits bool `json:"never_fits,omitempty"`
	// Scaler holds the adaptive scaler's estimates, when it has some.
	Scaler  *ScalerStats `json:"scaler,omitempty"`
	Updated time.Time    `json:"updated"`
}

// ScalerStats are the adaptive scaler's view of an endpoint's load.
type ScalerStats struct {
	RequestRate      float64 `json:"request_rate"`
	InferenceTimeSec float64 `json:"inference_time_seconds"`
	Backlog          int64   `json:"backlog"`
	Needed           int     `json:"needed_allocations"`
}

// Close reports whether o differs from s by no more than noise: the same
// backlog and allocations needed, rates and times within 10% (or 0.01).
func (s *ScalerStats) Close(o ScalerStats) bool {
	near := func(a, b float64) bool { return math.Abs(a-b) <= max(0.01, 0.1*math.Max(math.Abs(a), math.Abs(b))) }
	return s != nil && s.Backlog == o.Backlog && s.Needed == o.Needed &&
		near(s.RequestRate, o.RequestRate) && near(s.InferenceTimeSec, o.InferenceTimeSec)
}

// Same reports whether two plans place the same allocations for the same
// definition.
func (p Plan) Same(o Plan) bool {
	return p.InferenceID == o.InferenceID && p.Revision == o.Revision && p.Target == o.Target &&
		p.Pending == o.Pending && p.Reason == o.Reason && p.NeverFits == o.NeverFits && maps.Equal(p.Nodes, o.Nodes)
}

// Plans reads and writes the plan bucket.
type Plans struct {
	b *kv.Bucket[Plan]
}

// OpenPlans creates the bucket if needed.
func OpenPlans(ctx context.Context, js jetstream.JetStream, cfg config.StoreConfig) (*Plans, error) {
	b, err := kv.Open(ctx, js, kv.Config{Bucket: PlanBucket, Description: "jetinfer allocation plan per endpoint, written by the controller",
		Replicas: cfg.Replicas, Log: cfg.Log}, kv.JSON[Plan]())
	if err != nil {
		return nil, err
	}
	return &Plans{b: b}, nil
}

// Put writes an endpoint's plan and returns it as written.
func (p *Plans) Put(ctx context.Context, plan Plan) (Plan, error) {
	plan.Updated = time.Now().UTC()
	_, err := p.b.Put(ctx, config.Token(plan.InferenceID), plan)
	return plan, err
}

// Remove deletes an endpoint's plan.
func (p *Plans) Remove(ctx context.Context, inferenceID string) error {
	return p.b.Delete(ctx, config.Token(inferenceID))
}

// All returns every plan by inference id.
func (p *Plans) All(ctx context.Context) (map[string]Plan, error) {
	plans, err := values(p.b.List(ctx, ">"))
	if err != nil {
		return nil, err
	}
	out := make(map[string]Plan, len(plans))
	for _, pl := range plans {
		out[pl.InferenceID] = pl
	}
	return out, nil
}

// PlanChange is one update seen by Watch: a plan written, or an endpoint's
// plan removed (Deleted, with only InferenceID set).
type PlanChange struct {
	Plan
	Deleted bool
}

// Watch calls fn for every plan stored, then for every change, until ctx
// ends; a broken watch restarts by itself.
func (p *Plans) Watch(ctx context.Context, fn func(PlanChange)) {
	p.b.Watch(ctx, ">", func(c kv.Change[Plan]) {
		switch {
		case c.Deleted:
			fn(PlanChange{Plan: Plan{InferenceID: config.IDFromToken(c.Key)}, Deleted: true})
		case c.Err == nil:
			fn(PlanChange{Plan: c.Value})
		}
	})
}
