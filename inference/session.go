package inference

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/jetinfer/jetinfer/inference/artifact"
)

// session is one ONNX Runtime session: the graph and its weights, loaded
// once. ORT sessions accept concurrent Run calls, so all allocations of a
// model in a process share one session and its weights; what differs per
// allocation is only the goroutine that calls run.
type session struct {
	s      *ort.DynamicAdvancedSession
	output string
	// beforeRun, nil in production, is a test hook called by run just before
	// ORT runs, once ctx's Terminate callback is registered; terminated is
	// closed when that callback has returned.
	beforeRun func(ctx context.Context, terminated <-chan struct{})
}

// runSettings are what a session's options come from.
type runSettings struct {
	// threads is ORT's intra-op thread count per Run: the endpoint's num_threads.
	threads int
	// profile, when set, makes ORT profile every operator of every Run
	// into a file whose name starts with profile (see LoadOptions.Profile).
	profile string
}

// sessionOptions are the ORT settings for CPU inference with variable
// shapes.
func sessionOptions(rs runSettings) (*ort.SessionOptions, error) {
	threads := rs.threads
	o, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	err = errors.Join(
		// intra-op threads per Run: the endpoint's num_threads. With one
		// thread, each concurrent Run executes on its caller's thread only,
		// so N allocations are N parallel single-threaded runs.
		o.SetIntraOpNumThreads(threads),
		o.SetInterOpNumThreads(1),
		o.SetExecutionMode(ort.ExecutionModeSequential),
		o.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll),
		// Every batch has a different shape, so memory patterns cannot be
		// reused. The arena must stay on: without it every intermediate
		// tensor is a fresh mmap, and an 8×512-token batch of a MiniLM-L12
		// model ran 7.5× slower, mostly in the kernel (a one-off probe: 295
		// vs 2,221 tokens/s). The token budget bounds what the arena keeps.
		o.SetMemPattern(false),
		o.SetCpuMemArena(true),
		// A Run on several threads wakes its pool threads for every
		// parallel operator; letting them spin between operators made the
		// int8 reranker's two-thread runs 6% faster (int8 runs many short
		// operators). They stop spinning when the last concurrent Run
		// returns, so an idle session burns nothing. A single-thread
		// session has no pool threads.
		o.AddSessionConfigEntry("session.intra_op.allow_spinning", spinning(threads)),
		o.AddSessionConfigEntry("session.force_spinning_stop", "1"),
	)
	if rs.profile != "" {
		err = errors.Join(err, o.EnableProfiling(rs.profile))
	}
	if err != nil {
		_ = o.Destroy()
		return nil, err
	}
	return o, nil
}

func spinning(threads int) string {
	if threads > 1 {
		return "1"
	}
	return "0"
}

// inspectOptions are the ORT settings of the temporary session that
// graphInfo builds only to read the graph's inputs and outputs: one thread
// that does not spin and no graph optimisation, so that inspecting costs
// little next to the serving session newSession builds afterwards.
func inspectOptions() (*ort.SessionOptions, error) {
	o, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	err = errors.Join(
		o.SetIntraOpNumThreads(1),
		o.SetInterOpNumThreads(1),
		o.SetExecutionMode(ort.ExecutionModeSequential),
		o.SetGraphOptimizationLevel(ort.GraphOptimizationLevelDisableAll),
		o.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"),
	)
	if err != nil {
		_ = o.Destroy()
		return nil, err
	}
	return o, nil
}

// graphInfo returns the graph's inputs and outputs as resolve needs them.
func graphInfo(path string) (inputs, outputs []tensorInfo, err error) {
	opts, err := inspectOptions()
	if err != nil {
		return nil, nil, fmt.Errorf("session options: %w", err)
	}
	defer func() { _ = opts.Destroy() }()
	in, out, err := ort.GetInputOutputInfoWithOptions(path, opts)
	if err != nil {
		// A graph ORT cannot load is an invalid model.
		return nil, nil, fmt.Errorf("%w: %s: %w", ErrInvalidModel, artifact.ONNXFile, err)
	}
	conv := func(infos []ort.InputOutputInfo) []tensorInfo {
		ts := make([]tensorInfo, len(infos))
		for i, info := range infos {
			ts[i] = tensorInfo{Name: info.Name, Type: typeName(info), Dims: info.Dimensions}
		}
		return ts
	}
	return conv(in), conv(out), nil
}

func typeName(info ort.InputOutputInfo) string {
	if info.OrtValueType != ort.ONNXTypeTensor {
		return info.OrtValueType.String()
	}
	switch info.DataType {
	case ort.TensorElementDataTypeFloat:
		return "Float"
	case ort.TensorElementDataTypeInt64:
		return "Int64"
	}
	return info.DataType.String()
}

