// Package test holds jetinfer's end-to-end tests: each starts real
// jetinfer nodes in-process, with an embedded nats-server on a random port
// and a temporary data directory, and drives them over HTTP and NATS.
package test
