package config

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/xcontent"
)

// validation collects messages the way Elasticsearch's ValidationException
// does, so that one response lists every problem of a settings object.
type validation struct {
	messages []string
}

func (v *validation) add(format string, args ...any) {
	v.messages = append(v.messages, fmt.Sprintf(format, args...))
}

func (v *validation) count() int { return len(v.messages) }

// err returns the collected messages as one exception of type typ, or nil.
func (v *validation) err(typ string) error {
	if len(v.messages) == 0 {
		return nil
	}
	return eserror.Validation(typ, v.messages...)
}

func invalidType(name string, value any, javaType string) string {
	return fmt.Sprintf("field [%s] is not of the expected type. The value [%s] cannot be converted to a [%s]", name, xcontent.JavaValue(value), javaType)
}

// javaInt reports whether value is what Jackson parses into a
// java.lang.Integer: an integral literal that fits in 32 bits.
func javaInt(value any) (int, bool) {
	n, ok := value.(json.Number)
	if !ok || strings.ContainsAny(n.String(), ".eE") {
		return 0, false
	}
	i, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil || i < math.MinInt32 || i > math.MaxInt32 {
		return 0, false
	}
	return int(i), true
}

// removeInt removes name from m; present reports whether it was there (and
// non-null), ok whether it held an Integer.
func (v *validation) removeInt(m *xcontent.Object, name string) (n int, present, ok bool) {
	raw, found := m.Remove(name)
	if !found || raw == nil {
		return 0, false, false
	}
	n, ok = javaInt(raw)
	if !ok {
		v.add("%s", invalidType(name, raw, "Integer"))
	}
	return n, true, ok
}

func (v *validation) requiredPositiveInt(m *xcontent.Object, name, scope string) (int, bool) {
	n, present, ok := v.removeInt(m, name)
	switch {
	case !present:
		v.add("[%s] does not contain the required setting [%s]", scope, name)
		return 0, false
	case !ok:
		return 0, false
	case n <= 0:
		v.add("[%s] Invalid value [%d]. [%s] must be a positive integer", scope, n, name)
		return n, false
	}
	return n, true
}

func (v *validation) optionalPositiveInt(m *xcontent.Object, name, scope string) (*int, bool) {
	n, present, ok := v.removeInt(m, name)
	if !present {
		return nil, true
	}
	if !ok {
		return nil, false
	}
	if n <= 0 {
		v.add("[%s] Invalid value [%d]. [%s] must be a positive integer", scope, n, name)
		return nil, false
	}
	return &n, true
}

func (v *validation) optionalString(m *xcontent.Object, name, scope string) (string, bool) {
	raw, found := m.Remove(name)
	if !found || raw == nil {
		return "", false
	}
	s, ok := raw.(string)
	if !ok {
		v.add("%s", invalidType(name, raw, "String"))
		return "", false
	}
	if s == "" {
		v.add("[%s] Invalid value empty string. [%s] must be a non-empty string", scope, name)
		return "", false
	}
	return s, true
}

func (v *validation) optionalBool(m *xcontent.Object, name string) (*bool, bool) {
	raw, found := m.Remove(name)
	if !found || raw == nil {
		return nil, true
	}
	b, ok := raw.(bool)
	if !ok {
		v.add("%s", invalidType(name, raw, "Boolean"))
		return nil, false
	}
	return &b, true
}

func (v *validation) optionalStringList(m *xcontent.Object, name string) ([]string, bool) {
	raw, found := m.Remove(name)
	if !found || raw == nil {
		return nil, false
	}
	arr, ok := raw.([]any)
	if !ok {
		v.add("%s", invalidType(name, raw, "List"))
		return nil, false
	}
	out := make([]string, 0, len(arr))
	before := v.count()
	for _, e := range arr {
		s, ok := e.(string)
		if !ok {
			v.add("%s", invalidType(name, e, "String"))
			continue
		}
		out = append(out, s)
	}
	return out, v.count() == before
}

// asObject returns raw as an object, or a 400 naming the field when it is
// some other JSON value. (Elasticsearch answers such bodies with a 500
// ClassCastException; a client mistake deserves a 400.)
func asObject(raw any, field string) (*xcontent.Object, error) {
	m, ok := raw.(*xcontent.Object)
	if !ok {
		return nil, eserror.New(http.StatusBadRequest, eserror.TypeStatus,
			"%s", invalidType(field, raw, "Map"))
	}
	return m, nil
}

// javaList renders names as Java's Arrays.toString does.
func javaList(names []string) string {
	return "[" + strings.Join(names, ", ") + "]"
}
