package config

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/xcontent"
)

var validID = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9_\-.]*[a-z0-9])?$`)

// MaxIDLength bounds inference ids. Elasticsearch sets none, but the id is
// a KV key inside a NATS subject, and nats-server drops a connection whose
// protocol line exceeds 4 KiB; 255 bytes is Elasticsearch's index-name limit.
const MaxIDLength = 255

// ValidateID checks an inference id against Elasticsearch's id rule and
// returns its action_request_validation_exception when it fails.
func ValidateID(id string) error {
	if len(id) > MaxIDLength {
		return eserror.Validation(eserror.TypeActionRequestValidation,
			fmt.Sprintf("Invalid inference_id; '%s' must not be longer than %d bytes", id, MaxIDLength))
	}
	if !validID.MatchString(id) || id == "_all" {
		return eserror.Validation(eserror.TypeActionRequestValidation, invalidIDMessage(id))
	}
	return nil
}

func invalidIDMessage(id string) string {
	return fmt.Sprintf("Invalid inference_id; '%s' can contain lowercase alphanumeric (a-z and 0-9), hyphens or underscores; must start and end with alphanumeric", id)
}

// RequireBody fails with Elasticsearch's "request body is required" when
// body holds nothing.
func RequireBody(body []byte) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		return eserror.New(http.StatusBadRequest, eserror.TypeParse, "request body is required")
	}
	return nil
}

// parseContext says where a definition comes from: a client's request, or
// the KV bucket, where server-computed fields such as dimensions may appear.
type parseContext int

const (
	fromRequest parseContext = iota
	fromStore
)

// ParsePut parses and validates the body of PUT _inference/[task_type/]id,
// applying Elasticsearch's rules in Elasticsearch's order, so that the first
// error a client sees is the one Elasticsearch would report.
func ParsePut(id string, urlTask TaskType, body []byte) (Endpoint, error) {
	if err := RequireBody(body); err != nil {
		return Endpoint{}, err
	}
	// The id rule also keeps users off the reserved ids, which start with '.'.
	if err := ValidateID(id); err != nil {
		return Endpoint{}, err
	}
	obj, err := xcontent.Parse(body)
	if err != nil {
		return Endpoint{}, err
	}
	return parseDefinition(id, urlTask, obj, fromRequest)
}

// ParseStored parses a definition read from the endpoint bucket under key,
// validating it exactly as a PUT would (plus the fields only the server
// writes), so that a definition written by another tool is held to the same
// rules.
func ParseStored(key string, value []byte) (Endpoint, error) {
	id := IDFromToken(key)
	obj, err := xcontent.Parse(value)
	if err != nil {
		return Endpoint{}, fmt.Errorf("stored definition is not a JSON object: %w", err)
	}
	raw, _ := obj.Remove("inference_id")
	storedID, _ := raw.(string)
	if storedID != id {
		return Endpoint{}, eserror.BadRequest("stored inference_id [%s] does not match its key [%s]", xcontent.JavaValue(raw), key)
	}
	if !IsDefaultID(id) {
		if err := ValidateID(id); err != nil {
			return Endpoint{}, err
		}
	}
	if !obj.Has("task_type") {
		return Endpoint{}, eserror.BadRequest("model is missing required setting [task_type]")
	}
	return parseDefinition(id, Any, obj, fromStore)
}

func parseDefinition(id string, urlTask TaskType, obj *xcontent.Object, ctx parseContext) (Endpoint, error) {
	task, err := resolveTaskType(urlTask, obj)
	if err != nil {
		return Endpoint{}, err
	}
	serviceRaw, _ := obj.Remove("service")
	if serviceRaw == nil {
		return Endpoint{}, eserror.BadRequest("Inference endpoint configuration is missing the [service] setting")
	}
	service, ok := serviceRaw.(string)
	if !ok || (service != ServiceName && service != ServiceAliasELSER) {
		return Endpoint{}, eserror.BadRequest("Unknown service [%s]", xcontent.JavaValue(serviceRaw))
	}
	if !task.Supported() {
		return Endpoint{}, eserror.BadRequest("The [%s] service does not support task type [%s]", ServiceName, task)
	}

	ep := Endpoint{InferenceID: id, TaskType: task, Service: ServiceName}

	// IS.parseRequestConfig: service_settings, task_settings, chunking
	// settings, then whatever is left over is unknown.
	ssRaw, _ := obj.Remove("service_settings")
	if ssRaw == nil {
		return Endpoint{}, eserror.BadRequest("Missing required field [service_settings]")
	}
	ss, err := asObject(ssRaw, "service_settings")
	if err != nil {
		return Endpoint{}, err
	}
	ts := xcontent.NewObject()
	if tsRaw, _ := obj.Remove("task_settings"); tsRaw != nil {
		if ts, err = asObject(tsRaw, "task_settings"); err != nil {
			return Endpoint{}, err
		}
	}
	if task.Chunked() {
		chunkingRaw, present := obj.Remove("chunking_settings")
		switch {
		case ctx == fromStore && !present:
			ep.Chunking = LegacyChunking()
		default:
			if ep.Chunking, err = parseChunking(chunkingRaw); err != nil {
				return Endpoint{}, err
			}
		}
	}
	if !obj.Empty() {
		return Endpoint{}, unknownSettings(obj)
	}

	if err := parseServiceSettings(&ep, ss, service, ctx); err != nil {
		return Endpoint{}, err
	}
	if !ss.Empty() {
		return Endpoint{}, unknownSettings(ss)
	}

	if task == Rerank {
		rts, err := parseRerankTaskSettings(ts)
		if err != nil {
			return Endpoint{}, err
		}
		ep.TaskSettings = &rts
	}
	if !ts.Empty() {
		return Endpoint{}, unknownSettings(ts)
	}
	if err := validateDeployment(ep.ServiceSettings); err != nil {
		return Endpoint{}, err
	}
	return ep, nil
}

func unknownSettings(m *xcontent.Object) error {
	return eserror.BadRequest("Configuration contains settings [%s] unknown to the [%s] service", m.JavaString(), ServiceName)
}

// resolveTaskType follows ServiceUtils.resolveTaskType.
func resolveTaskType(urlTask TaskType, obj *xcontent.Object) (TaskType, error) {
	raw, _ := obj.Remove("task_type")
	if raw == nil {
		if urlTask == Any {
			return "", eserror.BadRequest("model is missing required setting [task_type]")
		}
		return urlTask, nil
	}
	s, ok := raw.(string)
	if !ok {
		return "", eserror.BadRequest("Unknown task_type [%s]", xcontent.JavaValue(raw))
	}
	body, err := ParseTaskType(s)
	if err != nil {
		return "", err
	}
	if body == Any {
		return "", eserror.BadRequest("task_type [any] is not valid type for inference")
	}
	if urlTask != Any && body != urlTask {
		return "", eserror.BadRequest("Cannot resolve conflicting task_type parameter in the request URL [%s] and the request body [%s]", urlTask, s)
	}
	return body, nil
}

// parseServiceSettings follows ElasticsearchInternalServiceSettings.fromMap
// and the model-specific cases of ElasticsearchInternalService.
func parseServiceSettings(ep *Endpoint, ss *xcontent.Object, service string, ctx parseContext) error {
	const scope = "service_settings"
	v := &validation{}
	s := &ep.ServiceSettings
	// An endpoint on an existing deployment takes its allocations, threads
	// and model from the deployment (ElasticsearchInternalService).
	attached := ss.Has("deployment_id") && ctx != fromStore
	s.NumAllocations, _ = v.optionalPositiveInt(ss, "num_allocations", scope)
	if attached {
		if t, _ := v.optionalPositiveInt(ss, "num_threads", scope); t != nil {
			s.NumThreads = *t
		}
	} else {
		s.NumThreads, _ = v.requiredPositiveInt(ss, "num_threads", scope)
	}
	s.AdaptiveAllocations = v.adaptiveAllocations(ss)
	s.ModelID, _ = v.optionalString(ss, "model_id", scope)
	if s.NumAllocations == nil && s.AdaptiveAllocations == nil && !attached {
		v.add("[%s] does not contain one of the required settings [num_allocations, adaptive_allocations]", scope)
	}
	s.DeploymentID, _ = v.optionalString(ss, "deployment_id", scope)

	family := FamilyOf(s.ModelID)
	if family == FamilyImported && ep.TaskType == TextEmbedding {
		s.Similarity, s.ElementType = "cosine", "float"
		if sim, ok := v.optionalString(ss, "similarity", scope); ok {
			if n := strings.ToLower(strings.TrimSpace(sim)); n == "cosine" || n == "dot_product" || n == "l2_norm" {
				s.Similarity = n
			} else {
				v.add("[%s] Invalid value [%s] received. [similarity] must be one of [cosine, dot_product, l2_norm]", scope, sim)
			}
		}
		if et, ok := v.optionalString(ss, "element_type", scope); ok {
			if n := strings.ToLower(strings.TrimSpace(et)); n == "float" || n == "byte" {
				s.ElementType = n
			} else {
				v.add("[%s] Invalid value [%s] received. [element_type] must be one of [byte, float]", scope, et)
			}
		}
		if ctx == fromStore {
			s.Dimensions, _ = v.optionalPositiveInt(ss, "dimensions", scope)
		}
	}
	if family == FamilyRerank {
		v.longDocuments(s, ss)
	}
	if err := v.err(eserror.TypeValidation); err != nil {
		return err
	}

	if s.ModelID == "" && s.DeploymentID == "" {
		if service != ServiceAliasELSER {
			return eserror.Validation(eserror.TypeValidation, "Error parsing service settings, model_id must be provided")
		}
		s.ModelID = ModelELSERLinux
		family = FamilyELSER
	}
	if want := family.servedTask(); want != "" && want != ep.TaskType {
		return eserror.BadRequest("Model [%s] serves task type [%s] and cannot be used for task type [%s]", s.ModelID, want, ep.TaskType)
	}
	return nil
}

// longDocuments reads Elastic Rerank's long document settings as
// ElasticRerankerServiceSettings.fromMap does.
func (v *validation) longDocuments(s *ServiceSettings, ss *xcontent.Object) {
	const scope = "service_settings"
	if raw, ok := v.optionalString(ss, "long_document_strategy", scope); ok {
		// LongDocumentStrategy.fromString: trimmed, any case.
		switch n := strings.ToLower(strings.TrimSpace(raw)); n {
		case LongDocumentTruncate, LongDocumentChunk:
			s.LongDocumentStrategy = n
		default:
			v.add("[%s] Invalid value [%s] received. [long_document_strategy] must be one of [chunk, truncate]", scope, raw)
		}
	}
	s.MaxChunksPerDoc, _ = v.optionalPositiveInt(ss, "max_chunks_per_doc", scope)
	if s.MaxChunksPerDoc != nil && s.LongDocumentStrategy != LongDocumentChunk {
		v.add("The [max_chunks_per_doc] setting requires [long_document_strategy] to be set to [chunk]")
	}
}

// adaptiveAllocations follows ServiceUtils.removeAsAdaptiveAllocationsSettings
// and AdaptiveAllocationsSettings.validate.
func (v *validation) adaptiveAllocations(ss *xcontent.Object) *AdaptiveAllocations {
	raw, found := ss.Remove("adaptive_allocations")
	if !found || raw == nil {
		return nil
	}
	m, ok := raw.(*xcontent.Object)
	if !ok {
		v.add("%s", invalidType("adaptive_allocations", raw, "Map"))
		return nil
	}
	a := &AdaptiveAllocations{}
	if enabled, _ := v.optionalBool(m, "enabled"); enabled != nil {
		a.Enabled = *enabled
	}
	if n, present, ok := v.removeInt(m, "min_number_of_allocations"); present && ok {
		a.Min = &n
	}
	if n, present, ok := v.removeInt(m, "max_number_of_allocations"); present && ok {
		a.Max = &n
	}
	for _, k := range m.Keys() {
		v.add("[adaptive_allocations] does not allow the setting [%s]", k)
	}
	// AdaptiveAllocationsSettings.validate
	if a.Min != nil && *a.Min < 0 {
		v.add("[min_number_of_allocations] must be a non-negative integer or null")
	}
	if a.Max != nil && *a.Max < 1 {
		v.add("[max_number_of_allocations] must be a positive integer or null")
	}
	if a.Min != nil && a.Max != nil && *a.Min > *a.Max {
		v.add("[min_number_of_allocations] must not be larger than [max_number_of_allocations]")
	}
	return a
}

func parseRerankTaskSettings(ts *xcontent.Object) (RerankTaskSettings, error) {
	v := &validation{}
	rts := RerankTaskSettings{ReturnDocuments: true}
	if b, _ := v.optionalBool(ts, "return_documents"); b != nil {
		rts.ReturnDocuments = *b
	}
	return rts, v.err(eserror.TypeValidation)
}

// validateDeployment applies the checks Elasticsearch makes when it starts
// the deployment (StartTrainedModelDeploymentAction.Request.validate); they
// run at PUT, before storing, so that an endpoint that could never start is
// never stored (Elasticsearch stores it first, elastic/elasticsearch#137127).
func validateDeployment(s ServiceSettings) error {
	v := &validation{}
	if s.AdaptiveAllocations != nil && s.AdaptiveAllocations.Enabled && s.NumAllocations != nil {
		v.add("[number_of_allocations] cannot be set if adaptive allocations is enabled")
	}
	if t := s.NumThreads; t > 32 || t&(t-1) != 0 {
		v.add("[threads_per_allocation] must be a power of 2 less than or equal to 32")
	}
	return v.err(eserror.TypeActionRequestValidation)
}
