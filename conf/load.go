package conf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Default returns a Config with every default applied.
func Default() *Config {
	c := &Config{}
	c.ApplyDefaults()
	return c
}

// ApplyDefaults fills every zero field with its default. It is the one
// place defaults live; field comments repeat them for operators.
func (c *Config) ApplyDefaults() {
	setStr := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	setInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setStr(&c.Domain, "localhost")
	setStr(&c.DataDir, "./data")
	setStr(&c.LogLevel, "info")
	setStr(&c.LogFormat, "text")

	setStr(&c.TLS.ACME.Directory, LetsEncrypt)
	setStr(&c.TLS.SessionTickets, "cluster")
	if c.TLS.ACME.Challenges == nil {
		c.TLS.ACME.Challenges = []string{"http-01", "tls-alpn-01"}
	}
	setDur(&c.TLS.ACME.RenewBefore, 720*time.Hour)

	setStr(&c.C2S.Listen, ":5222")
	setStr(&c.C2S.TLSListen, ":5223")
	if c.C2S.RequireTLS == nil {
		t := true
		c.C2S.RequireTLS = &t
	}
	if c.Cluster.CrashSafety == nil {
		t := true
		c.Cluster.CrashSafety = &t
	}
	setStr(&c.C2S.ResourceConflict, "kick_old")
	setInt(&c.C2S.MaxStanzaBytes, 256<<10)
	setInt(&c.C2S.PreAuthMaxStanzaBytes, 16<<10)
	setInt(&c.C2S.MaxUnauthenticatedPerAddress, 32)
	setInt(&c.C2S.MaxTLSHandshakesPerSecond, 1000)
	setInt(&c.C2S.MaxLoginsPerSecond, 500)
	setDur(&c.C2S.AdmissionWait, 2*time.Second)
	setInt(&c.C2S.MaxNegotiating, 2000)
	setInt(&c.C2S.RegistrationLimit, 10)
	setInt(&c.C2S.SASLAccountFailures, 5)
	setDur(&c.C2S.SASLMaxAccountDelay, 30*time.Second)
	setDur(&c.C2S.AuthTimeout, 30*time.Second)
	setDur(&c.C2S.PingInterval, 4*time.Minute)
	setDur(&c.C2S.IdleTimeout, time.Minute)
	setDur(&c.C2S.SASLFailureDelay, time.Second)
	setDur(&c.C2S.SMResumeTimeout, 5*time.Minute)
	setInt(&c.C2S.SCRAMIterations, 4096)
	setInt(&c.C2S.OfflineLimit, 1000)
	setInt(&c.C2S.OfflineMaxBytes, 10<<20)
	setInt(&c.C2S.OfflineRetryMaxBytes, 64<<20)
	setDur(&c.C2S.OfflineRetryMaxWait, 10*time.Minute)
	setInt(&c.C2S.RosterMaxItems, 1000)
	setInt(&c.C2S.RosterMaxItemBytes, 2048)
	setInt(&c.C2S.RosterMaxPending, 100)
	setDur(&c.C2S.OfflineExpiry, 720*time.Hour)
	if c.C2S.FASTTokens == nil {
		t := true
		c.C2S.FASTTokens = &t
	}
	setDur(&c.C2S.FASTTokenLifetime, 504*time.Hour)

	setInt(&c.Database.PoolSize, 10)
	setDur(&c.Database.Timeout, 5*time.Second)
	setInt(&c.Database.StartupRetries, 10)
	setDur(&c.Database.StartupRetryInterval, 3*time.Second)

	setStr(&c.Cluster.HazelcastClusterName, "aviary")
	if c.Cluster.NodeName == "" {
		if h, err := os.Hostname(); err == nil {
			c.Cluster.NodeName = h
		} else {
			c.Cluster.NodeName = "node1"
		}
	}
	setStr(&c.Cluster.Listen, ":5290")
	setInt(&c.Cluster.StartupRetries, 10)
	setDur(&c.Cluster.StartupRetryInterval, 3*time.Second)
	setDur(&c.Cluster.OperationTimeout, 5*time.Second)
	setDur(&c.Cluster.HeartbeatInterval, 2*time.Second)
	setDur(&c.Cluster.NodeTTL, 10*time.Second)
	if c.Cluster.CrashResumeWait == nil {
		d := 10 * time.Second
		c.Cluster.CrashResumeWait = &d
	}

	setDur(&c.S2S.ConnectTimeout, 15*time.Second)
	setDur(&c.S2S.IdleTimeout, 10*time.Minute)

	if c.HTTP.CORSOrigins == nil {
		c.HTTP.CORSOrigins = []string{"*"}
	}
	setDur(&c.HTTP.BOSHMaxWait, 60*time.Second)
	setDur(&c.HTTP.BOSHInactivity, 60*time.Second)
	setDur(&c.HTTP.BOSHMaxPause, 120*time.Second)
	setInt(&c.HTTP.BOSHHold, 1)
	setInt(&c.HTTP.BOSHRequests, 2)
	setDur(&c.HTTP.BOSHPolling, time.Second)
	setStr(&c.HTTP.PlainSecure, "loopback")
	setDur(&c.HTTP.WebSocketPingInterval, 30*time.Second)
	setDur(&c.HTTP.ReadHeaderTimeout, 10*time.Second)
	setDur(&c.HTTP.ReadBodyTimeout, 30*time.Second)
	setDur(&c.HTTP.WriteTimeout, 30*time.Second)
	setDur(&c.HTTP.IdleTimeout, 2*time.Minute)

	setStr(&c.Admin.Listen, "127.0.0.1:9090")
	setDur(&c.Admin.ReadTimeout, time.Minute)

	setInt(&c.Balance.Capacity, 10000)
	if c.Balance.LoadThreshold == 0 {
		c.Balance.LoadThreshold = 0.9
	}
	setDur(&c.Balance.PublishInterval, 2*time.Second)
	setDur(&c.Balance.DrainDeadline, 2*time.Minute)
	setDur(&c.Balance.DrainNotice, 5*time.Second)
	setInt(&c.Balance.DrainRate, 1000)
	setDur(&c.Balance.RetryAfter, 30*time.Second)
	setInt(&c.Runtime.GCMinHeadroomMB, 64)
	setStr(&c.MAM.Default, "always")
	setInt(&c.MAM.MaxPage, 100)
	if c.MUC.Enabled == nil {
		t := true
		c.MUC.Enabled = &t
	}
	setStr(&c.MUC.Name, "Chatrooms")
	setInt(&c.MUC.History, 20)
	setInt(&c.MUC.MaxOccupants, 1000)
	setStr(&c.MUC.Create, "local")
	if c.MUC.MessageRate == 0 {
		c.MUC.MessageRate = 5
	}
	setInt(&c.MUC.MessageBurst, 20)
	setInt(&c.MUC.MaxRoomsPerUser, 100)
	setDur(&c.ExternalServices.CredentialTTL, 24*time.Hour)
	setDur(&c.Components.HandshakeTimeout, 10*time.Second)
	if c.Upload.MaxFileSize == 0 {
		c.Upload.MaxFileSize = 100 << 20
	}
	if c.Upload.UserQuota == 0 {
		c.Upload.UserQuota = 1 << 30
	}
	setDur(&c.Upload.SlotTimeout, 5*time.Minute)
	setStr(&c.Upload.Store, "database")
	for i := range c.ExternalServices.Services {
		s := &c.ExternalServices.Services[i]
		tls := s.Type == "stuns" || s.Type == "turns"
		if tls {
			setInt(&s.Port, 5349)
			setStr(&s.Transport, "tcp")
		} else {
			setInt(&s.Port, 3478)
			setStr(&s.Transport, "udp")
		}
	}
	if c.Plugins.Dir == "" {
		c.Plugins.Dir = c.DataDir + "/plugins"
	}
	setInt(&c.Plugins.Wasm.MaxHostCalls, 64)
	setInt(&c.Plugins.Wasm.MaxHostBytes, 4*c.C2S.MaxStanzaBytes)
	setInt(&c.Plugins.Wasm.MaxKVBytes, 1<<20)
	setDur(&c.Plugins.Rollout.HealthWindow, 30*time.Second)
	setInt(&c.Plugins.Rollout.MaxFailures, 3)
	if c.Plugins.Rollout.MaxFailureRatio == 0 {
		c.Plugins.Rollout.MaxFailureRatio = 0.1
	}
}

