package worker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/cluster"
	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/consumer"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/hfhub"
	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/inference/artifact"
	"github.com/jetinfer/jetinfer/inference/quantize"
	"github.com/jetinfer/jetinfer/metrics"
	"github.com/jetinfer/jetinfer/modelquant"
	"github.com/jetinfer/jetinfer/modelsource"
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
	// Sources says where each built-in model comes from when the model
	// store does not have it yet; it is imported on first use.
	Sources modelsource.Table
	// Repository, a directory holding <dir>/<model_id>/, is that built-in
	// model's source instead; an http(s) URL of a mirror in the same layout
	// is the source of every built-in model (ES's
	// xpack.ml.model_repository, for clusters without internet access).
	Repository string
	// Hub downloads built-in models from the Hugging Face Hub; nil means
	// only Repository.
	Hub *hfhub.Client
	// Downloads makes one worker of the cluster download each model while
	// the others wait; nil downloads without asking.
	Downloads *cluster.Downloads
	// CacheDir holds the models fetched from the model store.
	CacheDir string
	// Metrics, when set, records model loads.
	Metrics *metrics.Metrics
	Log     zerolog.Logger
}

// ModelCache is the worker's Models: it fetches models from the model
// store into a local cache (importing built-in ones from their source on
// first use, once per cluster), loads each once per thread count on ONNX
// Runtime and shares it between the endpoints and allocations of this
// process; the last release closes it.
type ModelCache struct {
	rt         *inference.Runtime
	store      *modelstore.Store
	sources    modelsource.Table
	repository string
	hub        *hfhub.Client
	downloads  *cluster.Downloads
	mirror     *http.Client
	cacheDir   string
	metrics    *metrics.Metrics
	log        zerolog.Logger

	mu      sync.Mutex
	entries map[modelKey]*modelEntry
	// work counts loads and closes in progress: ONNX Runtime must outlive
	// them, so the worker waits for them before it returns from Close;
	// busy names them (under mu), for a Close that times out.
	work sync.WaitGroup
	busy map[string]int
	// quit, closed by Close, cancels the loads in progress.
	quit     chan struct{}
	quitOnce sync.Once
}

type modelKey struct {
	id      string
	threads int
}

func (k modelKey) String() string { return fmt.Sprintf("%s (%d threads)", k.id, k.threads) }

type modelEntry struct {
	ready   chan struct{} // closed when model or err is set
	model   *inference.Model
	timings *modelTimings
	err     error
	refs    int
}

