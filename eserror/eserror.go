// Package eserror models Elasticsearch exceptions as jetinfer returns them: the
// exception type name, the reason text, the HTTP status and an optional cause,
// rendered in Elasticsearch's error envelope
//
//	{"error":{"root_cause":[…],"type":…,"reason":…,"caused_by":…},"status":N}
//
// Every client-visible failure is one of these, so that Elasticsearch
// clients can parse it unchanged.
package eserror

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Exception type names, as Elasticsearch derives them from its Java exception
// classes.
const (
	TypeStatus                  = "status_exception"
	TypeValidation              = "validation_exception"
	TypeActionRequestValidation = "action_request_validation_exception"
	TypeResourceNotFound        = "resource_not_found_exception"
	TypeResourceAlreadyExists   = "resource_already_exists_exception"
	TypeIllegalArgument         = "illegal_argument_exception"
	TypeIllegalState            = "illegal_state_exception"
	TypeXContentParse           = "x_content_parse_exception"
	TypeParse                   = "parse_exception"
	TypeJSONParse               = "json_parse_exception"
	TypeContentTooLong          = "content_too_long_exception"
	TypeRejectedExecution       = "es_rejected_execution_exception"
	TypeModelDeploymentTimeout  = "model_deployment_timeout_exception"
	TypeSecurity                = "security_exception"
)

// Error is one Elasticsearch exception. It implements error, so it travels
// through ordinary Go error wrapping; [As] finds it again at the edge.
type Error struct {
	Status int
	Type   string
	Reason string
	// Cause, when set, is rendered as "caused_by".
	Cause *Error
	// RootIsCause makes root_cause list the innermost cause instead of this
	// exception, as Elasticsearch does for exceptions that merely wrap another.
	RootIsCause bool
	// UnsuccessfulCredentials is the security exception's
	// additional_unsuccessful_credentials metadata.
	UnsuccessfulCredentials []string
	// Header holds the HTTP headers the exception carries (a 401's
	// WWW-Authenticate): rendered as "header" and sent as response headers.
	Header map[string][]string
}

// New returns an exception of the given type and status.
func New(status int, typ, format string, args ...any) *Error {
	reason := format
	if len(args) > 0 {
		reason = fmt.Sprintf(format, args...)
	}
	return &Error{Status: status, Type: typ, Reason: reason}
}

// BadRequest returns a 400 status_exception, Elasticsearch's
// ElasticsearchStatusException with RestStatus.BAD_REQUEST.
func BadRequest(format string, args ...any) *Error {
	return New(http.StatusBadRequest, TypeStatus, format, args...)
}

// NotFound returns a 404 resource_not_found_exception.
func NotFound(format string, args ...any) *Error {
	return New(http.StatusNotFound, TypeResourceNotFound, format, args...)
}

// Validation returns a 400 exception of typ (validation_exception or
// action_request_validation_exception) whose reason lists every message in
// Elasticsearch's "Validation Failed: 1: a;2: b;" form.
func Validation(typ string, messages ...string) *Error {
	var b strings.Builder
	b.WriteString("Validation Failed: ")
	for i, m := range messages {
		fmt.Fprintf(&b, "%d: %s;", i+1, m)
	}
	return &Error{Status: http.StatusBadRequest, Type: typ, Reason: b.String()}
}

// Internal returns a 500 status_exception for failures that are not the
// client's doing, keeping the underlying error's text as the cause.
func Internal(err error, format string, args ...any) *Error {
	e := New(http.StatusInternalServerError, TypeStatus, format, args...)
	if err != nil {
		e.Cause = &Error{Status: http.StatusInternalServerError, Type: TypeIllegalState, Reason: err.Error()}
	}
	return e
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Type + ": " + e.Reason + ": " + e.Cause.Error()
	}
	return e.Type + ": " + e.Reason
}

// As returns the *Error in err's chain, or a 500 status_exception carrying
// err's text when there is none.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Internal(err, "%s", "internal error")
}

