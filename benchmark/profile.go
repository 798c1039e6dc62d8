package benchmark

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// OperatorTime is one operator type's share of a profiled model's forward passes.
type OperatorTime struct {
	Op    string
	Time  time.Duration
	Calls int
}

// Profile is the kernel time of a model's forward passes by operator type, the slowest first.
type Profile []OperatorTime

// Total is the kernel time of every operator.
func (p Profile) Total() time.Duration {
	var t time.Duration
	for _, o := range p {
		t += o.Time
	}
	return t
}

// Of is the time of one operator type (0 when it never ran).
func (p Profile) Of(op string) time.Duration {
	if i := slices.IndexFunc(p, func(o OperatorTime) bool { return o.Op == op }); i >= 0 {
		return p[i].Time
	}
	return 0
}

// profileEvent is the part of an ONNX Runtime profile event read here: each operator's run is a "Node" event
// named after its node with "_kernel_time" (beside "_fence_before" and "_fence_after"), lasting dur µs.
type profileEvent struct {
	Cat  string `json:"cat"`
	Name string `json:"name"`
	Dur  int64  `json:"dur"`
	Args struct {
		OpName string `json:"op_name"`
	} `json:"args"`
}

// profileFiles are the profiles ONNX Runtime wrote for one inference.LoadOptions.Profile prefix (one per session
// loaded with it: prefix_<date>_<time>.json).
func profileFiles(prefix string) ([]string, error) {
	dir, base := filepath.Split(prefix)
	entries, err := os.ReadDir(cmp.Or(dir, "."))
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		if name := e.Name(); !e.IsDir() && strings.HasPrefix(name, base+"_") && strings.HasSuffix(name, ".json") {
			files = append(files, filepath.Join(dir, name))
		}
	}
	return files, nil
}

// ReadProfiles adds up the operators' kernel times in the profiles ONNX Runtime wrote for one
// inference.LoadOptions.Profile prefix.
func ReadProfiles(prefix string) (Profile, error) {
	files, err := profileFiles(prefix)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no ONNX Runtime profile named %s_*.json", prefix)
	}
	byOp := map[string]*OperatorTime{}
	for _, f := range files {
		if err := addProfile(f, byOp); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
	}
	p := make(Profile, 0, len(byOp))
	for _, o := range byOp {
		p = append(p, *o)
	}
	slices.SortFunc(p, func(a, b OperatorTime) int { return cmp.Or(cmp.Compare(b.Time, a.Time), strings.Compare(a.Op, b.Op)) })
	return p, nil
}

func addProfile(path string, byOp map[string]*OperatorTime) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var events []profileEvent
	if err := json.Unmarshal(data, &events); err != nil {
		return err
	}
	for _, e := range events {
		if e.Cat != "Node" || !strings.HasSuffix(e.Name, "_kernel_time") || e.Args.OpName == "" {
			continue
		}
		o := byOp[e.Args.OpName]
		if o == nil {
			o = &OperatorTime{Op: e.Args.OpName}
			byOp[e.Args.OpName] = o
		}
		o.Time += time.Duration(e.Dur) * time.Microsecond
		o.Calls++
	}
	return nil
}

// WriteProfiles prints, for each profiled int8 row, the operator types that took most of the float model's or the
// int8 copy's kernel time: what int8 sped up, and what it left as it was.
func WriteProfiles(w io.Writer, rows []Int8Result, top int) {
	for _, r := range rows {
		if r.FloatProfile == nil {
			continue
		}
		ft, it := r.FloatProfile.Total(), r.Int8Profile.Total()
		if ft <= 0 || it <= 0 {
			fmt.Fprintf(w, "%s, %d thread(s): a profile without operator times\n\n", r.Name, r.Threads)
			continue
		}
		fmt.Fprintf(w, "%s, %d thread(s): kernel time float %s, int8 %s (%.2f×)\n\n", r.Name, r.Threads,
			ft.Round(time.Millisecond), it.Round(time.Millisecond), ft.Seconds()/it.Seconds())
		fmt.Fprintln(w, "| operator | float | share | int8 | share |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
		var ops []string
		for _, p := range []Profile{r.FloatProfile, r.Int8Profile} {
			for _, o := range p[:min(top, len(p))] {
				if !slices.Contains(ops, o.Op) {
					ops = append(ops, o.Op)
				}
			}
		}
		cell := func(d, total time.Duration) string {
			if d == 0 {
				return "| | "
			}
			return fmt.Sprintf("| %d ms | %.1f%% ", d.Milliseconds(), 100*d.Seconds()/total.Seconds())
		}
		for _, op := range ops {
			fmt.Fprintf(w, "| %s %s%s|\n", op, cell(r.FloatProfile.Of(op), ft), cell(r.Int8Profile.Of(op), it))
		}
		fmt.Fprintln(w)
	}
}