// NewModelCache returns an empty cache.
func NewModelCache(cfg ModelCacheConfig) (*ModelCache, error) {
	if cfg.Runtime == nil || cfg.Store == nil {
		return nil, errors.New("worker: model cache needs the runtime and the model store")
	}
	return &ModelCache{
		rt: cfg.Runtime, store: cfg.Store, sources: cfg.Sources, repository: cfg.Repository, hub: cfg.Hub,
		downloads: cfg.Downloads, mirror: modelsource.NewMirrorClient(), cacheDir: cfg.CacheDir, metrics: cfg.Metrics, log: cfg.Log,
		entries: map[modelKey]*modelEntry{}, busy: map[string]int{}, quit: make(chan struct{}),
	}, nil
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

// graphCache is where the graphs ONNX Runtime optimized are kept: a
// dot-named directory of the model cache, which cachedModels does not take
// for a model ("" without a cache directory).
func (m *ModelCache) graphCache() string {
	if m.cacheDir == "" {
		return ""
	}
	return filepath.Join(m.cacheDir, ".graphs")
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
		m.busy[key.String()+" loading"]++
		go func() {
			defer m.done(key.String() + " loading")
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
	m.mu.Lock()
	m.busy[key.String()+" closing"]++
	m.mu.Unlock()
	go func() {
		defer m.done(key.String() + " closing")
		<-e.ready
		if e.model != nil {
			// Close waits for the calls still running on the model.
			if err := e.model.Close(); err != nil {
				m.log.Warn().Err(err).Str("model_id", key.id).Msg("close model")
			}
		}
	}()
}

// Close cancels the loads in progress and returns when no load or close
// is in progress, or ctx ends.
func (m *ModelCache) Close(ctx context.Context) error {
	m.quitOnce.Do(func() { close(m.quit) })
	defer m.mirror.CloseIdleConnections()
	done := make(chan struct{})
	go func() {
		m.work.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		m.mu.Lock()
		defer m.mu.Unlock()
		var busy []string
		for what, n := range m.busy {
			busy = append(busy, fmt.Sprintf("%s ×%d", what, n))
		}
		slices.Sort(busy)
		return fmt.Errorf("%w (still running: %s)", ctx.Err(), strings.Join(busy, ", "))
	}
}

// done ends one piece of work counted in work and busy.
func (m *ModelCache) done(what string) {
	m.mu.Lock()
	if m.busy[what]--; m.busy[what] <= 0 {
		delete(m.busy, what)
	}
	m.mu.Unlock()
	m.work.Done()
}

// load fetches and loads a model; it runs detached from any one caller,
// since callers that come later share the result.
func (m *ModelCache) load(key modelKey, e *modelEntry) {
	defer close(e.ready)
	defer m.recordLoad(key.id, time.Now(), e)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // owned by load: ends with it
		select {
		case <-m.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	var dir string
	var err error
	for attempt := 1; ; attempt++ {
		dir, err = m.fetch(ctx, key.id)
		var es *eserror.Error
		// A model that is nowhere stays so, and a failed download has
		// retried already (hfhub); a fetch from the model store cut short
		// by a busy server usually succeeds the next time.
		if err == nil || errors.As(err, &es) || attempt == fetchAttempts || ctx.Err() != nil {
			break
		}
		m.log.Warn().Err(err).Str("model_id", key.id).Int("attempt", attempt).Msg("fetch model; retrying")
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt) * time.Second):
		}
	}
	if err != nil {
		e.err = err
		return
	}
	e.timings = newModelTimings(key)
	e.model, e.err = inference.LoadModel(ctx, m.rt, dir, inference.LoadOptions{Threads: key.threads, Timings: e.timings, GraphCache: m.graphCache()})
	if e.err != nil {
		e.err = eserror.Internal(e.err, "Could not deploy model [%s]: %s", key.id, e.err.Error())
		return
	}
	m.log.Info().Str("model_id", key.id).Int("threads", key.threads).Str("dir", dir).Msg("model loaded")
}

// fetch makes the model's files available locally: from the model store,
// where built-in models are first imported from their source.
func (m *ModelCache) fetch(ctx context.Context, modelID string) (string, error) {
	dir, err := m.store.Fetch(ctx, modelID, m.cacheDir)
	if !errors.Is(err, modelstore.ErrNotFound) {
		return dir, err
	}
	b, ok := m.builtIn(modelID)
	if !ok {
		return "", modelNotFound(modelID)
	}
	if err := m.importBuiltIn(ctx, b); err != nil {
		return "", err
	}
	return m.store.Fetch(ctx, modelID, m.cacheDir)
}

// builtIn returns where a built-in model comes from: the model
// repository's directory when it has one, else the source table.
func (m *ModelCache) builtIn(modelID string) (modelsource.BuiltIn, bool) {
	b, ok := m.sources.Lookup(modelID)
	if !ok {
		return b, false
	}
	switch {
	case modelsource.IsURL(m.repository):
		// A mirror is the source of every built-in model, as
		// xpack.ml.model_repository is.
		b.Source, b.Config, b.StandsIn = modelsource.Source{URL: strings.TrimRight(m.repository, "/") + "/" + modelID}, "", ""
	case m.repository != "":
		dir := filepath.Join(m.repository, modelID)
		if _, err := os.Stat(filepath.Join(dir, artifact.ONNXFile)); err == nil {
			b.Source, b.Config, b.StandsIn = modelsource.Source{Dir: dir}, "", ""
		}
	}
	if b.Source.Repo != "" && m.hub == nil {
		return b, false
	}
	return b, true
}

