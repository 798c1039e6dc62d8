// Package cluster holds what the workers of a NATS deployment share, each
// in a KV bucket: the node registry (who is alive, with what budget, models
// and load), the lease that makes one worker the controller, the allocation
// plan the controller writes, and each deployment's state for the HTTP API.
package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/kv"
)

// StateBucket holds each worker's deployment state, keyed
// <endpoint token>.<node>. Entries expire unless their worker rewrites them,
// so a worker that died leaves no stale state behind for long.
const StateBucket = "inference_deployments"

const (
	stateTTL = time.Minute
	// StateHeartbeat is how often a worker rewrites its states.
	StateHeartbeat = 15 * time.Second
)

// Deployment states.
const (
	StateStarting = "starting"
	StateStarted  = "started"
	StateFailed   = "failed"
)

// State is one worker's deployment of one endpoint.
type State struct {
	InferenceID string `json:"inference_id"`
	Node        string `json:"node"`
	State       string `json:"state"`
	ModelID     string `json:"model_id"`
	// Revision is the endpoint definition's revision in the endpoint
	// bucket that the state is about.
	Revision    uint64 `json:"revision"`
	Allocations int    `json:"allocations"`
	// TargetAllocations is what the endpoint asks for; allocations that do
	// not fit the node's processor budget are pending.
	TargetAllocations int `json:"target_allocations"`
	ThreadsPerAlloc   int `json:"threads_per_allocation"`
	// Error is the failure's Elasticsearch error envelope and status.
	Error       json.RawMessage `json:"error,omitempty"`
	ErrorStatus int             `json:"error_status,omitempty"`
	Updated     time.Time       `json:"updated"`
}

// States reads and writes the deployment state bucket.
type States struct {
	b *kv.Bucket[State]
}

// OpenStates creates the bucket if needed.
func OpenStates(ctx context.Context, js jetstream.JetStream, cfg config.StoreConfig) (*States, error) {
	b, err := kv.Open(ctx, js, kv.Config{Bucket: StateBucket, Description: "jetinfer deployment state per endpoint and worker",
		TTL: stateTTL, Replicas: cfg.Replicas, Log: cfg.Log}, kv.JSON[State]())
	if err != nil {
		return nil, err
	}
	return &States{b: b}, nil
}

func stateKey(inferenceID, node string) string {
	return config.Token(inferenceID) + "." + nodeKey(node)
}

// nodeKey makes a node name one KV key token.
func nodeKey(node string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, node)
}

// Put writes one worker's state of one endpoint.
func (s *States) Put(ctx context.Context, st State) error {
	st.Updated = time.Now().UTC()
	_, err := s.b.Put(ctx, stateKey(st.InferenceID, st.Node), st)
	return err
}

// Remove deletes one worker's state of one endpoint.
func (s *States) Remove(ctx context.Context, inferenceID, node string) error {
	return s.b.Delete(ctx, stateKey(inferenceID, node))
}

// Of returns every worker's state of one endpoint.
func (s *States) Of(ctx context.Context, inferenceID string) ([]State, error) {
	return s.list(ctx, config.Token(inferenceID)+".*")
}

func (s *States) list(ctx context.Context, filter string) ([]State, error) {
	return values(s.b.List(ctx, filter))
}

// values keeps the values of entries that decoded.
func values[T any](entries []kv.Entry[T], err error) ([]T, error) {
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(entries))
	for _, e := range entries {
		if e.Err == nil {
			out = append(out, e.Value)
		}
	}
	return out, nil
}

// Allocations returns, per inference id, the allocations running on all
// workers.
func (s *States) Allocations(ctx context.Context) (map[string]int, error) {
	all, err := s.list(ctx, ">")
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, st := range all {
		out[st.InferenceID] += st.Allocations
	}
	return out, nil
}

// WaitStarted waits until a worker has started the endpoint's definition
// of the given revision (or a later one), as PUT does: nil once one has;
// the failure when one reports it; a 408 when ctx's deadline (the request's
// timeout, named by timeout) passes first.
func (s *States) WaitStarted(ctx context.Context, inferenceID string, revision uint64, timeout string) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var result error
	decided := false
	s.b.Watch(ctx, config.Token(inferenceID)+".*", func(c kv.Change[State]) {
		st := c.Value
		if decided || c.Deleted || c.Err != nil || st.Revision < revision {
			return
		}
		switch st.State {
		case StateStarted:
			decided = true
		case StateFailed:
			decided, result = true, &StartError{Status: st.ErrorStatus, Body: st.Error}
		}
		if decided {
			stop()
		}
	})
	if !decided {
		return startTimeout(timeout)
	}
	return result
}

func startTimeout(timeout string) error {
	return eserror.New(http.StatusRequestTimeout, eserror.TypeStatus,
		"Timed out after [%s] waiting for model deployment to start. Use the trained model stats API to track the state of the deployment.", timeout)
}

// StartError is a deployment's failure to start as its worker reported it:
// an Elasticsearch error envelope and status, passed on unchanged.
type StartError struct {
	Status int
	Body   []byte
}

func (e *StartError) Error() string {
	return fmt.Sprintf("deployment failed (%d): %s", e.Status, e.Body)
}
func (e *StartError) HTTPStatus() int  { return e.Status }
func (e *StartError) HTTPBody() []byte { return e.Body }