// newSession loads the graph from its file, so that the weights are read
// once, into ORT, and never held in Go memory as well. With a cache, a
// graph ORT optimized before is loaded as it was saved, without optimizing
// again; a graph optimized now is saved for the next load.
func newSession(path string, inputs []string, output string, rs runSettings, cache graphCache) (*session, error) {
	optimized := cache.path(path)
	if optimized != "" {
		if _, err := os.Stat(optimized); err == nil {
			if s, err := openSession(optimized, inputs, output, rs, "", true); err == nil {
				return s, nil
			}
			// Unreadable (a partial copy, a changed ORT): made again below.
			_ = os.Remove(optimized)
		}
		if err := os.MkdirAll(cache.dir, 0o755); err != nil {
			optimized = ""
		}
	}
	if optimized == "" {
		return openSession(path, inputs, output, rs, "", false)
	}
	// A name of its own: another load of the same graph (this process or
	// another) may be saving it at the same time.
	f, err := os.CreateTemp(cache.dir, filepath.Base(optimized)+".*.tmp")
	if err != nil {
		return openSession(path, inputs, output, rs, "", false)
	}
	tmp := f.Name()
	_ = f.Close()
	s, err := openSession(path, inputs, output, rs, tmp, false)
	if err != nil {
		// Saving may be what failed (a full disk, a graph too large for
		// one file): the model loads all the same, uncached.
		_ = os.Remove(tmp)
		return openSession(path, inputs, output, rs, "", false)
	}
	if err := os.Rename(tmp, optimized); err != nil {
		_ = os.Remove(tmp)
	}
	return s, nil
}

// openSession creates the session of the graph in path; saveTo, when set,
// is where ORT writes the graph it optimized, and preoptimized loads a
// graph so written without optimizing it again.
func openSession(path string, inputs []string, output string, rs runSettings, saveTo string, preoptimized bool) (*session, error) {
	opts, err := sessionOptions(rs)
	if err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	defer func() { _ = opts.Destroy() }()
	if saveTo != "" {
		err = opts.SetOptimizedModelFilePath(saveTo)
	}
	if preoptimized {
		err = errors.Join(err, opts.SetGraphOptimizationLevel(ort.GraphOptimizationLevelDisableAll))
	}
	if err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	s, err := ort.NewDynamicAdvancedSession(path, inputs, []string{output}, opts)
	if err != nil {
		// A graph ORT cannot load is an invalid model.
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidModel, artifact.ONNXFile, err)
	}
	return &session{s: s, output: output}, nil
}

func (s *session) close() error { return s.s.Destroy() }

// batchInput is one padded batch: row-major [rows, seq] int64 matrices.
type batchInput struct {
	rows, seq int
	ids       []int64
	mask      []int64
	types     []int64 // nil when the graph has no token types
	positions []int64 // nil when the graph has no position_ids
}

// run executes the graph on in and returns the output's data, written
// straight into a tensor of outShape when the shape is known, or allocated
// by ORT (and copied by onnxruntime_go) otherwise. It returns only after ORT
// has stopped reading the inputs: a cancelled ctx terminates the run early,
// and the tensors and the RunOptions are freed after Run returns and after
// any Terminate call has returned, never while C code may still use them.
//
// Its errors are runtime failures (or ctx's error), not ErrInvalidModel,
// except when the graph's output is not a float32 tensor.
func (s *session) run(ctx context.Context, in batchInput, outShape []int64) ([]float32, []int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	shape := ort.NewShape(int64(in.rows), int64(in.seq))
	var values []ort.Value
	defer func() {
		for _, v := range values {
			_ = v.Destroy()
		}
	}()
	for _, data := range [][]int64{in.ids, in.mask, in.types, in.positions} {
		if data == nil {
			continue
		}
		t, err := ort.NewTensor(shape, data)
		if err != nil {
			return nil, nil, fmt.Errorf("input tensor: %w", err)
		}
		values = append(values, t)
	}
	outputs := []ort.Value{nil}
	var out *ort.Tensor[float32]
	if outShape != nil {
		t, err := ort.NewEmptyTensor[float32](ort.NewShape(outShape...))
		if err != nil {
			return nil, nil, fmt.Errorf("output tensor: %w", err)
		}
		out = t
		outputs[0] = t
	}

	ro, err := ort.NewRunOptions()
	if err != nil {
		if out != nil {
			_ = out.Destroy()
		}
		return nil, nil, fmt.Errorf("run options: %w", err)
	}
	defer func() { _ = ro.Destroy() }()
	// stop does not wait for a callback that has already started: done says
	// when Terminate has returned, so that ro is never destroyed under it.
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(done)
		_ = ro.Terminate()
	})
	if s.beforeRun != nil {
		s.beforeRun(ctx, done)
	}
	runErr := s.s.RunWithOptions(values, outputs, ro)
	if !stop() {
		<-done
	}
	if outputs[0] != nil {
		values = append(values, outputs[0])
	}
	if runErr != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("onnx run: %w", runErr)
	}
	t, ok := outputs[0].(*ort.Tensor[float32])
	if !ok {
		return nil, nil, invalid("output %q is not a float32 tensor", s.output)
	}
	// The data is Go memory in both cases (onnxruntime_go copies what ORT
	// allocates), so it outlives the tensor's destruction on return.
	return t.GetData(), t.GetShape().Clone(), nil
}
