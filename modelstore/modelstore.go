// Package modelstore owns the JetStream Object Store bucket inference_models
// that holds model artifacts by model_id: import, list, delete, and fetching
// an artifact into a local cache directory with digest verification.
//
// Layout: one object per artifact file, plus one manifest per model.
//
//	<model_id>/<generation>/<relative path>   each file of the artifact directory
//	<model_id>/manifest.json                  Manifest, written last
//
// A model exists only when its manifest does: Import writes every file under
// a fresh generation first and the manifest last (an object's meta message
// is published after its chunks, so the manifest appears in one step).
// Readers trust nothing without a manifest; files of an interrupted import
// are orphans that Delete or the next Import of the id removes. A replacing
// Import writes a new generation, swaps the manifest, then deletes the old
// generation, so a reader never sees a mix of two imports.
//
// Per-file objects rather than one tar per model: each file carries its own
// SHA-256 digest that a worker checks as it downloads and again against its
// cache, a single corrupt file is re-fetched alone by its name, and nothing
// has to be unpacked. The manifest gives the atomicity a tar would.
package modelstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/inference/artifact"
	"github.com/jetinfer/jetinfer/inference/quantize"
)

// Bucket is the JetStream Object Store bucket that holds model artifacts.
const Bucket = "inference_models"

// ManifestObject is the name of a model's manifest object under its id.
const ManifestObject = "manifest.json"

// Errors callers branch on.
var (
	ErrNotFound       = errors.New("model not found")
	ErrExists         = errors.New("model already exists")
	ErrDigestMismatch = errors.New("model file digest mismatch")
	// ErrInvalid wraps invalid model ids and artifact directories.
	ErrInvalid = errors.New("invalid model")
	// ErrUnavailable wraps failures to reach the bucket itself.
	ErrUnavailable = errors.New("model store unavailable")
)

// MaxModelIDLength is Elasticsearch's limit on trained model ids.
const MaxModelIDLength = 64

