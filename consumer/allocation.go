package consumer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/pipeline"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Result headers.
const (
	HeaderDocumentID = "Jetinfer-Document-Id"
	headerMsgID      = "Nats-Msg-Id"
)

// Defaults of AllocationConfig.
const (
	DefaultMaxDeliver = 5
	DefaultAckWait    = 30 * time.Second
	DefaultNakDelay   = time.Second
	DefaultPollWait   = time.Second
)

// Processor turns one document's inputs into its result body.
type Processor interface {
	Process(ctx context.Context, inputs []string, inputType pipeline.InputType) ([]byte, error)
}

// ProcessorFunc adapts a function to Processor; with pipeline.ChunkedInfer:
//
//	consumer.ProcessorFunc(func(ctx context.Context, in []string, t pipeline.InputType) ([]byte, error) {
//		return pipeline.ChunkedInfer(ctx, model, ep, in, t)
//	})
type ProcessorFunc func(ctx context.Context, inputs []string, inputType pipeline.InputType) ([]byte, error)

// Process calls f.
func (f ProcessorFunc) Process(ctx context.Context, inputs []string, inputType pipeline.InputType) ([]byte, error) {
	return f(ctx, inputs, inputType)
}

// AllocationConfig configures an Allocation.
type AllocationConfig struct {
	JS       jetstream.JetStream
	Endpoint config.Endpoint
	Model    Processor
	// MaxDeliver bounds the attempts at one document; 0 means
	// DefaultMaxDeliver. The last failed attempt publishes an error result.
	MaxDeliver int
	// AckWait is the consumer's ack wait and bounds one document's
	// processing; 0 means DefaultAckWait.
	AckWait time.Duration
	// NakDelay is the redelivery delay after a failed attempt; 0 means
	// DefaultNakDelay.
	NakDelay time.Duration
	// PollWait bounds one fetch, and so how long Run takes to notice that
	// its context ended while the queue is empty; 0 means DefaultPollWait.
	PollWait time.Duration
	Log      zerolog.Logger
}

// Allocation pulls one endpoint's documents, one at a time, from its durable
// consumer endpoint_<token>.
type Allocation struct {
	cfg   AllocationConfig
	token string
}

// New checks cfg and fills in its defaults.
func New(cfg AllocationConfig) (*Allocation, error) {
	switch {
	case cfg.JS == nil:
		return nil, errors.New("allocation: JetStream is required")
	case cfg.Model == nil:
		return nil, errors.New("allocation: model is required")
	case cfg.Endpoint.InferenceID == "":
		return nil, errors.New("allocation: endpoint inference id is required")
	case cfg.MaxDeliver < 0:
		return nil, fmt.Errorf("allocation: max deliver %d is negative", cfg.MaxDeliver)
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = DefaultMaxDeliver
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = DefaultAckWait
	}
	if cfg.NakDelay <= 0 {
		cfg.NakDelay = DefaultNakDelay
	}
	if cfg.PollWait <= 0 {
		cfg.PollWait = DefaultPollWait
	}
	tok := config.Token(cfg.Endpoint.InferenceID)
	cfg.Log = cfg.Log.With().Str("inference_id", cfg.Endpoint.InferenceID).Logger()
	return &Allocation{cfg: cfg, token: tok}, nil
}

// ConsumerName is the durable consumer of the endpoint token.
func ConsumerName(token string) string { return "endpoint_" + token }

// Run creates or binds the endpoint's durable consumer and serves documents
// until ctx ends. A document in hand when ctx ends is still processed,
// published and acked (on a context detached from ctx) before Run returns
// nil. Run returns an error only when the consumer cannot be set up or
// fetching fails for another reason than ctx ending.
func (a *Allocation) Run(ctx context.Context) error {
	cons, err := a.cfg.JS.CreateOrUpdateConsumer(ctx, RequestsStream, jetstream.ConsumerConfig{
		Durable:       ConsumerName(a.token),
		FilterSubject: IngestSubject(a.token),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       a.cfg.AckWait,
		MaxDeliver:    a.cfg.MaxDeliver,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("consumer %s: %w", ConsumerName(a.token), err)
	}
	for ctx.Err() == nil {
		// One message per fetch: nothing is prefetched, so nothing waits out
		// its AckWait in a buffer, and nothing is in hand between fetches.
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(a.cfg.PollWait))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("fetch %s: %w", ConsumerName(a.token), err)
		}
		for msg := range batch.Messages() {
			a.handle(context.WithoutCancel(ctx), msg)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			a.cfg.Log.Warn().Err(err).Msg("fetch")
		}
	}
	return nil
}