// Error is one configuration problem, naming the key (dotted YAML path)
// and, when the key came from a file, its line.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Key, e.Msg)
	case e.File != "":
		return fmt.Sprintf("%s: %s: %s", e.File, e.Key, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Key, e.Msg)
}

// Errors is every problem found; Load and Validate report all of them at once.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Load reads a YAML file (empty path: no file), applies AVIARY_* environment
// overrides, then defaults, then validates. Flags are applied by the caller
// between Load's file/env step and validation: see LoadWith.
func Load(path string) (*Config, error) {
	return LoadWith(path, os.Environ(), nil)
}

// LoadWith is Load with an explicit environment and a hook that applies
// command-line flags, which win over the file and the environment.
func LoadWith(path string, environ []string, flags func(*Config)) (*Config, error) {
	c := &Config{}
	lines := map[string]int{}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("conf: %w", err)
		}
		if err := decodeYAML(path, data, c, lines); err != nil {
			return nil, err
		}
	}
	if err := applyEnv(c, environ); err != nil {
		return nil, err
	}
	if flags != nil {
		flags(c)
	}
	c.ApplyDefaults()
	if errs := c.Validate(); len(errs) > 0 {
		for _, e := range errs {
			if e.File == "" && path != "" {
				if l, ok := lines[e.Key]; ok {
					e.File, e.Line = path, l
				} else if rec, _, ok := strings.Cut(e.Key, "]."); ok && lines[rec+"]"] > 0 {
					// A key a record of a list left out: the record's line.
					e.File, e.Line = path, lines[rec+"]"]
				}
			}
		}
		return nil, errs
	}
	return c, nil
}

