package wire

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/config"
)

// DuplicateWindow is how long a Nats-Msg-Id deduplicates publishes.
const DuplicateWindow = 2 * time.Minute

// Every endpoint has a request stream and a result stream of its own, so
// that deduplication is scoped to the endpoint (one document id published
// to two endpoints is two documents), deleting an endpoint deletes what it
// queued, and the endpoints of a NATS cluster spread their stream leaders
// over its servers instead of all going through one.
const (
	requestsStreamPrefix = "INFERENCE_REQUESTS_"
	resultsStreamPrefix  = "INFERENCE_RESULTS_"
)

// RequestsStream is the work-queue stream of the endpoint token's documents.
func RequestsStream(token string) string { return natsName(requestsStreamPrefix, token) }

// ResultsStream is the stream of the endpoint token's results.
func ResultsStream(token string) string { return natsName(resultsStreamPrefix, token) }

// QueueConfig is what an endpoint's streams and durable consumer are
// created with.
type QueueConfig struct {
	// Replicas of both streams; 0 means 1.
	Replicas int
	// Capacity bounds the documents waiting for the endpoint; publishes
	// beyond it are refused. 0 means config.DefaultQueueCapacity.
	Capacity int64
	// ResultsMaxAge bounds how long results are kept; 0 keeps them until
	// the endpoint is deleted.
	ResultsMaxAge time.Duration
	// AckWait is how long a delivered document may go unacknowledged;
	// DefaultAckWait when 0.
	AckWait time.Duration
	// MaxDeliver bounds the attempts at one document, DefaultMaxDeliver
	// when 0. Workers count them (the delivery count of each message) and
	// end a document with an error result once they are used up; the
	// consumer itself delivers without limit, so that a document whose
	// last attempt could not be settled comes back instead of staying
	// queued for ever.
	MaxDeliver int
}

// WithDefaults fills in the zero fields.
func (c QueueConfig) WithDefaults() QueueConfig {
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.Capacity <= 0 {
		c.Capacity = config.DefaultQueueCapacity
	}
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	return c
}

// Defaults of QueueConfig.
const (
	DefaultMaxDeliver = 5
	DefaultAckWait    = 30 * time.Second
)

// IngestSubject is the subject documents for the endpoint token are
// published to.
func IngestSubject(token string) string { return "inference." + token + ".ingest" }

// InferSubject is the request/reply subject of the endpoint token.
func InferSubject(token string) string { return "inference." + token + ".infer" }

// ResultsSubject is the subject results for the endpoint token appear on.
func ResultsSubject(token string) string { return "inference." + token + ".results" }

// subjectEndpoint is the inference id of an ingest or results subject,
// inference.<token>.ingest or inference.<token>.results.
func subjectEndpoint(subject string) (string, bool) {
	rest, ok := strings.CutPrefix(subject, "inference.")
	if !ok {
		return "", false
	}
	token, kind, ok := strings.Cut(rest, ".")
	if !ok || (kind != "ingest" && kind != "results") {
		return "", false
	}
	return config.IDFromToken(token), true
}

// streamConfigs are the request and result streams of the endpoint token.
//
// The request stream uses work-queue retention: a document leaves the stream
// once it is acked (or terminated), so the message limit counts the
// documents still waiting, which is what a queue capacity means. With limits
// retention the limit would count every document ever ingested.
func streamConfigs(token string, cfg QueueConfig) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{{
		Name:       RequestsStream(token),
		Subjects:   []string{IngestSubject(token)},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Replicas:   cfg.Replicas,
		Duplicates: DuplicateWindow,
		MaxMsgs:    cfg.Capacity,
		Discard:    jetstream.DiscardNew,
	}, {
		Name:       ResultsStream(token),
		Subjects:   []string{ResultsSubject(token)},
		Retention:  jetstream.LimitsPolicy,
		Storage:    jetstream.FileStorage,
		Replicas:   cfg.Replicas,
		Duplicates: DuplicateWindow,
		MaxMsgs:    -1, // as the server stores "no limit", for sameStream
		MaxAge:     cfg.ResultsMaxAge,
	}}
}

