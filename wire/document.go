package wire

import (
	"bytes"
	"encoding/json"

	"github.com/jetinfer/jetinfer/eserror"
)

// HeaderDocumentID carries a result's document id.
const HeaderDocumentID = "Jetinfer-Document-Id"

// CutID returns the top-level string member "id" of a JSON object and the
// body with that member blanked out (replaced by spaces, with its comma), so
// every other byte keeps its position. Bodies that are not JSON objects are
// returned whole for ParseRequest to report; a non-string id is an error.
func CutID(data []byte) (string, []byte, error) {
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
