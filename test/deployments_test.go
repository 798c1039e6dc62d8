package test

import (
	"strings"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/cluster"
	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/node"
)

// TestTrainedModelDeployments: the _ml deployment API starts, updates and
// stops deployments; inference endpoints attach to them (and to other
// endpoints' deployments) with deployment_id, with Elasticsearch's rules.
func TestTrainedModelDeployments(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.Heartbeat = testHeartbeat })
	js := connectJS(t, n.NATSURL())
	base := "/_ml/trained_models/.multilingual-e5-small/deployment/_start"

	n.do(t, "POST", base+"?threads_per_allocation=3", "").expect(t, 400, esError(400, "action_request_validation_exception",
		"Validation Failed: 1: [threads_per_allocation] must be a power of 2 less than or equal to 32;"))
	n.do(t, "POST", "/_ml/trained_models/nope/deployment/_start", "").expect(t, 404, esError(404, "resource_not_found_exception", "Could not find trained model [nope]"))
	r := n.do(t, "POST", base+"?deployment_id=shared&number_of_allocations=2", "")
	r.mustStatus(t, 200)
	for _, want := range []string{`"task_parameters":{"model_id":".multilingual-e5-small","deployment_id":"shared","threads_per_allocation":1,"number_of_allocations":2,"queue_capacity":10000,"priority":"normal"}`,
		`"routing_table":{"test-node":{"current_allocations":2,"target_allocations":2,"routing_state":"started","reason":""}}`, `"assignment_state":"started"`} {
		if !strings.Contains(r.body, want) {
			t.Fatalf("_start = %s\nwant %s", r.body, want)
		}
	}
	n.do(t, "POST", base+"?deployment_id=shared", "").expect(t, 409, esError(409, "status_exception",
		"Could not start model deployment because an existing deployment with the same id [shared] exist"))

	// Attach: the endpoint takes the deployment's settings.
	n.do(t, "PUT", "/_inference/text_embedding/on-shared", `{"service":"elasticsearch","service_settings":{"deployment_id":"shared"}}`).expect(t, 200,
		`{"inference_id":"on-shared","task_type":"text_embedding","service":"elasticsearch","service_settings":{"num_allocations":2,"num_threads":1,"model_id":".multilingual-e5-small","deployment_id":"shared"},"chunking_settings":{"strategy":"sentence","max_chunk_size":250,"sentence_overlap":1}}`)
	n.do(t, "PUT", "/_inference/sparse_embedding/wrong-model", `{"service":"elasticsearch","service_settings":{"deployment_id":"shared","model_id":".elser_model_2"}}`).expect(t, 400,
		esError(400, "status_exception", "Deployment [shared] uses model [.multilingual-e5-small] which does not match the model [.elser_model_2] in the request."))
	n.do(t, "PUT", "/_inference/sparse_embedding/wrong-task", `{"service":"elasticsearch","service_settings":{"deployment_id":"shared"}}`).expect(t, 400,
		esError(400, "status_exception", "Deployed model [.multilingual-e5-small] with type [text_embedding] does not match the requested task type [sparse_embedding]"))
	n.do(t, "PUT", "/_inference/text_embedding/nowhere", `{"service":"elasticsearch","service_settings":{"deployment_id":"missing"}}`).expect(t, 404,
		esError(404, "status_exception", "Cannot find deployment [missing]"))
	n.do(t, "PUT", "/_inference/text_embedding/shared", e5Body).expect(t, 400, esError(400, "status_exception",
		"Inference endpoint IDs must be unique. Requested inference endpoint ID [shared] matches existing trained model ID(s) but must not."))

	m := directModel(t, ".multilingual-e5-small")
	ep := parseEndpoint(t, "on-shared", config.TextEmbedding, e5Body)
	n.do(t, "POST", "/_inference/on-shared", `{"input":"hello"}`).expect(t, 200, directInfer(t, m, ep, `{"input":"hello"}`))
	res := watchResults(t, js, "on-shared")
	publishDocs(t, js, "on-shared", []string{"doc-1"}, func(id string) []byte { return docBody(id, "A document. On a shared deployment.") })
	res.until(1, time.Minute)

	n.do(t, "PUT", "/_inference/text_embedding/on-shared/_update", `{"service_settings":{"num_allocations":3}}`).expect(t, 409, esError(409, "status_exception",
		"Cannot update inference endpoint [on-shared] using model deployment [shared]. The model deployment must be updated through the trained models API."))
	n.do(t, "POST", "/_ml/trained_models/shared/deployment/_update", `{"number_of_allocations":3}`).mustStatus(t, 200)
	planOf(t, js, 1, "shared", nodesAre(map[string]int{"test-node": 3}))
	running(t, js, 1, "on-shared", map[string]int{"test-node": 3})
	waitModelStats(t, n, "shared", func(st modelStatsBody) bool {
		d := st.Stats[0].Deployment
		return d.DeploymentID == "shared" && d.Allocations == 3 && d.Status.Count == 3 && d.Count >= 2
	})

	// Another endpoint's own deployment can be shared too, but only that
	// endpoint changes it.
	n.do(t, "PUT", "/_inference/text_embedding/owner", e5Body).mustStatus(t, 200)
	n.do(t, "PUT", "/_inference/text_embedding/guest", `{"service":"elasticsearch","service_settings":{"deployment_id":"owner"}}`).mustStatus(t, 200)
	n.do(t, "POST", "/_inference/guest", `{"input":"hello"}`).expect(t, 200, directInfer(t, m, ep, `{"input":"hello"}`))
	n.do(t, "POST", "/_ml/trained_models/owner/deployment/_update", `{"number_of_allocations":1}`).expect(t, 409, esError(409, "status_exception",
		"Cannot update deployment [owner] as it was created by inference endpoint [owner]. This model deployment must be updated through the inference API."))

	// A deployment in use is not stopped; deleting the endpoint leaves it.
	n.do(t, "POST", "/_ml/trained_models/shared/deployment/_stop", "").expect(t, 409, esError(409, "status_exception",
		"Cannot stop deployment [shared] as it is used by inference endpoint [on-shared]"))
	n.do(t, "DELETE", "/_inference/on-shared", "").mustStatus(t, 200)
	planOf(t, js, 1, "shared", func(p cluster.Plan) bool { return p.Target == 3 })
	n.do(t, "POST", "/_ml/trained_models/shared/deployment/_stop", "").expect(t, 200, `{"stopped":true}`)
	n.do(t, "POST", "/_ml/trained_models/shared/deployment/_stop", "").expect(t, 404, esError(404, "resource_not_found_exception", "Could not find trained model deployment [shared]"))
	n.do(t, "PUT", "/_inference/text_embedding/late", `{"service":"elasticsearch","service_settings":{"deployment_id":"shared"}}`).expect(t, 404,
		esError(404, "status_exception", "Cannot find deployment [shared]"))
	running(t, js, 1, "shared", map[string]int{})
}
