package conf

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Changed returns the dotted keys whose values differ between a and b,
// in the order of the schema.
func Changed(a, b *Config) []string {
	var keys []string
	bv := reflect.ValueOf(b).Elem()
	walkFields(reflect.ValueOf(a).Elem(), "", func(key, _ string, f reflect.Value) {
		if !reflect.DeepEqual(f.Interface(), fieldAt(bv, key).Interface()) {
			keys = append(keys, key)
		}
	})
	return keys
}

// fieldAt returns the field of v named by a dotted YAML key that
// walkFields produced.
func fieldAt(v reflect.Value, key string) reflect.Value {
	for _, name := range strings.Split(key, ".") {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			if n, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); n == name {
				v = v.Field(i)
				break
			}
		}
	}
	return v
}

// CheckReload validates next, a configuration read again (`aviary serve`
// on SIGHUP), and compares it with the running cur: it returns the keys
// that changed, all of them Live, or an error naming every changed key
// that needs a restart (then nothing may be applied).
func CheckReload(cur, next *Config) ([]string, error) {
	if errs := next.Validate(); len(errs) > 0 {
		return nil, errs
	}
	changed := Changed(cur, next)
	var fixed []string
	for _, k := range changed {
		if !slices.Contains(Live, k) {
			fixed = append(fixed, k)
		}
	}
	if len(fixed) > 0 {
		return nil, fmt.Errorf("conf: %s cannot change while the node runs (restart it); only %s can", strings.Join(fixed, ", "), strings.Join(Live, ", "))
	}
	return changed, nil
}
