package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode"

	"github.com/jetinfer/jetinfer/eserror"
)

// HeaderDocumentID carries a result's document id.
const HeaderDocumentID = "Jetinfer-Document-Id"

// HeaderRequestMsgID carries, on a result, the Nats-Msg-Id its document was
// published with: what names a document whose id was invalid.
const HeaderRequestMsgID = "Jetinfer-Request-Msg-Id"

// MaxDocumentIDBytes bounds a document id, as Elasticsearch bounds a
// document's _id: the id travels back in a header, and a header larger
// than the server accepts could never be published.
const MaxDocumentIDBytes = 512

// MaxDocumentInputs bounds the inputs of one ingest document: a megabyte of
// empty inputs would otherwise make a quarter of a million results. It is
// OpenAI's bound on the inputs of one embeddings request (Elasticsearch
// has none; its documents' inputs are the values of their fields).
const MaxDocumentInputs = 2048

// ValidateDocumentID refuses an id that could not come back unchanged in
// HeaderDocumentID: one longer than MaxDocumentIDBytes, or with a control
// character (a header value cannot hold CR or LF).
func ValidateDocumentID(id string) error {
	if len(id) > MaxDocumentIDBytes {
		return eserror.Validation(eserror.TypeActionRequestValidation,
			fmt.Sprintf("id is too long, must be no longer than %d bytes but was: %d", MaxDocumentIDBytes, len(id)))
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return eserror.Validation(eserror.TypeActionRequestValidation,
				fmt.Sprintf("id must not contain control characters, found %U", r))
		}
	}
	return nil
}

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