// errInvalid marks documents that can never succeed: they are terminated
// after one error result.
var errInvalid = errors.New("invalid document")

// handle serves one message to the end: it is acked, terminated or nakked
// before handle returns. ctx is already detached from Run's.
func (a *Allocation) handle(ctx context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		a.cfg.Log.Error().Err(err).Msg("message without metadata")
		_ = msg.Term()
		return
	}
	log := a.cfg.Log.With().Uint64("stream_seq", meta.Sequence.Stream).Uint64("delivered", meta.NumDelivered).Logger()
	id, body, err := a.process(ctx, msg.Data())
	if err != nil {
		log.Warn().Err(err).Str("document_id", id).Msg("document failed")
		var perr error
		body, perr = eserror.As(err).MarshalJSON()
		if perr != nil {
			body = []byte(`{"error":{"type":"status_exception","reason":"internal error"},"status":500}`)
		}
	}
	last := meta.NumDelivered >= uint64(a.cfg.MaxDeliver)
	if err != nil && !errors.Is(err, errInvalid) && !last {
		a.settle(log, msg.NakWithDelay(a.cfg.NakDelay), "nak")
		return
	}
	if perr := a.publish(ctx, msg, meta, id, body); perr != nil {
		// Without a result the document is not done: try again later. On
		// the last delivery the server delivers no more and the document
		// stays in the stream for an operator to see.
		log.Error().Err(perr).Msg("publish result")
		a.settle(log, msg.NakWithDelay(a.cfg.NakDelay), "nak")
		return
	}
	if err != nil {
		a.settle(log, msg.TermWithReason(err.Error()), "term")
		return
	}
	a.settle(log, msg.DoubleAck(ctx), "ack")
}

func (a *Allocation) settle(log zerolog.Logger, err error, op string) {
	if err != nil {
		log.Error().Err(err).Str("op", op).Msg("settle message")
	}
}

// process parses and serves one document body; the error wraps errInvalid
// when the body itself is at fault.
func (a *Allocation) process(ctx context.Context, data []byte) (string, []byte, error) {
	id, rest, err := cutID(data)
	if err != nil {
		return id, nil, fmt.Errorf("%w: %w", errInvalid, err)
	}
	req, err := pipeline.ParseRequest(rest)
	if err == nil {
		err = req.Validate(config.Any)
	}
	if err == nil && id == "" {
		err = eserror.Validation(eserror.TypeActionRequestValidation, "Field [id] cannot be null")
	}
	if err != nil {
		return id, nil, fmt.Errorf("%w: %w", errInvalid, err)
	}
	pctx, cancel := context.WithTimeout(ctx, a.cfg.AckWait)
	defer cancel()
	body, err := a.cfg.Model.Process(pctx, req.Input, req.InputType)
	return id, body, err
}

// cutID returns the top-level string member "id" of a JSON object and the
// body with that member blanked out (replaced by spaces, with its comma), so
// every other byte keeps its position. Bodies that are not JSON objects are
// returned whole for ParseRequest to report; a non-string id is an error.
func cutID(data []byte) (string, []byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return "", data, nil
	}
	prevEnd := dec.InputOffset() // just after '{'
	first := true
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return "", data, nil
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return "", data, nil
		}
		end := dec.InputOffset()
		if key != "id" {
			prevEnd, first = end, false
			continue
		}
		var id string
		if err := json.Unmarshal(raw, &id); err != nil {
			return "", nil, eserror.BadRequest("[id] must be a string, got %s", raw)
		}
		start := prevEnd
		if first {
			// Blank the comma after the member instead of the one before.
			rest := bytes.TrimLeft(data[end:], " \t\r\n")
			if len(rest) > 0 && rest[0] == ',' {
				end = int64(len(data)-len(rest)) + 1
			}
		}
		out := bytes.Clone(data)
		for i := start; i < end; i++ {
			if out[i] != '\n' {
				out[i] = ' '
			}
		}
		return id, out, nil
	}
	return "", data, nil
}

// publish sends the result of msg and waits for the stream to store it.
func (a *Allocation) publish(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, id string, body []byte) error {
	reqID := msg.Headers().Get(headerMsgID)
	if reqID == "" {
		reqID = strconv.FormatUint(meta.Sequence.Stream, 10)
	}
	out := nats.NewMsg(ResultsSubject(a.token))
	out.Header.Set(HeaderDocumentID, id)
	out.Header.Set(headerMsgID, reqID+"-result")
	out.Data = body
	pctx, cancel := context.WithTimeout(ctx, a.cfg.AckWait)
	defer cancel()
	_, err := a.cfg.JS.PublishMsg(pctx, out)
	return err
}