func decodeYAML(path string, data []byte, c *Config, lines map[string]int) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return &Error{File: path, Key: "(file)", Msg: err.Error()}
	}
	recordLines(&root, "", lines)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			var errs Errors
			for _, m := range te.Errors {
				errs = append(errs, typeError(path, m, lines))
			}
			return errs
		}
		return &Error{File: path, Key: "(file)", Msg: err.Error()}
	}
	return nil
}

// typeError turns a yaml.v3 decoding message into an Error naming the
// full dotted key and its line: "line 4: field bogus not found in type
// conf.C2SConfig" → "FILE:4: c2s.bogus: unknown key".
func typeError(path, m string, lines map[string]int) *Error {
	e := &Error{File: path, Key: keyFromYAMLMsg(m), Msg: m}
	var line int
	if _, err := fmt.Sscanf(m, "line %d:", &line); err != nil || line <= 0 {
		return e
	}
	best := ""
	for key, l := range lines {
		if l != line {
			continue
		}
		if key == e.Key || strings.HasSuffix(key, "."+e.Key) {
			best = key
			break
		}
		if e.Key == "(value)" && (best == "" || len(key) < len(best)) {
			best = key // a bad value: the (outermost) key on its line
		}
	}
	if best != "" {
		e.Key = best
	}
	e.Line = line
	if strings.Contains(m, " not found in type ") {
		e.Msg = "unknown key"
	} else if _, rest, ok := strings.Cut(m, ": "); ok {
		e.Msg = rest
	}
	return e
}

// keyFromYAMLMsg extracts the key from yaml.v3 messages such as
// "line 3: field bogus not found in type conf.C2SConfig".
func keyFromYAMLMsg(m string) string {
	if i := strings.Index(m, "field "); i >= 0 {
		rest := m[i+len("field "):]
		if j := strings.IndexByte(rest, ' '); j > 0 {
			return rest[:j]
		}
	}
	return "(value)"
}

func recordLines(n *yaml.Node, prefix string, lines map[string]int) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			recordLines(c, prefix, lines)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			key := k.Value
			if prefix != "" {
				key = prefix + "." + k.Value
			}
			lines[key] = k.Line
			recordLines(n.Content[i+1], key, lines)
		}
	case yaml.SequenceNode:
		// Records in a list are named by index, as validation names
		// them: external_services.services[1].host.
		for i, c := range n.Content {
			key := fmt.Sprintf("%s[%d]", prefix, i)
			lines[key] = c.Line
			recordLines(c, key, lines)
		}
	}
}