// EnsureEndpoint creates (or updates, when its configuration changed) an
// endpoint's request and result streams and its durable consumer, so that
// its documents are stored and wait for it even while nothing serves it.
func EnsureEndpoint(ctx context.Context, js jetstream.JetStream, inferenceID string, cfg QueueConfig) (jetstream.Consumer, error) {
	token := config.Token(inferenceID)
	cfg = cfg.WithDefaults()
	for _, sc := range streamConfigs(token, cfg) {
		if err := ensureStream(ctx, js, sc); err != nil {
			return nil, err
		}
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, RequestsStream(token), jetstream.ConsumerConfig{
		Durable:       ConsumerName(token),
		FilterSubject: IngestSubject(token),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    -1,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", ConsumerName(token), err)
	}
	return cons, nil
}

// ensureStream creates sc or updates it when it differs: every worker
// ensures an endpoint's streams, and an update of an unchanged stream races
// in nats-server with the consumers others create on it.
func ensureStream(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig) error {
	if s, err := js.Stream(ctx, sc.Name); err == nil && sameStream(s.CachedInfo().Config, sc) {
		return nil
	}
	if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
		return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
	}
	return nil
}

// sameStream reports whether a stream already has what streamConfigs sets.
func sameStream(have, want jetstream.StreamConfig) bool {
	return slices.Equal(have.Subjects, want.Subjects) && have.Retention == want.Retention && have.Storage == want.Storage &&
		have.Replicas == want.Replicas && have.Duplicates == want.Duplicates && have.MaxMsgs == want.MaxMsgs &&
		have.Discard == want.Discard && have.MaxAge == want.MaxAge
}

// RemoveEndpoint deletes a deleted endpoint's streams, with the documents
// still queued for it, its results and its consumer. Every worker may call
// it; what is already gone is not an error.
func RemoveEndpoint(ctx context.Context, js jetstream.JetStream, inferenceID string) error {
	token := config.Token(inferenceID)
	// The request stream first: once it is gone, the endpoint is gone.
	for _, name := range []string{RequestsStream(token), ResultsStream(token)} {
		if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("delete stream %s: %w", name, err)
		}
	}
	return nil
}

// DemandSubject is where a client announces a request that found no
// allocation of the endpoint token (or "*" for every endpoint): the
// controller scales such an endpoint from zero.
func DemandSubject(token string) string { return "inference." + token + ".demand" }

// DemandInferenceID returns the inference id of a demand subject.
func DemandInferenceID(subject string) string {
	token := strings.TrimSuffix(strings.TrimPrefix(subject, "inference."), ".demand")
	return config.IDFromToken(token)
}

// ConsumerName is the durable consumer (and the infer queue group) of the
// endpoint token: endpoint_<token>, or, when that is longer than NATS's
// 255-character limit on names, its first 200 characters and a digest of
// the token.
func ConsumerName(token string) string { return natsName("endpoint_", token) }

// natsName is prefix+token, or, when that is longer than NATS's
// 255-character limit on stream and consumer names, its first 200
// characters and a digest of the token.
func natsName(prefix, token string) string {
	name := prefix + token
	if len(name) <= maxNATSName {
		return name
	}
	sum := sha256.Sum256([]byte(token))
	return name[:200] + "_" + hex.EncodeToString(sum[:16])
}

const maxNATSName = 255

// Backlogs returns, by inference id, the documents every endpoint's request
// stream holds (waiting, or in a worker's hands): one listing for all of
// them, where Info asks one endpoint at a time.
func Backlogs(ctx context.Context, js jetstream.JetStream) (map[string]uint64, error) {
	out := map[string]uint64{}
	l := js.ListStreams(ctx, jetstream.WithStreamListSubject(IngestSubject("*")))
	for si := range l.Info() {
		if len(si.Config.Subjects) == 1 {
			if id, ok := subjectEndpoint(si.Config.Subjects[0]); ok {
				out[id] = si.State.Msgs
			}
		}
	}
	return out, l.Err()
}

// Queued returns how many documents an endpoint's request stream holds:
// with work-queue retention, those pending and those delivered but not yet
// acknowledged. Unlike Info it needs no consumer.
func Queued(ctx context.Context, js jetstream.JetStream, inferenceID string) (uint64, error) {
	s, err := js.Stream(ctx, RequestsStream(config.Token(inferenceID)))
	if err != nil {
		return 0, err
	}
	return s.CachedInfo().State.Msgs, nil
}

// Info returns the state of an endpoint's durable consumer: documents
// pending and unacknowledged.
func Info(ctx context.Context, js jetstream.JetStream, inferenceID string) (*jetstream.ConsumerInfo, error) {
	token := config.Token(inferenceID)
	// Getting the consumer is one info request already; asking again
	// would double what the controller sends every interval.
	cons, err := js.Consumer(ctx, RequestsStream(token), ConsumerName(token))
	if err != nil {
		return nil, err
	}
	return cons.CachedInfo(), nil
}
