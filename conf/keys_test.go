package conf

import (
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// structKeys returns the dotted key of every field of t, by its yaml tag:
// sections ("c2s") and leaves ("c2s.listen"). Maps and lists are leaves.
func structKeys(t reflect.Type, prefix string, out map[string]bool) {
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		out[key] = true
		if t.Field(i).Type.Kind() == reflect.Struct {
			structKeys(t.Field(i).Type, key, out)
		}
	}
}

// yamlKeys returns the dotted key of every mapping key in n, stopping at
// the keys that are maps in Config (their contents are data, not keys).
func yamlKeys(n *yaml.Node, prefix string, leafMaps map[string]bool, out map[string]bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			yamlKeys(c, prefix, leafMaps, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if prefix != "" {
				key = prefix + "." + key
			}
			out[key] = true
			if !leafMaps[key] {
				yamlKeys(n.Content[i+1], key, leafMaps, out)
			}
		}
	}
}

func sortedDiff(a, b map[string]bool) []string {
	var d []string
	for k := range a {
		if !b[k] {
			d = append(d, k)
		}
	}
	sort.Strings(d)
	return d
}

// TestExampleHasEveryKey keeps conf/example.yaml and the Config struct in
// step, by full dotted path, in both directions: every key of Config is
// written out (uncommented) in the example, and the example has no key that
// Config does not know.
func TestExampleHasEveryKey(t *testing.T) {
	data, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	structKeys(reflect.TypeOf(Config{}), "", want)
	leafMaps := map[string]bool{}
	walkFields(reflect.ValueOf(&Config{}).Elem(), "", func(key, _ string, f reflect.Value) {
		if f.Kind() == reflect.Map {
			leafMaps[key] = true
		}
	})
	got := map[string]bool{}
	yamlKeys(&root, "", leafMaps, got)
	if missing := sortedDiff(want, got); len(missing) > 0 {
		t.Errorf("conf/example.yaml lacks keys %v", missing)
	}
	if extra := sortedDiff(got, want); len(extra) > 0 {
		t.Errorf("conf/example.yaml has keys Config does not know: %v", extra)
	}
	// And the example is a valid configuration as it stands.
	if _, err := LoadWith("example.yaml", nil, nil); err != nil {
		t.Errorf("example.yaml does not load: %v", err)
	}
}

// TestEveryKeySettableByEnv sets every leaf key through its AVIARY_*
// variable alone and checks that the field took the value.
func TestEveryKeySettableByEnv(t *testing.T) {
	n := 0
	walkFields(reflect.ValueOf(&Config{}).Elem(), "", func(key, envName string, f reflect.Value) {
		n++
		t.Run(key, func(t *testing.T) {
			var val string
			var want any
			switch {
			case f.Type() == reflect.TypeOf(time.Duration(0)):
				val, want = "7s", 7*time.Second
			case f.Kind() == reflect.String:
				val, want = "x-"+key, "x-"+key
			case f.Kind() == reflect.Bool:
				val, want = "true", true
			case f.Kind() == reflect.Int:
				val, want = "7", 7
			case f.Kind() == reflect.Float64:
				val, want = "0.5", 0.5
			case f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.Bool:
				v := false
				val, want = "false", &v
			case f.Type() == reflect.TypeOf((*time.Duration)(nil)):
				v := 7 * time.Second
				val, want = "7s", &v
			case f.Type() == reflect.TypeOf([]ExternalService{}):
				val, want = `[{type: turn, host: "turn.example.org", port: 3478}]`, []ExternalService{{Type: "turn", Host: "turn.example.org", Port: 3478}}
			case f.Kind() == reflect.Slice:
				val, want = "a:1, b:2", []string{"a:1", "b:2"}
			case f.Type() == reflect.TypeOf(map[string]string{}):
				val, want = "a.example=127.0.0.2:5269", map[string]string{"a.example": "127.0.0.2:5269"}
			case f.Type() == reflect.TypeOf(map[string]float64{}):
				val, want = `{"node1": 2}`, map[string]float64{"node1": 2}
			case f.Type() == reflect.TypeOf(map[string]map[string]any{}):
				val, want = `{"xep0092.version": {"hide_os": true}}`, map[string]map[string]any{"xep0092.version": {"hide_os": true}}
			default:
				t.Fatalf("no test value for %s (%s)", key, f.Type())
			}
			if envName != EnvName(key) && envName != "AVIARY_DATABASE" {
				t.Errorf("%s is read from %s, not %s", key, envName, EnvName(key))
			}
			c := &Config{}
			if err := applyEnv(c, []string{envName + "=" + val}); err != nil {
				t.Fatalf("%s=%s: %v", envName, val, err)
			}
			var got any
			walkFields(reflect.ValueOf(c).Elem(), "", func(k, _ string, g reflect.Value) {
				if k == key {
					got = g.Interface()
				}
			})
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s=%s gave %#v, want %#v", envName, val, got, want)
			}
		})
	})
	if n < 50 {
		t.Errorf("walked only %d keys", n)
	}
}

