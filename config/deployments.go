package config

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/kv"
	"github.com/jetinfer/jetinfer/xcontent"
)

// DeploymentsBucket holds the trained model deployments started with
// POST _ml/trained_models/{model_id}/deployment/_start, keyed by
// Token(deployment_id). Inference endpoints attach to them by
// deployment_id; an endpoint without one has a deployment of its own, whose
// id is its inference id.
const DeploymentsBucket = "ml_deployments"

// Queue capacity of a deployment (StartTrainedModelDeploymentAction): the
// default of _start's queue_capacity and of --queue-capacity, and the
// limit of both.
const (
	DefaultQueueCapacity = 10000
	MaxQueueCapacity     = 100000
)

// Deployment is a trained model deployment started through the _ml API.
type Deployment struct {
	DeploymentID string `json:"deployment_id"`
	ModelID      string `json:"model_id"`
	// NumberOfAllocations is nil when adaptive allocations decide.
	NumberOfAllocations  *int                 `json:"number_of_allocations,omitempty"`
	ThreadsPerAllocation int                  `json:"threads_per_allocation"`
	AdaptiveAllocations  *AdaptiveAllocations `json:"adaptive_allocations,omitempty"`
	QueueCapacity        int                  `json:"queue_capacity"`
	Priority             string               `json:"priority"`
	StartTime            time.Time            `json:"start_time"`
}

// Adaptive reports whether adaptive allocations decide the count.
func (d Deployment) Adaptive() bool {
	return d.AdaptiveAllocations != nil && d.AdaptiveAllocations.Enabled
}

// StartRequest is a parsed _start request: the deployment and how long to
// wait for it.
type StartRequest struct {
	Deployment
	// WaitFor is "started" (the default), "starting" or "fully_allocated".
	WaitFor string
	// Timeout is the raw timeout parameter ("" for the default, 30s).
	Timeout string
}

// ParseStart reads POST _ml/trained_models/{model_id}/deployment/_start:
// URL parameters and an optional JSON body with the same fields plus
// adaptive_allocations (a parameter given in the URL wins), validated as
// StartTrainedModelDeploymentAction.Request.validate does.
func ParseStart(modelID string, query url.Values, body []byte) (StartRequest, error) {
	r := StartRequest{Deployment: Deployment{DeploymentID: modelID, ModelID: modelID, ThreadsPerAllocation: 1,
		QueueCapacity: DefaultQueueCapacity, Priority: "normal"}, WaitFor: "started"}
	v := &validation{}
	fields := map[string]string{}
	if len(strings.TrimSpace(string(body))) > 0 {
		obj, err := xcontent.ParseNamed(body, "start_trained_model_deployment")
		if err != nil {
			return r, err
		}
		r.AdaptiveAllocations = v.adaptiveAllocations(obj)
		for _, k := range obj.Keys() {
			raw, _ := obj.Get(k)
			switch k {
			case "deployment_id", "number_of_allocations", "threads_per_allocation", "queue_capacity", "priority", "wait_for", "timeout", "cache_size":
				fields[k] = fmt.Sprint(xcontent.JavaValue(raw))
			default:
				return r, xcontent.ParseError(obj.KeyPos(k), fmt.Sprintf("[start_trained_model_deployment] unknown field [%s]", k), nil)
			}
		}
	}
	for _, k := range []string{"deployment_id", "number_of_allocations", "threads_per_allocation", "queue_capacity", "priority", "wait_for", "timeout", "cache_size"} {
		if query.Has(k) {
			fields[k] = query.Get(k)
		}
	}
	intField := func(name string) (*int, error) {
		s, ok := fields[name]
		if !ok {
			return nil, nil
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, eserror.BadRequest("Failed to parse int parameter [%s] with value [%s]", name, s)
		}
		return &n, nil
	}
	if id, ok := fields["deployment_id"]; ok {
		r.DeploymentID = id
	}
	n, err := intField("number_of_allocations")
	if err != nil {
		return r, err
	}
	r.NumberOfAllocations = n
	if t, err := intField("threads_per_allocation"); err != nil {
		return r, err
	} else if t != nil {
		r.ThreadsPerAllocation = *t
	}
	if q, err := intField("queue_capacity"); err != nil {
		return r, err
	} else if q != nil {
		r.QueueCapacity = *q
	}
	if p, ok := fields["priority"]; ok {
		r.Priority = strings.ToLower(p)
	}
	if w, ok := fields["wait_for"]; ok {
		r.WaitFor = strings.ToLower(w)
	}
	r.Timeout = fields["timeout"]

	if !validDeploymentID(r.DeploymentID) {
		v.add("Invalid deployment_id; '%s' can contain lowercase alphanumeric (a-z and 0-9), hyphens or underscores; must start and end with alphanumeric", r.DeploymentID)
	}
	if r.NumberOfAllocations != nil {
		if *r.NumberOfAllocations < 1 {
			v.add("[number_of_allocations] must be a positive integer")
		}
		if r.Adaptive() {
			v.add("[number_of_allocations] cannot be set if adaptive allocations is enabled")
		}
	} else if !r.Adaptive() {
		one := 1
		r.NumberOfAllocations = &one
	}
	if t := r.ThreadsPerAllocation; t < 1 || t > 32 || t&(t-1) != 0 {
		v.add("[threads_per_allocation] must be a power of 2 less than or equal to 32")
	}
	if r.QueueCapacity < 1 {
		v.add("[queue_capacity] must be a positive integer")
	}
	if r.QueueCapacity > MaxQueueCapacity {
		v.add("[queue_capacity] must be less than %d", MaxQueueCapacity)
	}
	if r.Priority != "normal" && r.Priority != "low" {
		v.add("[priority] must be one of [normal, low]")
	}
	if !slices.Contains([]string{"starting", "started", "fully_allocated"}, r.WaitFor) {
		v.add("[wait_for] must be one of [starting, started, fully_allocated]")
	}
	return r, v.err(eserror.TypeActionRequestValidation)
}