// Field order is Elasticsearch's: type, reason, metadata, caused_by, header.
type cause struct {
	Type                    string      `json:"type"`
	Reason                  string      `json:"reason"`
	UnsuccessfulCredentials stringOrAll `json:"additional_unsuccessful_credentials,omitempty"`
	CausedBy                *cause      `json:"caused_by,omitempty"`
	Header                  headers     `json:"header,omitempty"`
}

type body struct {
	RootCause               []cause     `json:"root_cause"`
	Type                    string      `json:"type"`
	Reason                  string      `json:"reason"`
	UnsuccessfulCredentials stringOrAll `json:"additional_unsuccessful_credentials,omitempty"`
	CausedBy                *cause      `json:"caused_by,omitempty"`
	Header                  headers     `json:"header,omitempty"`
}

// stringOrAll is a list rendered as Elasticsearch renders metadata and
// headers: one value as a string, more as an array.
type stringOrAll []string

func (s stringOrAll) MarshalJSON() ([]byte, error) {
	if len(s) == 1 {
		return json.Marshal(s[0])
	}
	return json.Marshal([]string(s))
}

func (s *stringOrAll) UnmarshalJSON(data []byte) error {
	var one string
	if err := json.Unmarshal(data, &one); err == nil {
		*s = stringOrAll{one}
		return nil
	}
	return json.Unmarshal(data, (*[]string)(s))
}

type headers map[string]stringOrAll

func toHeaders(h map[string][]string) headers {
	if len(h) == 0 {
		return nil
	}
	out := make(headers, len(h))
	for k, v := range h {
		out[k] = v
	}
	return out
}

type envelope struct {
	Error  body `json:"error"`
	Status int  `json:"status"`
}

func (e *Error) causeChain() *cause {
	if e == nil {
		return nil
	}
	return &cause{Type: e.Type, Reason: e.Reason, CausedBy: e.Cause.causeChain()}
}

func (e *Error) rootCause() cause {
	root := e
	if e.RootIsCause {
		for root.Cause != nil {
			root = root.Cause
		}
	}
	return cause{Type: root.Type, Reason: root.Reason, UnsuccessfulCredentials: root.UnsuccessfulCredentials, Header: toHeaders(root.Header)}
}

// MarshalJSON renders the full Elasticsearch error envelope.
func (e *Error) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // Elasticsearch leaves '<', '>' and '&' as they are
	err := enc.Encode(envelope{
		Error: body{
			RootCause:               []cause{e.rootCause()},
			Type:                    e.Type,
			Reason:                  e.Reason,
			UnsuccessfulCredentials: e.UnsuccessfulCredentials,
			CausedBy:                e.Cause.causeChain(),
			Header:                  toHeaders(e.Header),
		},
		Status: e.Status,
	})
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), err
}

// Parse reads an envelope that MarshalJSON wrote (another process's error,
// passed on through NATS) back into an Error that renders the same.
func Parse(data []byte) (*Error, error) {
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("eserror: parse envelope: %w", err)
	}
	if env.Error.Type == "" || env.Status == 0 {
		return nil, fmt.Errorf("eserror: %q is not an error envelope", data)
	}
	e := &Error{Status: env.Status, Type: env.Error.Type, Reason: env.Error.Reason, UnsuccessfulCredentials: env.Error.UnsuccessfulCredentials}
	for k, v := range env.Error.Header {
		if e.Header == nil {
			e.Header = map[string][]string{}
		}
		e.Header[k] = v
	}
	for c, at := env.Error.CausedBy, e; c != nil; c = c.CausedBy {
		at.Cause = &Error{Status: env.Status, Type: c.Type, Reason: c.Reason}
		at = at.Cause
	}
	if len(env.Error.RootCause) == 1 && e.Cause != nil && env.Error.RootCause[0].Type != e.Type {
		e.RootIsCause = true
	}
	return e, nil
}