// EnvName returns the environment variable for a dotted key:
// "c2s.listen" → AVIARY_C2S_LISTEN.
func EnvName(key string) string {
	return "AVIARY_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// applyEnv sets fields from AVIARY_* variables. Lists are comma-separated.
func applyEnv(c *Config, environ []string) error {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "AVIARY_") {
			env[k] = v
		}
	}
	if len(env) == 0 {
		return nil
	}
	var errs Errors
	walkFields(reflect.ValueOf(c).Elem(), "", func(key, envName string, f reflect.Value) {
		v, ok := env[envName]
		if !ok {
			return
		}
		if err := setFromString(f, v); err != nil {
			errs = append(errs, &Error{Key: key, Msg: fmt.Sprintf("from %s: %v", envName, err)})
		}
	})
	if len(errs) > 0 {
		return errs
	}
	return nil
}

func walkFields(v reflect.Value, prefix string, fn func(key, env string, f reflect.Value)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		f := v.Field(i)
		if sf.Type.Kind() == reflect.Struct {
			walkFields(f, key, fn)
			continue
		}
		env := sf.Tag.Get("env")
		if env == "" {
			env = EnvName(key)
		}
		fn(key, env, f)
	}
}

func setFromString(f reflect.Value, s string) error {
	if f.Type() == reflect.TypeOf(time.Duration(0)) {
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		f.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		f.SetInt(n)
	case reflect.Pointer:
		if f.Type().Elem() == reflect.TypeOf(time.Duration(0)) {
			d, err := time.ParseDuration(s)
			if err != nil {
				return err
			}
			f.Set(reflect.ValueOf(&d))
			return nil
		}
		if f.Type().Elem().Kind() == reflect.Bool {
			b, err := strconv.ParseBool(s)
			if err != nil {
				return err
			}
			f.Set(reflect.ValueOf(&b))
			return nil
		}
		return fmt.Errorf("unsupported type %s", f.Type())
	case reflect.Slice:
		if f.Type().Elem().Kind() == reflect.Struct {
			// A list of records as YAML flow (or JSON), its keys checked
			// as in a file: [{type: turn, host: turn.example.org}].
			dec := yaml.NewDecoder(strings.NewReader(s))
			dec.KnownFields(true)
			l := reflect.New(f.Type())
			if err := dec.Decode(l.Interface()); err != nil {
				return fmt.Errorf("want a list such as [{key: value}]: %w", err)
			}
			f.Set(l.Elem())
			return nil
		}
		if f.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported type %s", f.Type())
		}
		var parts []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		f.Set(reflect.ValueOf(parts))
	case reflect.Float64:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		f.SetFloat(x)
	case reflect.Map:
		if f.Type().Key().Kind() != reflect.String {
			return fmt.Errorf("unsupported type %s", f.Type())
		}
		// Any map as a JSON object: {"xep0092.version": {"hide_os": true}}.
		if strings.HasPrefix(strings.TrimSpace(s), "{") {
			m := reflect.New(f.Type())
			if err := json.Unmarshal([]byte(s), m.Interface()); err != nil {
				return fmt.Errorf("want a JSON object: %w", err)
			}
			f.Set(m.Elem())
			return nil
		}
		// Flat maps as pairs: "a.example=127.0.0.2:5269,b.example=..."
		m := reflect.MakeMap(f.Type())
		for _, p := range strings.Split(s, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if !ok {
				return fmt.Errorf("want key=value pairs or a JSON object, got %q", p)
			}
			ev := reflect.New(f.Type().Elem()).Elem()
			if err := setFromString(ev, v); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			m.SetMapIndex(reflect.ValueOf(k), ev)
		}
		f.Set(m)
	default:
		return fmt.Errorf("unsupported type %s", f.Type())
	}
	return nil
}

// Off reports whether a listener address means "turned off".
func Off(addr string) bool { return addr == "" || addr == "off" }

// ListenAddr normalises a listener address: port -1 means any free port.
func ListenAddr(addr string) string {
	if h, p, err := net.SplitHostPort(addr); err == nil && p == "-1" {
		return net.JoinHostPort(h, "0")
	}
	return addr
}

// Set sets one key, named by its dotted YAML path ("c2s.auth_timeout"),
// from a string written as for its AVIARY_* variable. `aviary serve --set
// key=value` uses it so that every key can also be given as a flag.
func (c *Config) Set(key, value string) error {
	var err error
	found := false
	walkFields(reflect.ValueOf(c).Elem(), "", func(k, _ string, f reflect.Value) {
		if k == key {
			found = true
			if e := setFromString(f, value); e != nil {
				err = &Error{Key: key, Msg: e.Error()}
			}
		}
	})
	if !found {
		return &Error{Key: key, Msg: "unknown key"}
	}
	return err
}
