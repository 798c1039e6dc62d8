package worker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/consumer"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/inference/artifact"
	"github.com/jetinfer/jetinfer/modelstore"
	"github.com/jetinfer/jetinfer/pipeline"
)

// fetchAttempts bounds the tries at fetching one model.
const fetchAttempts = 3

// ModelCacheConfig configures a ModelCache.
type ModelCacheConfig struct {
	Runtime *inference.Runtime
	// Store holds the imported models.
	Store *modelstore.Store
	// Repository holds built-in models as <dir>/<model_id>/ (ES's
	// xpack.ml.model_repository); they are imported on first use.
	Repository string
	// CacheDir holds the models fetched from the model store.
	CacheDir string
	Log      zerolog.Logger
}

// ModelCache is the worker's Models: it fetches models from the model
// store into a local cache (importing built-in ones from the repository on
// first use), loads each once per thread count on ONNX Runtime and shares
// it between the endpoints and allocations of this process; the last
// release closes it.
type ModelCache struct {
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

// NewModelCache returns an empty cache.
func NewModelCache(cfg ModelCacheConfig) (*ModelCache, error) {
	if cfg.Runtime == nil || cfg.Store == nil {
		return nil, errors.New("worker: model cache needs the runtime and the model store")
	}
	return &ModelCache{rt: cfg.Runtime, store: cfg.Store, repository: cfg.Repository, cacheDir: cfg.CacheDir,
		log: cfg.Log, entries: map[modelKey]*modelEntry{}}, nil
}

// loaded is an inference.Model as the worker uses it.
type loaded struct {
	m   *inference.Model
	log zerolog.Logger
}

func (l loaded) Task() config.TaskType { return config.TaskType(l.m.Spec().Task) }

func (l loaded) Runner(ep config.Endpoint, maxResultBytes int64) consumer.Runner {
	return pipeline.Runner{Model: l.m, Endpoint: ep, MaxResultBytes: maxResultBytes,
		Log: l.log.With().Str("inference_id", ep.InferenceID).Logger()}
}

// Cached lists the model ids with a complete copy in the local cache.
func (m *ModelCache) Cached() []string { return cachedModels(m.cacheDir) }

// Acquire returns the loaded model and a release function, loading it on
// first use. Loading failures are not cached: the next Acquire retries.
func (m *ModelCache) Acquire(ctx context.Context, modelID string, threads int) (Model, func(), error) {
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
	return loaded{m: e.model, log: m.log}, func() { once.Do(func() { m.release(key, e) }) }, nil
}

func (m *ModelCache) release(key modelKey, e *modelEntry) {
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

// Wait returns when no load or close is in progress, or ctx ends.
func (m *ModelCache) Wait(ctx context.Context) error {
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
func (m *ModelCache) load(key modelKey, e *modelEntry) {
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
func (m *ModelCache) fetch(ctx context.Context, modelID string) (string, error) {
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

// cachedModels lists the model ids with a complete copy in the cache:
// <cache>/<model_id>/<digest>/ (Fetch renames a download into place only
// once it is verified; partial downloads start with a dot).
func cachedModels(cacheDir string) []string {
	dirs, err := os.ReadDir(cacheDir)
	if err != nil {
		return nil
	}
	var out []string
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		versions, err := os.ReadDir(filepath.Join(cacheDir, d.Name()))
		if err != nil {
			continue
		}
		for _, v := range versions {
			if v.IsDir() && !strings.HasPrefix(v.Name(), ".") {
				out = append(out, d.Name())
				break
			}
		}
	}
	return out
}
