package worker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/inference/artifact"
	"github.com/jetinfer/jetinfer/modelstore"
)

// fetchAttempts bounds the tries at fetching one model.
const fetchAttempts = 3

// models loads each model once per thread count and shares it between the
// endpoints and allocations of this process; the last release closes it.
type models struct {
	rt         *inference.Runtime
	store      *modelstore.Store
	repository string
	cacheDir   string
	log        zerolog.Logger

	mu      sync.Mutex
	entries map[modelKey]*modelEntry
	// importing serialises imports from the model repository.
	importing sync.Mutex
	// work counts loads and closes in progress: ONNX Runtime must outlive
	// them, so the worker waits for them before it returns from Close.
	work sync.WaitGroup
}

type modelKey struct {
	id      string
	threads int
}

type modelEntry struct {
	ready chan struct{} // closed when model or err is set
	model *inference.Model
	err   error
	refs  int
}

// acquire returns the loaded model and a release function, loading it on
// first use. Loading failures are not cached: the next acquire retries.
func (m *models) acquire(ctx context.Context, modelID string, threads int) (*inference.Model, func(), error) {
	key := modelKey{modelID, threads}
	m.mu.Lock()
	e, ok := m.entries[key]
	if !ok {
		e = &modelEntry{ready: make(chan struct{})}
		m.entries[key] = e
		m.work.Add(1)
		go func() {
			defer m.work.Done()
			m.load(key, e)
		}()
	}
	e.refs++
	m.mu.Unlock()

	select {
	case <-e.ready:
	case <-ctx.Done():
		m.release(key, e)
		return nil, nil, ctx.Err()
	}
	if e.err != nil {
		m.release(key, e)
		return nil, nil, e.err
	}
	var once sync.Once
	return e.model, func() { once.Do(func() { m.release(key, e) }) }, nil
}

func (m *models) release(key modelKey, e *modelEntry) {
	m.mu.Lock()
	e.refs--
	last := e.refs == 0
	if last && m.entries[key] == e {
		delete(m.entries, key)
	}
	m.mu.Unlock()
	if !last {
		return
	}
	m.work.Add(1)
	go func() {
		defer m.work.Done()
		<-e.ready
		if e.model != nil {
			// Close waits for the calls still running on the model.
			if err := e.model.Close(); err != nil {
				m.log.Warn().Err(err).Str("model_id", key.id).Msg("close model")
			}
		}
	}()
}

// wait returns when no load or close is in progress, or ctx ends.
func (m *models) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		m.work.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// load fetches and loads a model; it runs detached from any one caller,
// since callers that come later share the result.
func (m *models) load(key modelKey, e *modelEntry) {
	defer close(e.ready)
	ctx := context.Background()
	var dir string
	var err error
	for attempt := 1; ; attempt++ {
		dir, err = m.fetch(ctx, key.id)
		var es *eserror.Error
		// A model that is nowhere stays so; a download cut short by a
		// busy server usually succeeds the next time.
		if err == nil || errors.As(err, &es) || attempt == fetchAttempts {
			break
		}
		m.log.Warn().Err(err).Str("model_id", key.id).Int("attempt", attempt).Msg("fetch model; retrying")
		time.Sleep(time.Duration(attempt) * time.Second)
	}
	if err != nil {
		e.err = err
		return
	}
	e.model, e.err = inference.LoadModel(ctx, m.rt, dir, inference.LoadOptions{Threads: key.threads})
	if e.err != nil {
		e.err = eserror.Internal(e.err, "Could not deploy model [%s]: %s", key.id, e.err.Error())
		return
	}
	m.log.Info().Str("model_id", key.id).Int("threads", key.threads).Str("dir", dir).Msg("model loaded")
}

// fetch makes the model's files available locally: from the model store,
// where built-in models are first imported from the model repository.
func (m *models) fetch(ctx context.Context, modelID string) (string, error) {
	dir, err := m.store.Fetch(ctx, modelID, m.cacheDir)
	if !errors.Is(err, modelstore.ErrNotFound) {
		return dir, err
	}
	if config.FamilyOf(modelID) == config.FamilyImported || m.repository == "" {
		return "", modelNotFound(modelID)
	}
	src := filepath.Join(m.repository, modelID)
	if _, serr := os.Stat(filepath.Join(src, artifact.ONNXFile)); serr != nil {
		return "", modelNotFound(modelID)
	}
	m.importing.Lock()
	_, err = m.store.Import(ctx, modelID, src, modelstore.ImportOptions{})
	m.importing.Unlock()
	if err != nil && !errors.Is(err, modelstore.ErrExists) {
		return "", fmt.Errorf("import %s from the model repository: %w", src, err)
	}
	m.log.Info().Str("model_id", modelID).Str("source", src).Msg("built-in model imported from the model repository")
	return m.store.Fetch(ctx, modelID, m.cacheDir)
}

// modelNotFound is Elasticsearch's error when a deployment's model cannot
// be found, by model family.
func modelNotFound(modelID string) error {
	switch config.FamilyOf(modelID) {
	case config.FamilyELSER:
		return eserror.New(http.StatusNotFound, eserror.TypeResourceNotFound,
			"Could not start the ELSER service as the ELSER model for this platform cannot be found. ELSER needs to be downloaded before it can be started.")
	case config.FamilyE5:
		return eserror.New(http.StatusNotFound, eserror.TypeResourceNotFound,
			"Could not deploy model [%s] as the model cannot be found.", modelID)
	case config.FamilyRerank:
		return eserror.New(http.StatusNotFound, eserror.TypeResourceNotFound,
			"Could not start the Elastic Reranker Endpoint due to [Could not deploy model [%s] as the model cannot be found.]", modelID)
	}
	return eserror.New(http.StatusNotFound, eserror.TypeResourceNotFound,
		"Could not start the inference as the custom eland model [%s] for this platform cannot be found. Custom models need to be loaded into the cluster with eland before they can be started.", modelID)
}
