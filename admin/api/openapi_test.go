package api

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestOpenAPICoversRoutes keeps openapi.yaml true: every JSON route the
// server registers is described, and nothing described is missing.
func TestOpenAPICoversRoutes(t *testing.T) {
	raw, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for p, ops := range doc.Paths {
		for m := range ops {
			documented[strings.ToUpper(m)+" "+p] = true
		}
	}
	// Routes are registered in every file of the package (server.go,
	// plugins.go, console.go...).
	files, _ := filepath.Glob("*.go")
	var src []byte
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src = append(src, b...)
	}
	re := regexp.MustCompile(`"((?:GET|POST|PATCH|PUT|DELETE) /(?:api|healthz|readyz|metrics)[^"]*)"`)
	registered := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		registered[m[1]] = true
		if !documented[m[1]] {
			t.Errorf("route %q is not in openapi.yaml", m[1])
		}
	}
	for d := range documented {
		if !registered[d] {
			t.Errorf("openapi.yaml documents %q, which the server does not serve", d)
		}
	}
	if len(registered) < 20 {
		t.Errorf("found only %d routes: the scan is broken", len(registered))
	}
}
