package config

import (
	"net/http"
	"slices"

	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/xcontent"
)

// ParseUpdate applies the body of PUT _inference/[task_type/]id/_update to
// the stored endpoint current, following Elasticsearch's update rules: only
// the allocation settings, the rerank task settings and the chunking
// settings can change, and they are validated as at PUT.
func ParseUpdate(current Endpoint, urlTask TaskType, body []byte) (Endpoint, error) {
	if err := RequireBody(body); err != nil {
		return Endpoint{}, err
	}
	obj, err := xcontent.Parse(body)
	if err != nil {
		return Endpoint{}, err
	}
	if obj.Empty() {
		return Endpoint{}, eserror.BadRequest("Request body is empty")
	}
	unknown := xcontent.NewObject()
	for _, k := range obj.Keys() {
		if !slices.Contains([]string{"task_type", "service_settings", "task_settings", "chunking_settings"}, k) {
			v, _ := obj.Get(k)
			unknown.Set(k, v)
		}
	}
	if !unknown.Empty() {
		return Endpoint{}, eserror.BadRequest("Request contained fields which cannot be updated, remove these fields and try again %s", "["+unknown.JavaString()+"]")
	}
	if urlTask == Any && !obj.Has("task_type") {
		urlTask = current.TaskType
	}
	task, err := resolveTaskType(urlTask, obj)
	if err != nil {
		return Endpoint{}, err
	}
	if task != current.TaskType {
		return Endpoint{}, eserror.BadRequest("Task type must match the task type of the existing endpoint")
	}

	updated := current
	if raw, ok := obj.Remove("service_settings"); ok {
		ss, ok := raw.(*xcontent.Object)
		if !ok {
			return Endpoint{}, eserror.BadRequest("Unable to parse [service_settings] in the request [%s]", xcontent.JavaValue(raw))
		}
		if updated.ServiceSettings, err = updateServiceSettings(current.ServiceSettings, ss); err != nil {
			return Endpoint{}, err
		}
	}
	if raw, ok := obj.Remove("task_settings"); ok {
		ts, ok := raw.(*xcontent.Object)
		if !ok {
			return Endpoint{}, eserror.BadRequest("Unable to parse [task_settings] in the request [%s]", xcontent.JavaValue(raw))
		}
		if current.TaskType == Rerank {
			rts, err := parseRerankTaskSettings(ts)
			if err != nil {
				return Endpoint{}, err
			}
			updated.TaskSettings = &rts
		}
		if !ts.Empty() {
			return Endpoint{}, unknownSettings(ts)
		}
	}
	if raw, ok := obj.Remove("chunking_settings"); ok {
		if !current.TaskType.Chunked() {
			leftover := xcontent.NewObject()
			leftover.Set("chunking_settings", raw)
			return Endpoint{}, unknownSettings(leftover)
		}
		if updated.Chunking, err = parseChunking(raw); err != nil {
			return Endpoint{}, err
		}
	}
	if err := validateDeployment(updated.ServiceSettings); err != nil {
		return Endpoint{}, err
	}
	return updated, nil
}

// updateServiceSettings follows the strict update parser of
// ElasticsearchInternalServiceSettings: exactly one of num_allocations and
// adaptive_allocations, nothing else.
func updateServiceSettings(current ServiceSettings, ss *xcontent.Object) (ServiceSettings, error) {
	const scope = "service_settings"
	for _, k := range ss.Keys() {
		switch k {
		case "num_allocations", "adaptive_allocations":
		case "num_threads":
			return ServiceSettings{}, eserror.Validation(eserror.TypeValidation, "[num_threads] cannot be updated")
		default:
			return ServiceSettings{}, xcontent.ParseError(ss.KeyPos(k), "[service_settings] unknown field ["+k+"]", nil)
		}
	}
	v := &validation{}
	hasNum, hasAdaptive := ss.Has("num_allocations"), ss.Has("adaptive_allocations")
	switch {
	case hasNum && hasAdaptive:
		v.add("[num_allocations] cannot be set if [adaptive_allocations] is set")
	case !hasNum && !hasAdaptive:
		v.add("[%s] does not contain one of the required settings [num_allocations, adaptive_allocations]", scope)
	}
	if err := v.err(eserror.TypeValidation); err != nil {
		return ServiceSettings{}, err
	}
	out := current
	if hasNum {
		n, _ := v.optionalPositiveInt(ss, "num_allocations", scope)
		if err := v.err(eserror.TypeValidation); err != nil {
			return ServiceSettings{}, err
		}
		if n == nil {
			return ServiceSettings{}, eserror.Validation(eserror.TypeValidation, "[service_settings] does not contain one of the required settings [num_allocations, adaptive_allocations]")
		}
		out.NumAllocations, out.AdaptiveAllocations = n, nil
		return out, nil
	}
	adaptive := v.adaptiveAllocations(ss)
	if err := v.err(eserror.TypeValidation); err != nil {
		return ServiceSettings{}, err
	}
	if adaptive == nil {
		return ServiceSettings{}, eserror.New(http.StatusBadRequest, eserror.TypeValidation,
			"Validation Failed: 1: [service_settings] does not contain one of the required settings [num_allocations, adaptive_allocations];")
	}
	out.AdaptiveAllocations = adaptive
	if adaptive.Enabled {
		out.NumAllocations = nil
	} else if out.NumAllocations == nil {
		// Turning adaptive allocations off freezes the deployment at the
		// count it starts with.
		n := current.InitialAllocations()
		out.NumAllocations = &n
	}
	return out, nil
}
