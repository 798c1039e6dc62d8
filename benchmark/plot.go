package benchmark

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Colours of the scaling plot.
var (
	colArrivals = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	colBacklog  = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	colResults  = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
	colPlanned  = color.RGBA{A: 0xff}
	colRunning  = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
	colPhase    = color.RGBA{R: 0x99, G: 0x99, B: 0x99, A: 0xff}
)

// PlotScaling draws the scaling demo as a PNG at path: documents (arrivals
// and results per second, backlog) above, allocations (planned, as the
// plan changed; running, as the node reported each second) below, on one
// time axis, with the burst and the end of the steady load marked.
func PlotScaling(r ScalingResult, path string) error {
	if len(r.Rows) == 0 {
		return fmt.Errorf("plot %s: no seconds recorded", path)
	}
	end := float64(r.Rows[len(r.Rows)-1].T)

	docs := plot.New()
	p := r.Profile
	docs.Title.Text = fmt.Sprintf("Adaptive allocations: idle %s, burst of %d, %.0f documents/s for %s, idle\n%s; up to %d × 1-thread allocations, budget %d processors",
		p.Idle, p.BurstDocs, p.SteadyRate, p.Steady, r.Model, p.MaxAllocations, p.Processors)
	docs.Y.Label.Text = "documents"
	docs.Y.Min = 0
	docs.Legend.Top = true
	arrivals, results, backlog := make(plotter.XYs, 0, len(r.Rows)+1), make(plotter.XYs, 0, len(r.Rows)+1), make(plotter.XYs, 0, len(r.Rows)+1)
	running := make(plotter.XYs, 0, len(r.Rows)+1)
	arrivals = append(arrivals, plotter.XY{})
	results = append(results, plotter.XY{})
	backlog = append(backlog, plotter.XY{})
	running = append(running, plotter.XY{Y: float64(r.Rows[0].Running)})
	for _, row := range r.Rows {
		t := float64(row.T)
		// Counts cover the second before T: a pre-step draws them over it.
		arrivals = append(arrivals, plotter.XY{X: t, Y: float64(row.Arrivals)})
		results = append(results, plotter.XY{X: t, Y: float64(row.Results)})
		if row.Backlog >= 0 {
			backlog = append(backlog, plotter.XY{X: t, Y: float64(row.Backlog)})
		}
		running = append(running, plotter.XY{X: t, Y: float64(row.Running)})
	}
	maxDocs := 1.0
	for _, xy := range append(append(arrivals[:len(arrivals):len(arrivals)], backlog...), results...) {
		maxDocs = max(maxDocs, xy.Y)
	}
	for _, s := range []struct {
		name  string
		xys   plotter.XYs
		col   color.Color
		width vg.Length
		step  plotter.StepKind
	}{
		{"arrivals / s", arrivals, colArrivals, 1.5, plotter.PreStep},
		{"results / s", results, colResults, 1.5, plotter.PreStep},
		{"backlog (pending + in hand)", backlog, colBacklog, 2.5, plotter.NoStep},
	} {
		l, err := plotter.NewLine(s.xys)
		if err != nil {
			return fmt.Errorf("plot %s: %w", s.name, err)
		}
		l.Color, l.Width, l.StepStyle = s.col, s.width, s.step
		docs.Add(l)
		docs.Legend.Add(s.name, l)
	}

	allocs := plot.New()
	allocs.X.Label.Text = "time (s)"
	allocs.Y.Label.Text = "allocations"
	allocs.Legend.Top = true
	// The plan's changes are timed to the write: a post-step holds each
	// target until the next.
	planned := plotter.XYs{}
	for i, c := range r.Targets {
		x := max(c.At.Seconds(), 0)
		if i == 0 {
			x = 0
		}
		planned = append(planned, plotter.XY{X: x, Y: float64(c.Target)})
	}
	maxAllocs := 1
	if len(planned) > 0 {
		planned = append(planned, plotter.XY{X: end, Y: planned[len(planned)-1].Y})
		pl, err := plotter.NewLine(planned)
		if err != nil {
			return fmt.Errorf("plot planned allocations: %w", err)
		}
		pl.Color, pl.Width, pl.StepStyle = colPlanned, 2.5, plotter.PostStep
		allocs.Add(pl)
		allocs.Legend.Add("planned (inference_plan target)", pl)
	}
	rl, err := plotter.NewLine(running)
	if err != nil {
		return fmt.Errorf("plot running allocations: %w", err)
	}
	rl.Color, rl.Width, rl.StepStyle = colRunning, 1.5, plotter.PreStep
	rl.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	allocs.Add(rl)
	allocs.Legend.Add("running (node registry, each second)", rl)
	for _, xy := range append(planned, running...) {
		maxAllocs = max(maxAllocs, int(xy.Y))
	}
	allocs.Y.Min = 0
	ticks := make([]plot.Tick, 0, maxAllocs+1)
	for i := 0; i <= maxAllocs+1; i++ {
		ticks = append(ticks, plot.Tick{Value: float64(i), Label: fmt.Sprint(i)})
	}
	allocs.Y.Tick.Marker = plot.ConstantTicks(ticks)
	docs.Y.Max = maxDocs * 1.25 // room for the legend above the data
	allocs.Y.Max = float64(maxAllocs) + 1.5

	// The phase boundaries, in both panels, named in the allocations
	// panel between one allocation and the most: the burst to the left of
	// its line (the target rises just after it), the end of the load to
	// the right.
	labelY := 1 + float64(maxAllocs-1)/2
	if maxAllocs <= 1 {
		labelY = 0.5
	}
	for _, m := range []struct {
		at    float64
		name  string
		align draw.XAlignment
	}{{r.BurstAt.Seconds(), "burst ", draw.XRight}, {r.SteadyEnd.Seconds(), " steady load ends", draw.XLeft}} {
		if m.at < 0 {
			continue
		}
		for _, pl := range []*plot.Plot{docs, allocs} {
			l, err := plotter.NewLine(plotter.XYs{{X: m.at, Y: 0}, {X: m.at, Y: pl.Y.Max}})
			if err != nil {
				return fmt.Errorf("plot %s: %w", m.name, err)
			}
			l.Color, l.Dashes = colPhase, []vg.Length{vg.Points(2), vg.Points(2)}
			pl.Add(l)
		}
		labels, err := plotter.NewLabels(plotter.XYLabels{
			XYs:    []plotter.XY{{X: m.at, Y: labelY}},
			Labels: []string{m.name},
		})
		if err != nil {
			return fmt.Errorf("plot %s: %w", m.name, err)
		}
		for i := range labels.TextStyle {
			labels.TextStyle[i].Color = colPhase
			labels.TextStyle[i].XAlign = m.align
		}
		allocs.Add(labels)
	}
	for _, pl := range []*plot.Plot{docs, allocs} {
		pl.X.Min, pl.X.Max = 0, end
		pl.X.Tick.Marker = secondTicks{}
		pl.Add(plotter.NewGrid())
	}
	docs.Y.Tick.Marker = plainTicks{}

	const width, height = 10 * vg.Inch, 7 * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(96), vgimg.UseBackgroundColor(color.White))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(12), PadY: vg.Points(10)}
	rows := [][]*plot.Plot{{docs}, {allocs}}
	canvases := plot.Align(rows, tiles, dc)
	for i := range rows {
		rows[i][0].Draw(canvases[i][0])
	}

	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("plot %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}

// plainTicks are gonum's default ticks labelled without trailing zeros.
type plainTicks struct{}

func (plainTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = strconv.FormatFloat(ts[i].Value, 'f', -1, 64)
		}
	}
	return ts
}

// secondTicks label every 10 s and mark every 5.
type secondTicks struct{}

func (secondTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for s := math.Ceil(lo/5) * 5; s <= hi; s += 5 {
		t := plot.Tick{Value: s}
		if math.Mod(s, 10) == 0 {
			t.Label = strconv.FormatFloat(s, 'f', -1, 64)
		}
		ts = append(ts, t)
	}
	return ts
}
