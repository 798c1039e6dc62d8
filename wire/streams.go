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

// Stream names and subject patterns.
const (
	RequestsStream  = "INFERENCE_REQUESTS"
	ResultsStream   = "INFERENCE_RESULTS"
	requestSubjects = "inference.*.ingest"
	resultSubjects  = "inference.*.results"
)

// DuplicateWindow is how long a Nats-Msg-Id deduplicates publishes.
const DuplicateWindow = 2 * time.Minute

// StreamsConfig configures EnsureStreams.
type StreamsConfig struct {
	// Replicas of both streams; 0 means 1.
	Replicas int
	// QueueCapacity bounds the documents waiting for one endpoint (messages
	// per ingest subject); publishes beyond it are refused. 0 means
	// config.DefaultQueueCapacity.
	QueueCapacity int64
	// ResultsMaxAge bounds how long results are kept; 0 keeps them until
	// limits are hit.
	ResultsMaxAge time.Duration
}

// IngestSubject is the subject documents for the endpoint token are
// published to.
func IngestSubject(token string) string { return "inference." + token + ".ingest" }

// InferSubject is the request/reply subject of the endpoint token.
func InferSubject(token string) string { return "inference." + token + ".infer" }

// ResultsSubject is the subject results for the endpoint token appear on.
func ResultsSubject(token string) string { return "inference." + token + ".results" }

// EnsureStreams creates or updates the request and result streams.
//
// The request stream uses work-queue retention: a document leaves the stream
// once it is acked (or terminated), so the per-subject limit counts the
// documents still waiting, which is what a queue capacity means. With limits
// retention the limit would count every document ever ingested and refuse
// all publishes for an endpoint after the first QueueCapacity of them.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg StreamsConfig) error {
	replicas := cfg.Replicas
	if replicas <= 0 {
		replicas = 1
	}
	capacity := cfg.QueueCapacity
	if capacity <= 0 {
		capacity = config.DefaultQueueCapacity
	}
	streams := []jetstream.StreamConfig{{
		Name:                 RequestsStream,
		Subjects:             []string{requestSubjects},
		Retention:            jetstream.WorkQueuePolicy,
		Storage:              jetstream.FileStorage,
		Replicas:             replicas,
		Duplicates:           DuplicateWindow,
		MaxMsgsPerSubject:    capacity,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
	}, {
		Name:       ResultsStream,
		Subjects:   []string{resultSubjects},
		Retention:  jetstream.LimitsPolicy,
		Storage:    jetstream.FileStorage,
		Replicas:   replicas,
		Duplicates: DuplicateWindow,
		MaxAge:     cfg.ResultsMaxAge,
	}}
	for _, sc := range streams {
		// Every process ensures the streams at start; an update of an
		// unchanged stream races in nats-server with the consumers others
		// create on it, so only a changed one is updated.
		if s, err := js.Stream(ctx, sc.Name); err == nil && sameStream(s.CachedInfo().Config, sc) {
			continue
		}
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
		}
	}
	return nil
}

// sameStream reports whether a stream already has what EnsureStreams sets.
func sameStream(have, want jetstream.StreamConfig) bool {
	return slices.Equal(have.Subjects, want.Subjects) && have.Retention == want.Retention && have.Storage == want.Storage &&
		have.Replicas == want.Replicas && have.Duplicates == want.Duplicates && have.MaxMsgsPerSubject == want.MaxMsgsPerSubject &&
		have.Discard == want.Discard && have.DiscardNewPerSubject == want.DiscardNewPerSubject && have.MaxAge == want.MaxAge
}

// RemoveEndpoint deletes a deleted endpoint's durable consumer and the
// documents still queued for it. Every worker may call it; what is already
// gone is not an error.
func RemoveEndpoint(ctx context.Context, js jetstream.JetStream, inferenceID string) error {
	token := config.Token(inferenceID)
	// Purge first: once the consumer is gone, the endpoint is gone.
	s, err := js.Stream(ctx, RequestsStream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", RequestsStream, err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(IngestSubject(token))); err != nil {
		return fmt.Errorf("purge %s: %w", IngestSubject(token), err)
	}
	err = js.DeleteConsumer(ctx, RequestsStream, ConsumerName(token))
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("delete consumer %s: %w", ConsumerName(token), err)
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

// Defaults of ConsumerConfig.
const (
	DefaultMaxDeliver = 5
	DefaultAckWait    = 30 * time.Second
)

// ConsumerName is the durable consumer (and the infer queue group) of the
// endpoint token: endpoint_<token>, or, when that is longer than NATS's
// 255-character limit on names, its first 200 characters and a digest of
// the token.
func ConsumerName(token string) string {
	name := "endpoint_" + token
	if len(name) <= maxConsumerName {
		return name
	}
	sum := sha256.Sum256([]byte(token))
	return name[:200] + "_" + hex.EncodeToString(sum[:16])
}

const maxConsumerName = 255

// ConsumerConfig is what an endpoint's durable consumer is created with.
type ConsumerConfig struct {
	// AckWait is DefaultAckWait and MaxDeliver DefaultMaxDeliver when 0.
	AckWait    time.Duration
	MaxDeliver int
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	return c
}

// EnsureConsumer creates or updates the durable consumer of an endpoint,
// so that its documents wait for it even while nothing serves it.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, inferenceID string, cfg ConsumerConfig) (jetstream.Consumer, error) {
	token := config.Token(inferenceID)
	cfg = cfg.withDefaults()
	cons, err := js.CreateOrUpdateConsumer(ctx, RequestsStream, jetstream.ConsumerConfig{
		Durable:       ConsumerName(token),
		FilterSubject: IngestSubject(token),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    cfg.MaxDeliver,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", ConsumerName(token), err)
	}
	return cons, nil
}

// Info returns the state of an endpoint's durable consumer: documents
// pending and unacknowledged.
func Info(ctx context.Context, js jetstream.JetStream, inferenceID string) (*jetstream.ConsumerInfo, error) {
	cons, err := js.Consumer(ctx, RequestsStream, ConsumerName(config.Token(inferenceID)))
	if err != nil {
		return nil, err
	}
	return cons.Info(ctx)
}
