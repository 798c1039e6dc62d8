package wire

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// The streams every endpoint shared before each had its own.
const (
	legacyRequestsStream = "INFERENCE_REQUESTS"
	legacyResultsStream  = "INFERENCE_RESULTS"
)

// MigrationConfig configures MigrateLegacyStreams.
type MigrationConfig struct {
	// Queue is what the endpoints' own streams are created with.
	Queue QueueConfig
	// Defined reports whether an endpoint exists: messages of an id that
	// does not could never be served, and are dropped (and counted).
	Defined func(inferenceID string) bool
	Log     zerolog.Logger
}

// MigrateLegacyStreams moves what the streams shared by every endpoint hold
// into the endpoints' own streams, then deletes them: queued documents wait
// in their endpoint's request stream, results not yet read are in its
// result stream. Nothing serves while it runs (a node migrates before its
// worker starts); publishes meanwhile fail with no responders and are
// retried by the publisher. Several nodes may migrate at once: every copy
// carries a Nats-Msg-Id naming the legacy message, so the second copy of
// one is dropped as a duplicate.
func MigrateLegacyStreams(ctx context.Context, js jetstream.JetStream, cfg MigrationConfig) error {
	var legacy []jetstream.Stream
	for _, name := range []string{legacyRequestsStream, legacyResultsStream} {
		s, err := releaseSubjects(ctx, js, name)
		if err != nil {
			return fmt.Errorf("migrate stream %s: %w", name, err)
		}
		if s != nil {
			legacy = append(legacy, s)
		}
	}
	for _, s := range legacy {
		if err := moveMessages(ctx, js, s, cfg); err != nil {
			return fmt.Errorf("migrate stream %s: %w", s.CachedInfo().Config.Name, err)
		}
	}
	return nil
}

// releaseSubjects hands a legacy stream's subjects over to the endpoints'
// own streams (two streams cannot share one): it keeps its messages under a
// subject nobody publishes to. Its consumers go first, since their filters
// would no longer match. It returns nil when there is no such stream.
func releaseSubjects(ctx context.Context, js jetstream.JetStream, name string) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// Another node migrating at once may delete the stream meanwhile.
	gone := func(err error) bool { return errors.Is(err, jetstream.ErrStreamNotFound) }
	names := s.ConsumerNames(ctx)
	for cname := range names.Name() {
		if err := s.DeleteConsumer(ctx, cname); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) && !gone(err) {
			return nil, err
		}
	}
	if err := names.Err(); err != nil && !gone(err) {
		return nil, err
	}
	sc := s.CachedInfo().Config
	sc.Subjects = []string{"jetinfer.migrating." + name}
	if _, err := js.UpdateStream(ctx, sc); gone(err) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	return s, nil
}

// moveMessages copies a released legacy stream's messages into their
// endpoints' streams, then deletes it.
func moveMessages(ctx context.Context, js jetstream.JetStream, s jetstream.Stream, cfg MigrationConfig) error {
	name := s.CachedInfo().Config.Name
	ensured := map[string]bool{}
	var moved, dropped int
	// Each read returns the next message stored at or after seq: acked
	// documents leave gaps a scan by sequence would crawl through.
	for seq := uint64(1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil // another node finished the migration
		}
		if err != nil {
			return err
		}
		seq = m.Sequence + 1
		id, ok := subjectEndpoint(m.Subject)
		if !ok || !cfg.Defined(id) {
			if err := s.DeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
				return fmt.Errorf("delete message %d: %w", m.Sequence, err)
			}
			dropped++
			continue
		}
		if !ensured[id] {
			if _, err := EnsureEndpoint(ctx, js, id, cfg.Queue); err != nil {
				return err
			}
			ensured[id] = true
		}
		out := nats.NewMsg(m.Subject)
		for k, v := range m.Header {
			out.Header[k] = v
		}
		if orig := m.Header.Get(jetstream.MsgIDHeader); orig != "" && name == legacyRequestsStream {
			out.Header.Set(HeaderRequestMsgID, orig)
		}
		out.Header.Set(jetstream.MsgIDHeader, name+"-"+strconv.FormatUint(m.Sequence, 10))
		out.Data = m.Data
		if _, err := js.PublishMsg(ctx, out); err != nil {
			return fmt.Errorf("copy message %d to %s: %w", m.Sequence, m.Subject, err)
		}
		// Copied: gone from here, so that a migration broken off and run
		// again (after the duplicate window) does not copy it twice.
		if err := s.DeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("delete copied message %d: %w", m.Sequence, err)
		}
		moved++
	}
	if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	cfg.Log.Info().Str("stream", name).Int("moved", moved).Int("dropped", dropped).Msg("legacy stream migrated to the endpoints' own streams")
	return nil
}