var modelIDRe = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9_\-.]*[a-z0-9])?$`)

// ValidateModelID accepts Elasticsearch's trained model ids and the
// built-in ids; the error wraps ErrInvalid.
func ValidateModelID(id string) error {
	if config.FamilyOf(id) != config.FamilyImported { // built in: starts with a dot
		return nil
	}
	if len(id) > MaxModelIDLength {
		return fmt.Errorf("%w: model_id %q is longer than %d characters", ErrInvalid, id, MaxModelIDLength)
	}
	if !modelIDRe.MatchString(id) {
		return fmt.Errorf("%w: model_id %q must contain only lowercase alphanumerics, hyphens, underscores and dots, and start and end with a lowercase alphanumeric", ErrInvalid, id)
	}
	return nil
}

// File is one file of a model artifact.
type File struct {
	// Path is relative to the artifact directory, with '/' separators.
	Path string `json:"path"`
	Size int64  `json:"size"`
	// Digest is the object store's form: "SHA-256=" and base64url.
	Digest string `json:"digest"`
}

// Manifest describes one imported model; its presence makes the model exist.
type Manifest struct {
	ModelID string    `json:"model_id"`
	Created time.Time `json:"created"`
	// Generation names the import the files belong to: they are stored as
	// <model_id>/<generation>/<path>.
	Generation string `json:"generation"`
	Files      []File `json:"files"`
	// Size is the sum of the files' sizes.
	Size int64 `json:"size"`
	// Origin says where the files came from; nil for a directory import.
	Origin *Origin `json:"origin,omitempty"`
	// Precision is what the graph's weights run in (quantize.Precision: float32, float16, int8 or int4); "" for
	// a model imported before it was recorded.
	Precision string `json:"precision,omitempty"`
	// Quantized, set when jetinfer made the graph int8 at import, says how.
	Quantized *Quantized `json:"quantized,omitempty"`
	// Digest is the SHA-256 (hex) of the stored manifest itself, the
	// version of the model; set when read back, not stored.
	Digest string `json:"-"`
}

// Origin records the Hub repository an imported model came from.
type Origin struct {
	// URI is hf://org/name@commit/file.
	URI  string `json:"uri"`
	Repo string `json:"repo"`
	// Revision is what was asked for, Commit what it resolved to.
	Revision string `json:"revision"`
	Commit   string `json:"commit"`
	// File is the ONNX graph in the repository.
	File string `json:"file"`
	// StandsIn names the Elastic model this open model replaces under a
	// built-in id, when it does.
	StandsIn string `json:"stands_in,omitempty"`
}

// Quantized records the int8 copy of a float model made at import (package modelquant).
type Quantized struct {
	// From is the float model: its source or model id.
	From string `json:"from"`
	// Agreement is how closely the int8 model's outputs followed the float model's when it was checked.
	Agreement quantize.Agreement `json:"agreement"`
	// Forced says the model was stored although Agreement was beyond its bound.
	Forced bool `json:"forced,omitempty"`
	// Int8 counts the MatMul and Attention nodes made int8; Float lists the weighted nodes left in float, with the
	// reason.
	Int8  int               `json:"int8_nodes"`
	Float map[string]string `json:"float,omitempty"`
	// Fused counts the fused operators made before quantizing, by type (package fuse). In memory it is empty when
	// the fusions matched nothing and nil when they were not made; stored, both are absent.
	Fused map[string]int `json:"fused,omitempty"`
	// UnfusedReason says why the fusions were dropped after being made (modelquant.FuseAuto).
	UnfusedReason string `json:"unfused_reason,omitempty"`
}

func (m Manifest) objectName(f File) string {
	return m.ModelID + "/" + m.Generation + "/" + f.Path
}

// Config configures the bucket.
type Config struct {
	// Replicas is the bucket's replication factor in a JetStream cluster.
	Replicas int
}

// Store keeps model artifacts in the inference_models Object Store bucket.
type Store struct {
	obs jetstream.ObjectStore
}

// Open creates the bucket if needed and returns a store on it.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	if cfg.Replicas < 1 {
		cfg.Replicas = 1
	}
	obs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      Bucket,
		Description: "jetinfer model artifacts",
		Replicas:    cfg.Replicas,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: open bucket %s: %w", ErrUnavailable, Bucket, err)
	}
	return &Store{obs: obs}, nil
}

func unavailable(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// ImportOptions adjusts Import.
type ImportOptions struct {
	// Replace allows importing over an existing model id.
	Replace bool
	// Progress, if set, is called as bytes are uploaded.
	Progress func(done, total int64)
	// Origin, Precision and Quantized are recorded in the manifest.
	Origin    *Origin
	Precision string
	Quantized *Quantized
}

// Import uploads the artifact directory dir as modelID. dir must hold
// model.onnx and tokenizer.json; every regular file below it is uploaded
// (symbolic links are followed, names starting with '.' are skipped). An
// existing id is refused with ErrExists unless opts.Replace.
func (s *Store) Import(ctx context.Context, modelID, dir string, opts ImportOptions) (Manifest, error) {
	if err := ValidateModelID(modelID); err != nil {
		return Manifest{}, err
	}
	files, err := scanDir(dir)
	if err != nil {
		return Manifest{}, err
	}
	// previous is the generation this import replaces, removed once the new
	// manifest is written.
	previous := ""
	if cur, err := s.Get(ctx, modelID); err == nil {
		if !opts.Replace {
			return Manifest{}, fmt.Errorf("%w: %s", ErrExists, modelID)
		}
		previous = cur.Generation
	} else if !errors.Is(err, ErrNotFound) {
		return Manifest{}, err
	}
	var total int64
	for _, f := range files {
		total += f.Size
	}
	created := time.Now().UTC().Truncate(time.Second)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	m := Manifest{
		ModelID:    modelID,
		Created:    created,
		Generation: created.Format("20060102T150405Z") + "-" + hex.EncodeToString(rnd[:]),
		Origin:     opts.Origin,
		Precision:  opts.Precision,
		Quantized:  opts.Quantized,
	}
	progress := opts.Progress
	if progress == nil {
		progress = func(int64, int64) {}
	}
	progress(0, total)
	var done int64
	fail := func(err error) (Manifest, error) {
		// Best effort: without a manifest the files are invisible anyway,
		// and Delete removes what is left.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, f := range m.Files {
			_ = s.obs.Delete(cctx, m.objectName(f))
		}
		return Manifest{}, err
	}
	for _, f := range files {
		info, err := s.putFile(ctx, m.objectName(f), filepath.Join(dir, filepath.FromSlash(f.Path)), func(n int64) {
			done += n
			progress(done, total)
		})
		if err != nil {
			return fail(err)
		}
		f.Size, f.Digest = int64(info.Size), info.Digest
		m.Files = append(m.Files, f)
		m.Size += f.Size
	}
	if !opts.Replace { // narrow the window of a concurrent import of the same id
		if _, err := s.Get(ctx, modelID); err == nil {
			return fail(fmt.Errorf("%w: %s", ErrExists, modelID))
		}
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fail(err)
	}
	if _, err := s.obs.PutBytes(ctx, modelID+"/"+ManifestObject, data); err != nil {
		return fail(unavailable("put manifest of "+modelID, err))
	}
	m.Digest = hexDigest(data)
	// Only the generation replaced is removed, never "everything else": a
	// concurrent import of the same id (two workers importing a built-in
	// model) may be uploading its own generation right now.
	if previous != "" {
		s.removeGeneration(ctx, modelID, previous)
	}
	// Of concurrent imports the last manifest written wins; a loser
	// removes its own files (a fetch of them retries on the winner).
	if cur, err := s.Get(ctx, modelID); err == nil && cur.Generation != m.Generation {
		s.removeGeneration(ctx, modelID, m.Generation)
		if !opts.Replace {
			return Manifest{}, fmt.Errorf("%w: %s", ErrExists, modelID)
		}
		return cur, nil
	}
	return m, nil
}

func (s *Store) removeGeneration(ctx context.Context, modelID, generation string) {
	_ = s.removeObjects(ctx, modelID, func(name string) bool {
		return strings.HasPrefix(name, modelID+"/"+generation+"/")
	})
}

// scanDir lists the regular files of an artifact directory.
func scanDir(dir string) ([]File, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a directory", ErrInvalid, dir)
	}
	var files []File
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := os.Stat(p) // follows symbolic links (Hugging Face caches use them)
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil // directories are walked; symlinked directories are not followed
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files = append(files, File{Path: filepath.ToSlash(rel), Size: info.Size()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrInvalid, dir, err)
	}
	for _, req := range artifact.Required() {
		if !slices.ContainsFunc(files, func(f File) bool { return f.Path == req }) {
			return nil, fmt.Errorf("%w: %s has no %s", ErrInvalid, dir, req)
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

func (s *Store) putFile(ctx context.Context, name, file string, progress func(int64)) (*jetstream.ObjectInfo, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	// Without a deadline, nats.go gives each chunk's acknowledgement five
	// seconds, which a replicated store on a busy server can exceed.
	ctx, cancel := context.WithTimeout(ctx, transferTimeout(st.Size()))
	defer cancel()
	info, err := s.obs.Put(ctx, jetstream.ObjectMeta{Name: name}, &countingReader{r: f, progress: progress})
	if err != nil {
		return nil, unavailable("put "+name, err)
	}
	return info, nil
}

type countingReader struct {
	r        io.Reader
	progress func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.progress(int64(n))
	}
	return n, err
}

// Get returns the manifest of modelID; ErrNotFound if the model does not
// exist (or its import has not completed).
func (s *Store) Get(ctx context.Context, modelID string) (Manifest, error) {
	if err := ValidateModelID(modelID); err != nil {
		return Manifest{}, fmt.Errorf("%w: %s", ErrNotFound, modelID)
	}
	data, err := s.obs.GetBytes(ctx, modelID+"/"+ManifestObject)
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
		return Manifest{}, fmt.Errorf("%w: %s", ErrNotFound, modelID)
	case err != nil:
		return Manifest{}, unavailable("get manifest of "+modelID, err)
	}
	return parseManifest(modelID, data)
}

func parseManifest(modelID string, data []byte) (Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return Manifest{}, fmt.Errorf("%w: manifest of %s: %w", ErrInvalid, modelID, err)
	}
	if m.ModelID != modelID || m.Generation == "" || strings.Contains(m.Generation, "/") {
		return Manifest{}, fmt.Errorf("%w: manifest of %s names model %q, generation %q", ErrInvalid, modelID, m.ModelID, m.Generation)
	}
	for _, f := range m.Files {
		// Fetch writes these paths below the cache: they must stay there.
		if !filepath.IsLocal(filepath.FromSlash(f.Path)) || path.Clean(f.Path) != f.Path || f.Size < 0 || f.Digest == "" {
			return Manifest{}, fmt.Errorf("%w: manifest of %s has invalid file %q", ErrInvalid, modelID, f.Path)
		}
	}
	m.Digest = hexDigest(data)
	return m, nil
}

// List returns the manifest of every complete model, sorted by id. Models
// whose manifest cannot be read are left out.
func (s *Store) List(ctx context.Context) ([]Manifest, error) {
	objs, err := s.obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable("list", err)
	}
	var out []Manifest
	for _, o := range objs {
		id, ok := strings.CutSuffix(o.Name, "/"+ManifestObject)
		if !ok || strings.Contains(id, "/") || ValidateModelID(id) != nil {
			continue
		}
		m, err := s.Get(ctx, id)
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid) {
			continue // deleted meanwhile, or not ours
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ModelID < out[j].ModelID })
	return out, nil
}

// Delete removes modelID: its manifest first, so it disappears at once,
// then its files (and any left by interrupted imports). ErrNotFound if
// there is no such model; leftovers of interrupted imports are removed even
// then.
func (s *Store) Delete(ctx context.Context, modelID string) error {
	if err := ValidateModelID(modelID); err != nil {
		return fmt.Errorf("%w: %s", ErrNotFound, modelID)
	}
	_, getErr := s.Get(ctx, modelID)
	if getErr != nil && !errors.Is(getErr, ErrNotFound) && !errors.Is(getErr, ErrInvalid) {
		return getErr
	}
	if getErr == nil || errors.Is(getErr, ErrInvalid) {
		if err := s.obs.Delete(ctx, modelID+"/"+ManifestObject); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return unavailable("delete manifest of "+modelID, err)
		}
	}
	if err := s.removeObjects(ctx, modelID, func(string) bool { return true }); err != nil {
		return err
	}
	if errors.Is(getErr, ErrNotFound) {
		return getErr
	}
	return nil
}

// removeObjects deletes the objects under modelID/ that match.
func (s *Store) removeObjects(ctx context.Context, modelID string, match func(name string) bool) error {
	objs, err := s.obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil
	}
	if err != nil {
		return unavailable("list", err)
	}
	var errs []error
	for _, o := range objs {
		if strings.HasPrefix(o.Name, modelID+"/") && match(o.Name) {
			if err := s.obs.Delete(ctx, o.Name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return unavailable("delete files of "+modelID, errors.Join(errs...))
	}
	return nil
}

// Fetch makes modelID available in cacheDir/<model_id>/<manifest digest>/
// and returns that directory. A copy already there is used after checking
// every file's size and SHA-256 against the manifest; otherwise (or if the
// check fails) the files are downloaded into a temporary directory next to
// it, verified, and renamed into place, so the directory, once it exists,
// is complete.
func (s *Store) Fetch(ctx context.Context, modelID, cacheDir string) (string, error) {
	m, err := s.Get(ctx, modelID)
	if err != nil {
		return "", err
	}
	parent := filepath.Join(cacheDir, modelID)
	final := filepath.Join(parent, m.Digest)
	if _, err := os.Stat(final); err == nil {
		if verifyDir(final, m) == nil {
			return final, nil
		}
		if err := os.RemoveAll(final); err != nil {
			return "", fmt.Errorf("remove corrupt cache %s: %w", final, err)
		}
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(parent, ".fetch-")
	if err != nil {
		return "", err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	for _, f := range m.Files {
		if err := s.download(ctx, m, f, tmp); err != nil {
			return "", err
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		// Another fetcher may have put it there first.
		if verifyDir(final, m) == nil {
			return final, nil
		}
		return "", fmt.Errorf("install %s: %w", final, err)
	}
	return final, nil
}

// transferTimeout bounds one file's upload or download: a minute plus the
// time it takes at 2 MiB/s, far below what a healthy server delivers.
func transferTimeout(size int64) time.Duration {
	return time.Minute + time.Duration(size/(2<<20))*time.Second
}

func (s *Store) download(ctx context.Context, m Manifest, f File, dir string) error {
	name := m.objectName(f)
	// Without a deadline of its own, nats.go gives a whole Get five
	// seconds: too short for a model file of hundreds of megabytes.
	ctx, cancel := context.WithTimeout(ctx, transferTimeout(f.Size))
	defer cancel()
	obj, err := s.obs.Get(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("%w: %s: file %s is gone (model replaced or deleted during fetch?)", ErrNotFound, m.ModelID, f.Path)
	}
	if err != nil {
		return unavailable("get "+name, err)
	}
	dst := filepath.Join(dir, filepath.FromSlash(f.Path))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		_ = obj.Close()
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		_ = obj.Close()
		return err
	}
	// nats.go's object reader waits for data until the context's deadline
	// without noticing a cancellation, holding the lock Close needs (and a
	// connection closed mid-file sends it nothing more): the copy runs
	// beside, owns obj and out, and ends by that deadline at the latest,
	// while a cancelled fetch returns at once.
	type copied struct {
		n   int64
		err error
	}
	result := make(chan copied, 1)
	h := sha256.New()
	go func() {
		defer obj.Close()
		n, err := io.Copy(io.MultiWriter(out, h), obj)
		if err == nil {
			err = out.Sync()
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		result <- copied{n, err}
	}()
	var n int64
	select {
	case c := <-result:
		n, err = c.n, c.err
	case <-ctx.Done():
		return fmt.Errorf("download %s: %w", name, ctx.Err())
	}
	switch {
	case errors.Is(err, jetstream.ErrDigestMismatch):
		return fmt.Errorf("%w: %s: %s: %w", ErrDigestMismatch, m.ModelID, f.Path, err)
	case err != nil:
		return fmt.Errorf("download %s: %w", name, err)
	}
	if n != f.Size || digest(h) != f.Digest {
		return fmt.Errorf("%w: %s: %s: got %d bytes %s, manifest says %d bytes %s", ErrDigestMismatch, m.ModelID, f.Path, n, digest(h), f.Size, f.Digest)
	}
	return nil
}

// verifyDir checks every file of m in dir; the error wraps ErrDigestMismatch
// or the file system error.
func verifyDir(dir string, m Manifest) error {
	for _, f := range m.Files {
		if err := verifyFile(filepath.Join(dir, filepath.FromSlash(f.Path)), f); err != nil {
			return err
		}
	}
	return nil
}

func verifyFile(p string, f File) error {
	file, err := os.Open(p)
	if err != nil {
		return err
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() || st.Size() != f.Size {
		return fmt.Errorf("%w: %s: size %d, manifest says %d", ErrDigestMismatch, p, st.Size(), f.Size)
	}
	h := sha256.New()
	if _, err := io.Copy(h, file); err != nil {
		return err
	}
	if got := digest(h); got != f.Digest {
		return fmt.Errorf("%w: %s: %s, manifest says %s", ErrDigestMismatch, p, got, f.Digest)
	}
	return nil
}

// Digest renders data's SHA-256 the way the object store and manifests do.
func Digest(data []byte) string {
	h := sha256.New()
	h.Write(data)
	return digest(h)
}

func digest(h hash.Hash) string {
	return "SHA-256=" + base64.URLEncoding.EncodeToString(h.Sum(nil))
}

func hexDigest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
