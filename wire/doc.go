// Package wire is jetinfer's protocol on NATS, shared by whoever publishes
// documents, sends requests or serves them: the subjects, the request and
// result streams and each endpoint's durable consumer, the headers, the
// ingest document format, the framing of infer replies, and the Client that
// sends POST _inference requests through NATS. It links no model runtime:
// the HTTP API and the controller speak it without ONNX Runtime.
//
// A document is published to inference.<token>.ingest (token is
// config.Token of the inference id) with a Nats-Msg-Id header so a
// republish within the duplicate window is dropped. Its body is a
// POST _inference body plus a string "id" member naming the document:
//
//	{"id":"doc-1","input":["some text"],"input_type":"ingest"}
//
// "id" is cut out of the body (blanked in place, so the positions of the
// other fields are kept) and the rest goes through inferapi.ParseRequest and
// Validate(config.Any). The result is published to inference.<token>.results
// with the header Jetinfer-Document-Id; its body is the runner's output, or
// an Elasticsearch error envelope when the document could not be served.
package wire
