package cli

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/aviary-im/aviary/conf"
)

// TestExampleConfig keeps conf/example.yaml valid and complete: it passes
// `aviary config check`, and it mentions every key of conf.Config.
func TestExampleConfig(t *testing.T) {
	const path = "../../conf/example.yaml"
	var out, errOut bytes.Buffer
	if code := runConfig([]string{"check", path}, nil, &out, &errOut); code != 0 {
		t.Fatalf("example.yaml does not validate: %s", errOut.String())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	walkKeys(reflect.TypeOf(conf.Config{}), func(key string) {
		if !strings.Contains(string(data), key+":") {
			missing = append(missing, key)
		}
	})
	if len(missing) > 0 {
		t.Errorf("conf/example.yaml does not explain %v", missing)
	}
}

func walkKeys(t reflect.Type, fn func(string)) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		fn(name)
		if f.Type.Kind() == reflect.Struct {
			walkKeys(f.Type, fn)
		}
	}
}
