package consumer

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/wire"
)

// threadNice is the nice value of the calling OS thread, from
// /proc/self/task/<tid>/stat (field 19).
func threadNice(t *testing.T) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/stat", syscall.Gettid()))
	if err != nil {
		t.Error(err)
		return 0
	}
	// The command name, field 2, may hold spaces: count after its ')'.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	n, err := strconv.Atoi(fields[16])
	if err != nil {
		t.Error(err)
	}
	return n
}

// TestBulkWorkYieldsToSearches: documents are embedded on a thread at
// bulkNice; a search that comes meanwhile runs at the process's priority.
func TestBulkWorkYieldsToSearches(t *testing.T) {
	nc, js := startJS(t, 0)
	niceOf := func() []byte {
		b, _ := json.Marshal(map[string]int{"nice": threadNice(t)})
		return b
	}
	embedding, release := make(chan struct{}), make(chan struct{})
	r := fakeRunner{
		ingest: func(ctx context.Context, docs []inferapi.Request) ([][]byte, error) {
			out := make([][]byte, len(docs))
			for i := range docs {
				out[i] = niceOf()
			}
			close(embedding)
			<-release // the bulk lane stays busy: the search lane takes the search
			return out, nil
		},
		infer: func(context.Context, inferapi.Request) ([]byte, error) { return niceOf(), nil },
	}
	stop := startRun(t, nc, js, r, 0)
	defer func() { _ = stop() }()
	publishDoc(t, js, "m-1", `{"id":"doc-1","input":["text"]}`)
	select {
	case <-embedding:
	case <-time.After(30 * time.Second):
		t.Fatal("the document was not embedded within 30 s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := wire.Request(ctx, nc, testID, []byte(`{"input":"q"}`), inferapi.Options{})
	close(release)
	if own := threadNice(t); err != nil || string(res.Body) != fmt.Sprintf(`{"nice":%d}`, own) || own == bulkNice {
		t.Fatalf("search = %s, %v; want it run at the process's nice %d", res.Body, err, own)
	}
	got := collect(t, js, 1, 300*time.Millisecond)
	if len(got) != 1 || got[0].body != fmt.Sprintf(`{"nice":%d}`, bulkNice) {
		t.Fatalf("document result %+v; want it embedded at nice %d", got, bulkNice)
	}
}