// TestFileErrorsNameKeyAndLine: decoding errors name the file, the line
// and the full dotted key, like validation errors do.
func TestFileErrorsNameKeyAndLine(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unknown key", "domain: x\nc2s:\n  listen: \":1\"\n  max_stanza_byts: 5\n", "c.yaml:4: c2s.max_stanza_byts: unknown key"},
		{"unknown section", "domain: x\nc2z:\n  listen: \":1\"\n", "c.yaml:2: c2z: unknown key"},
		{"bad value", "c2s:\n  max_stanza_bytes: lots\n", "c.yaml:2: c2s.max_stanza_bytes: cannot unmarshal"},
		{"bad value in list", "cluster:\n  hazelcast: {a: b}\n", "c.yaml:2: cluster.hazelcast: cannot unmarshal"},
		{"invalid value", "c2s:\n  max_stanza_bytes: 10\n", "c.yaml:2: c2s.max_stanza_bytes: must be at least 1024"},
		{"wasm host bytes below a stanza", "plugins:\n  wasm:\n    max_host_bytes: 2000\n", "c.yaml:3: plugins.wasm.max_host_bytes: must be at least c2s.max_stanza_bytes (262144)"},
		{"wasm host calls", "plugins:\n  wasm:\n    max_host_calls: -1\n", "c.yaml:3: plugins.wasm.max_host_calls: must be at least 1"},
		{"wasm kv bytes", "plugins:\n  wasm:\n    max_kv_bytes: -5\n", "c.yaml:3: plugins.wasm.max_kv_bytes: must be at least 1"},
		{"rollout failures", "plugins:\n  rollout:\n    max_failures: -1\n", "c.yaml:3: plugins.rollout.max_failures: must be at least 1"},
		{"rollout ratio", "plugins:\n  rollout:\n    max_failure_ratio: 1.5\n", "c.yaml:3: plugins.rollout.max_failure_ratio: must be above 0 and at most 1"},
		{"rollout window", "plugins:\n  rollout:\n    health_window: -1s\n", "c.yaml:3: plugins.rollout.health_window: must not be negative"},
		{"contact address without a scheme", "server_info:\n  abuse: [mailto:abuse@example.com, abuse@example.com]\n", `c.yaml:2: server_info.abuse: entry 2 ("abuse@example.com") is not a URI with a scheme`},
		{"fast token lifetime", "c2s:\n  fast_token_lifetime: 10s\n", "c.yaml:2: c2s.fast_token_lifetime: must be at least 1m"},
		{"offline bytes under a stanza", "c2s:\n  offline_max_bytes: 1000\n", "c.yaml:2: c2s.offline_max_bytes: must be at least c2s.max_stanza_bytes"},
		{"offline retry bytes under a stanza", "c2s:\n  offline_retry_max_bytes: 1000\n", "c.yaml:2: c2s.offline_retry_max_bytes: must be -1 (keep none) or at least c2s.max_stanza_bytes"},
		{"offline retry wait", "c2s:\n  offline_retry_max_wait: -1s\n", "c.yaml:2: c2s.offline_retry_max_wait: must be positive"},
		{"roster item too small", "c2s:\n  roster_max_item_bytes: 100\n", "c.yaml:2: c2s.roster_max_item_bytes: must be at least 256"},
		{"roster too large to fetch", "c2s:\n  roster_max_items: 5000\n", "c.yaml:2: c2s.roster_max_items: 5000 items of c2s.roster_max_item_bytes 2048 make a roster of up to 10240000 bytes"},
		{"no pending requests", "c2s:\n  roster_max_pending: -1\n", "c.yaml:2: c2s.roster_max_pending: must be at least 1"},
		{"unknown key", "external_services:\n  services:\n    - {type: stun, hots: a}\n", "c.yaml:3: external_services.services[0].hots: unknown key"},
		{"type", "external_services:\n  services:\n    - {type: turm, host: a}\n", "external_services.services[0].type: must be stun, stuns, turn or turns"},
		{"host", "external_services:\n  services:\n    - {type: stun}\n", "external_services.services[0].host: \"\" is not a host name"},
		{"port", "external_services:\n  services:\n    - {type: stun, host: a, port: 70000}\n", "external_services.services[0].port: must be between 1 and 65535"},
		{"transport", "external_services:\n  services:\n    - {type: stun, host: a, transport: sctp}\n", "external_services.services[0].transport: must be udp or tcp"},
		{"turn without credentials", "external_services:\n  services:\n    - {type: stun, host: a}\n    - {type: turn, host: a}\n", "c.yaml:4: external_services.services[1].username: a TURN server needs credentials"},
		{"half a static credential", "external_services:\n  services:\n    - {type: turn, host: a, username: u}\n", "external_services.services[0].username: username and password must be set together"},
		{"short ttl", "external_services:\n  credential_ttl: 10s\n", "external_services.credential_ttl: must be at least 1m"},
		{"upload url", "upload:\n  url: files.example.org\n", "c.yaml:2: upload.url: \"files.example.org\" is not an http or https URL"},
		{"upload quota under a file", "upload:\n  max_file_size: 2000\n  user_quota: 1000\n", "c.yaml:3: upload.user_quota: must be at least upload.max_file_size (2000)"},
		{"upload type", "upload:\n  allowed_types: [png]\n", "c.yaml:2: upload.allowed_types: \"png\" is not a content type"},
		{"upload slot timeout", "upload:\n  slot_timeout: 1ms\n", "c.yaml:2: upload.slot_timeout: must be at least 1s"},
		{"upload expiry", "upload:\n  expire_after: -1h\n", "c.yaml:2: upload.expire_after: must not be negative"},
		{"upload domain quota under a file", "upload:\n  max_file_size: 2000\n  domain_quota: 1000\n", "c.yaml:3: upload.domain_quota: must be 0 (no limit) or at least upload.max_file_size (2000), not 1000"},
		{"upload domain quota negative", "upload:\n  domain_quota: -1\n", "c.yaml:2: upload.domain_quota: must be 0 (no limit) or at least upload.max_file_size"},
		{"upload store", "upload:\n  store: s3\n", "c.yaml:2: upload.store: must be database or directory, not \"s3\""},
		{"upload directory missing", "upload:\n  store: directory\n", "upload.directory: must be set (upload.store is directory)"},
		{"upload directory relative", "upload:\n  store: directory\n  directory: files\n", "c.yaml:3: upload.directory: \"files\" is not an absolute path"},
		{"upload directory absent", "upload:\n  store: directory\n  directory: /nonexistent/aviary-files\n", "c.yaml:3: upload.directory: stat /nonexistent/aviary-files: no such file or directory"},
		{"upload directory a file", "upload:\n  store: directory\n  directory: /etc/hostname\n", "c.yaml:3: upload.directory: \"/etc/hostname\" is not a directory"},
		{"upload directory read-only", "upload:\n  store: directory\n  directory: /proc\n", "c.yaml:3: upload.directory: \"/proc\" is not writable"},
		{"upload store without the service", "upload:\n  store: directory\n  directory: /tmp\n", "upload.url: must be set to turn the upload service on (upload.store or upload.domain_quota is set for it)"},
		{"upload directory without the store", "upload:\n  directory: /tmp\n", "c.yaml:2: upload.directory: is set but upload.store is \"database\", not directory"},
		{"not a subdomain", "domain: example.org\ncomponents:\n  secrets: {irc.example.com: s}\n", "components.secrets.irc.example.com: \"irc.example.com\" is not a subdomain of domain \"example.org\""},
		{"empty secret", "domain: example.org\ncomponents:\n  secrets: {irc.example.org: \"\"}\n", "components.secrets.irc.example.org: the secret must not be empty"},
		{"listen without secrets", "components:\n  listen: 127.0.0.1:5347\n", "components.secrets: components.listen is set but no component has a secret"},
		{"bad listen", "components:\n  listen: nowhere\n  secrets: {irc.localhost: s}\n", "c.yaml:2: components.listen: \"nowhere\" is not host:port"},
		{"negative crash resume wait", "cluster:\n  crash_resume_wait: -1s\n", "cluster.crash_resume_wait: must not be negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := t.TempDir() + "/c.yaml"
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadWith(path, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestSet: every leaf key can be set by name (what `aviary serve --set`
// does); unknown keys and bad values are errors naming the key.
func TestSet(t *testing.T) {
	n := 0
	walkFields(reflect.ValueOf(&Config{}).Elem(), "", func(key, envName string, f reflect.Value) {
		n++
		c, viaEnv := &Config{}, &Config{}
		val := map[reflect.Kind]string{reflect.String: "x", reflect.Bool: "true", reflect.Int: "7", reflect.Int64: "7s",
			reflect.Float64: "0.5", reflect.Pointer: "false", reflect.Slice: "a,b", reflect.Map: `{"k": {"x": 1}}`}[f.Kind()]
		if f.Type() == reflect.TypeOf([]ExternalService{}) {
			val = "[{type: stun, host: h}]"
		} else if f.Type() == reflect.TypeOf((*time.Duration)(nil)) {
			val = "7s"
		} else if f.Type() == reflect.TypeOf(map[string]string{}) {
			val = "k=v"
		} else if f.Type() == reflect.TypeOf(map[string]float64{}) {
			val = "k=2"
		}
		if err := c.Set(key, val); err != nil {
			t.Errorf("Set(%s, %s): %v", key, val, err)
			return
		}
		if err := applyEnv(viaEnv, []string{envName + "=" + val}); err != nil {
			t.Errorf("%s=%s: %v", envName, val, err)
		}
		if !reflect.DeepEqual(c, viaEnv) || reflect.DeepEqual(c, &Config{}) {
			t.Errorf("Set(%s, %s) gave %+v, the environment %+v", key, val, c, viaEnv)
		}
	})
	if n < 50 {
		t.Errorf("walked only %d keys", n)
	}
	c := &Config{}
	if err := c.Set("c2s.bogus", "1"); err == nil || !strings.Contains(err.Error(), "c2s.bogus: unknown key") {
		t.Errorf("unknown key: %v", err)
	}
	if err := c.Set("c2s.auth_timeout", "soon"); err == nil || !strings.Contains(err.Error(), "c2s.auth_timeout") {
		t.Errorf("bad value: %v", err)
	}
	if err := c.Set("c2s", "x"); err == nil {
		t.Error("a section is not a key")
	}
}

// TestExternalServices: defaults by type (the errors are in
// TestFileErrorsNameKeyAndLine).
func TestExternalServices(t *testing.T) {
	path := t.TempDir() + "/c.yaml"
	good := "external_services:\n  secret: s\n  services:\n    - {type: stun, host: turn.example.org}\n    - {type: turns, host: 192.0.2.1}\n"
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadWith(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []ExternalService{{Type: "stun", Host: "turn.example.org", Port: 3478, Transport: "udp"}, {Type: "turns", Host: "192.0.2.1", Port: 5349, Transport: "tcp"}}
	if !reflect.DeepEqual(c.ExternalServices.Services, want) || c.ExternalServices.CredentialTTL != 24*time.Hour {
		t.Errorf("got %+v, ttl %v", c.ExternalServices.Services, c.ExternalServices.CredentialTTL)
	}
}

// TestUploadStore: the default store is the database; a directory store
// loads with an existing writable directory and leaves nothing behind
// from the check (the errors are in TestFileErrorsNameKeyAndLine).
func TestUploadStore(t *testing.T) {
	dir := t.TempDir()
	path := t.TempDir() + "/c.yaml"
	if err := os.WriteFile(path, []byte("upload:\n  url: https://files.example.com\n  domain_quota: 209715200\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadWith(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Upload.Store != "database" || c.Upload.DomainQuota != 200<<20 {
		t.Errorf("store %q, domain quota %d", c.Upload.Store, c.Upload.DomainQuota)
	}
	if err := os.WriteFile(path, []byte("upload:\n  url: https://files.example.com\n  store: directory\n  directory: "+dir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err = LoadWith(path, nil, nil); err != nil || c.Upload.Directory != dir {
		t.Fatalf("directory store: %v, %q", err, c.Upload.Directory)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the check left %v", left)
	}
}

// TestCrashResumeWaitZero: cluster.crash_resume_wait 0 is kept (no wait),
// not taken for unset; unset is 10s.
func TestCrashResumeWaitZero(t *testing.T) {
	path := t.TempDir() + "/c.yaml"
	if err := os.WriteFile(path, []byte("cluster:\n  crash_resume_wait: 0s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadWith(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Cluster.CrashResumeWait; w == nil || *w != 0 {
		t.Errorf("crash_resume_wait 0s loaded as %v", w)
	}
	if w := Default().Cluster.CrashResumeWait; w == nil || *w != 10*time.Second {
		t.Errorf("default crash_resume_wait %v, want 10s", w)
	}
}
