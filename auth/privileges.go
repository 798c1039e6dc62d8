package auth

import (
	"fmt"
	"slices"
	"strings"
)

// Action names of the requests jetinfer serves, as Elasticsearch names the
// transport actions behind its REST handlers: they appear in 403 texts.
const (
	ActionMain             = "cluster:monitor/main"
	ActionInferenceGet     = "cluster:monitor/xpack/inference/get"
	ActionInferencePost    = "cluster:monitor/xpack/inference/post"
	ActionInferencePut     = "cluster:admin/xpack/inference/put"
	ActionInferenceUpdate  = "cluster:admin/xpack/inference/update"
	ActionInferenceDelete  = "cluster:admin/xpack/inference/delete"
	ActionDeploymentStart  = "cluster:admin/xpack/ml/trained_models/deployment/start"
	ActionDeploymentStop   = "cluster:admin/xpack/ml/trained_models/deployment/stop"
	ActionDeploymentUpdate = "cluster:admin/xpack/ml/trained_models/deployment/update"
	ActionModelStats       = "cluster:monitor/xpack/ml/inference/stats/get"
)

// privilege is one of Elasticsearch's cluster privileges: the action
// patterns it grants (ClusterPrivilegeResolver; '*' matches any text).
type privilege struct {
	name     string
	patterns []string
}

// privileges are the cluster privileges jetinfer knows, in the order
// Elasticsearch lists those that grant an action (fewest implied
// privileges first, then by name).
var privileges = []privilege{
	{"monitor_inference", []string{"cluster:monitor/xpack/inference*", "cluster:monitor/xpack/ml/trained_models/deployment/infer"}},
	{"monitor_ml", []string{"cluster:monitor/xpack/ml/*"}},
	{"manage_inference", []string{"cluster:admin/xpack/inference/*", "cluster:monitor/xpack/inference*",
		"cluster:admin/xpack/ml/trained_models/deployment/start", "cluster:admin/xpack/ml/trained_models/deployment/stop",
		"cluster:monitor/xpack/ml/trained_models/deployment/infer"}},
	{"manage_ml", []string{"cluster:admin/xpack/ml/*", "cluster:monitor/xpack/ml/*"}},
	{"monitor", []string{"cluster:monitor/*"}},
	{"manage", []string{"cluster:*"}},
	{"all", []string{"cluster:*"}},
}

// Privileges are the names of the cluster privileges a credential may hold.
func Privileges() []string {
	out := make([]string, len(privileges))
	for i, p := range privileges {
		out[i] = p.name
	}
	return out
}

// CheckPrivileges reports a name that is not a known cluster privilege.
func CheckPrivileges(names []string) error {
	for _, n := range names {
		if !slices.Contains(Privileges(), n) {
			return fmt.Errorf("unknown cluster privilege [%s]; known: [%s]", n, strings.Join(Privileges(), ","))
		}
	}
	return nil
}

func (p privilege) grants(action string) bool {
	return slices.ContainsFunc(p.patterns, func(pattern string) bool { return match(pattern, action) })
}

// grantedBy lists the privileges that grant action, in Elasticsearch's order.
func grantedBy(action string) []string {
	var out []string
	for _, p := range privileges {
		if p.grants(action) {
			out = append(out, p.name)
		}
	}
	return out
}

// allows reports whether any of the named privileges grants action.
func allows(names []string, action string) bool {
	for _, p := range privileges {
		if slices.Contains(names, p.name) && p.grants(action) {
			return true
		}
	}
	return false
}

// match is Elasticsearch's automaton pattern for privileges: '*' matches
// any run of characters, '/' included.
func match(pattern, s string) bool {
	star := strings.IndexByte(pattern, '*')
	if star < 0 {
		return pattern == s
	}
	if !strings.HasPrefix(s, pattern[:star]) {
		return false
	}
	rest := pattern[star+1:]
	for i := star; i <= len(s); i++ {
		if match(rest, s[i:]) {
			return true
		}
	}
	return false
}