var deploymentIDRe = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9_\-.]*[a-z0-9])?$`)

// validDeploymentID follows MlStrings.isValidId; a built-in model id (which
// starts with a dot) is the default deployment id of its deployments.
func validDeploymentID(id string) bool {
	return len(id) <= MaxIDLength && (deploymentIDRe.MatchString(id) || FamilyOf(id) != FamilyImported)
}

// ParseDeploymentUpdate reads POST _ml/trained_models/{id}/deployment/_update:
// number_of_allocations or adaptive_allocations.
func ParseDeploymentUpdate(d Deployment, query url.Values, body []byte) (Deployment, error) {
	v := &validation{}
	var n *int
	var adaptive *AdaptiveAllocations
	if len(strings.TrimSpace(string(body))) > 0 {
		obj, err := xcontent.ParseNamed(body, "update_trained_model_deployment")
		if err != nil {
			return d, err
		}
		adaptive = v.adaptiveAllocations(obj)
		if x, present, ok := v.removeInt(obj, "number_of_allocations"); present && ok {
			n = &x
		}
		for _, k := range obj.Keys() {
			return d, xcontent.ParseError(obj.KeyPos(k), fmt.Sprintf("[update_trained_model_deployment] unknown field [%s]", k), nil)
		}
	}
	if s := query.Get("number_of_allocations"); s != "" {
		x, err := strconv.Atoi(s)
		if err != nil {
			return d, eserror.BadRequest("Failed to parse int parameter [number_of_allocations] with value [%s]", s)
		}
		n = &x
	}
	if n == nil && adaptive == nil {
		v.add("[number_of_allocations] or [adaptive_allocations] is required")
	}
	if n != nil && *n < 1 {
		v.add("[number_of_allocations] must be a positive integer")
	}
	if n != nil && adaptive != nil && adaptive.Enabled {
		v.add("[number_of_allocations] cannot be set if adaptive allocations is enabled")
	}
	if err := v.err(eserror.TypeActionRequestValidation); err != nil {
		return d, err
	}
	if adaptive != nil {
		d.AdaptiveAllocations = adaptive
		if adaptive.Enabled {
			d.NumberOfAllocations = nil
		}
	}
	if n != nil {
		d.NumberOfAllocations = n
		if d.AdaptiveAllocations != nil {
			d.AdaptiveAllocations = &AdaptiveAllocations{Enabled: false}
		}
	}
	return d, nil
}

// Errors of DeploymentStore.
var (
	ErrDeploymentNotFound = errors.New("trained model deployment not found")
	ErrDeploymentExists   = errors.New("trained model deployment already exists")
)

// DeploymentStore keeps the trained model deployments.
type DeploymentStore struct {
	b *kv.Bucket[Deployment]
}

// OpenDeploymentStore creates the bucket if needed.
func OpenDeploymentStore(ctx context.Context, js jetstream.JetStream, cfg StoreConfig) (*DeploymentStore, error) {
	b, err := kv.Open(ctx, js, kv.Config{Bucket: DeploymentsBucket, Description: "jetinfer trained model deployments", Replicas: cfg.Replicas, Log: cfg.Log},
		kv.JSON[Deployment]())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return &DeploymentStore{b: b}, nil
}

// Create stores a new deployment and returns its revision;
// ErrDeploymentExists if the id is taken.
func (s *DeploymentStore) Create(ctx context.Context, d Deployment) (uint64, error) {
	rev, err := s.b.Create(ctx, Token(d.DeploymentID), d)
	switch {
	case errors.Is(err, kv.ErrExists):
		return 0, ErrDeploymentExists
	case err != nil:
		return 0, unavailable("create deployment "+d.DeploymentID, err)
	}
	return rev, nil
}

// Get returns a deployment and its revision.
func (s *DeploymentStore) Get(ctx context.Context, id string) (Deployment, uint64, error) {
	e, err := s.b.Get(ctx, Token(id))
	switch {
	case errors.Is(err, kv.ErrNotFound):
		return Deployment{}, 0, ErrDeploymentNotFound
	case err != nil:
		return Deployment{}, 0, unavailable("get deployment "+id, err)
	case e.Err != nil:
		return Deployment{}, 0, fmt.Errorf("deployment %s: %w", id, e.Err)
	}
	return e.Value, e.Revision, nil
}

// Update replaces a deployment read at revision; ErrConflict if it changed.
func (s *DeploymentStore) Update(ctx context.Context, d Deployment, revision uint64) error {
	if _, err := s.b.Update(ctx, Token(d.DeploymentID), d, revision); err != nil {
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return nil
}

// Delete removes a deployment.
func (s *DeploymentStore) Delete(ctx context.Context, id string) error {
	if err := s.b.Delete(ctx, Token(id)); err != nil {
		return unavailable("delete deployment "+id, err)
	}
	return nil
}

// DeploymentEntry is a stored deployment and its revision.
type DeploymentEntry struct {
	Deployment Deployment
	Revision   uint64
}

// List returns every deployment, sorted by id; values that do not decode
// are left out.
func (s *DeploymentStore) List(ctx context.Context) ([]DeploymentEntry, error) {
	all, err := s.b.List(ctx, ">")
	if err != nil {
		return nil, unavailable("list deployments", err)
	}
	var out []DeploymentEntry
	for _, e := range all {
		if e.Err == nil {
			out = append(out, DeploymentEntry{Deployment: e.Value, Revision: e.Revision})
		}
	}
	slices.SortFunc(out, func(a, b DeploymentEntry) int {
		return strings.Compare(a.Deployment.DeploymentID, b.Deployment.DeploymentID)
	})
	return out, nil
}

// DeploymentChange is one update seen by Watch.
type DeploymentChange struct {
	DeploymentEntry
	// ID and Revision are set on every change; Deployment only when not
	// Deleted.
	ID      string
	Deleted bool
}

// Watch calls fn for every deployment stored, then for every change, until
// ctx ends; a broken watch restarts by itself. Values that do not decode
// are left out.
func (s *DeploymentStore) Watch(ctx context.Context, fn func(DeploymentChange)) {
	s.b.Watch(ctx, ">", func(c kv.Change[Deployment]) {
		id := IDFromToken(c.Key)
		switch {
		case c.Deleted:
			fn(DeploymentChange{ID: id, Deleted: true, DeploymentEntry: DeploymentEntry{Revision: c.Revision}})
		case c.Err == nil:
			fn(DeploymentChange{ID: id, DeploymentEntry: DeploymentEntry{Deployment: c.Value, Revision: c.Revision}})
		}
	})
}

// Endpoint is the deployment as a worker runs it: an endpoint without a
// task type of its own (the model's is used) under the deployment id.
func (d Deployment) Endpoint() Endpoint {
	return Endpoint{InferenceID: d.DeploymentID, Service: ServiceName, ServiceSettings: ServiceSettings{
		NumAllocations: d.NumberOfAllocations, NumThreads: d.ThreadsPerAllocation, ModelID: d.ModelID,
		AdaptiveAllocations: d.AdaptiveAllocations, DeploymentID: d.DeploymentID,
	}}
}