// importBuiltIn imports a built-in model into the model store, once per
// cluster: one worker downloads while the others wait for its result.
func (m *ModelCache) importBuiltIn(ctx context.Context, b modelsource.BuiltIn) error {
	log := m.log.With().Str("model_id", b.ModelID).Str("source", b.Source.String()).Logger()
	stored := func(ctx context.Context) (bool, error) {
		_, err := m.store.Get(ctx, b.ModelID)
		if errors.Is(err, modelstore.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	fetch := func(ctx context.Context, progress func(done, total int64)) error {
		if b.StandsIn != "" {
			log.Info().Str("stands_in_for", b.StandsIn).Msg("downloading an open stand-in model for a built-in id")
		} else {
			log.Info().Msg("importing built-in model")
		}
		var last time.Time
		var counted int64
		start := time.Now()
		var toInt8 func(ctx context.Context, src, dst string) (*modelstore.Quantized, error)
		if b.Int8 {
			toInt8 = func(ctx context.Context, src, dst string) (*modelstore.Quantized, error) {
				return m.quantizeBuiltIn(ctx, b, src, dst, log)
			}
		}
		_, err := modelsource.Import(ctx, m.store, m.hub, modelsource.Request{ModelID: b.ModelID, Source: b.Source,
			Config: b.Config, StandsIn: b.StandsIn, HTTP: m.mirror, Quantize: toInt8,
			// A dot-named directory: cachedModels does not take it for a model.
			StageDir: filepath.Join(m.cacheDir, ".staging"),
			Downloaded: func(done, total int64) {
				progress(done, total)
				if m.metrics != nil && done > counted {
					m.metrics.ModelDownloadBytes.WithLabelValues(b.ModelID).Add(float64(done - counted))
				}
				counted = done
				if now := time.Now(); now.Sub(last) >= 5*time.Second || done == total {
					last = now
					log.Info().Int64("bytes_done", done).Int64("bytes_total", total).Msg("downloading model")
				}
			}})
		switch {
		case errors.Is(err, modelstore.ErrExists): // another import won the race
			err = nil
		case err != nil:
			log.Warn().Err(err).Msg("import built-in model")
			// Recorded for the workers that wait on this download.
			return importFailed(b, err)
		}
		log.Info().Dur("took", time.Since(start)).Msg("built-in model imported into the model store")
		return nil
	}
	if m.downloads == nil {
		return fetch(ctx, func(int64, int64) {})
	}
	err := m.downloads.Once(ctx, b.ModelID, b.Source.String(), stored, fetch)
	// A failure of another worker's download comes as the Elasticsearch
	// error that worker reported: answered here as it was there.
	var other *cluster.StartError
	if errors.As(err, &other) {
		if es, perr := eserror.Parse(other.Body); perr == nil {
			return es
		}
	}
	return err
}

// quantizeBuiltIn makes the int8 copy of a built-in id's float model (modelquant.Write). A graph that is int8
// already is stored as it is; one whose int8 copy cannot be made or strays beyond its accuracy bound is stored in
// float with a warning, so that the default endpoints always start (the stats report the precision that runs).
func (m *ModelCache) quantizeBuiltIn(ctx context.Context, b modelsource.BuiltIn, src, dst string, log zerolog.Logger) (*modelstore.Quantized, error) {
	start := time.Now()
	rec, err := modelquant.Write(ctx, modelquant.Config{Runtime: m.rt, From: b.Source.String()}, src, dst)
	switch {
	case err == nil:
		log.Info().Str("agreement", rec.Agreement.String()).Int("int8_nodes", rec.Int8).Int("float_nodes", len(rec.Float)).
			Interface("fused", rec.Fused).Str("unfused_reason", rec.UnfusedReason).Dur("took", time.Since(start)).Msg("built-in model quantized to int8")
		return rec, nil
	case errors.Is(err, quantize.ErrAlreadyQuantized):
		return nil, nil
	case ctx.Err() != nil:
		return nil, err
	}
	log.Warn().Err(err).Msg("built-in model kept in float: its int8 copy could not be used")
	return nil, nil
}

// importFailed is the Elasticsearch error of a built-in model that could
// not be imported: "cannot be found" with the cause when the source does
// not have a usable model (fixed only by the user), a 500 otherwise.
func importFailed(b modelsource.BuiltIn, err error) error {
	for _, userErr := range []error{hfhub.ErrRepoNotFound, hfhub.ErrRevisionNotFound, hfhub.ErrEntryNotFound,
		hfhub.ErrUnauthorized, hfhub.ErrOffline, modelsource.ErrNoONNX, modelsource.ErrAmbiguousONNX,
		modelsource.ErrNoTokenizer, modelsource.ErrBadTokenizer, modelstore.ErrInvalid} {
		if errors.Is(err, userErr) {
			e := modelNotFound(b.ModelID)
			e.Cause = eserror.NotFound("%s", err.Error())
			return e
		}
	}
	return eserror.Internal(err, "Could not download model [%s] from [%s]", b.ModelID, b.Source)
}

// modelNotFound is Elasticsearch's error when a deployment's model cannot
// be found, by model family.
func modelNotFound(modelID string) *eserror.Error {
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
