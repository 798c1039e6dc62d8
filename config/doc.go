// Package config is what users configure, and where it is kept: inference
// endpoint definitions (PUT, GET and _update bodies, parsed and validated
// with Elasticsearch's rules and texts), their service and chunking
// settings, the built-in model ids and their families, the reserved
// endpoints, the trained model deployments of the _ml API, and the KV
// stores that hold endpoints and deployments. It knows nothing of serving:
// workers, the controller and the HTTP API read it.
package config
