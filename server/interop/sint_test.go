package interop

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildAviary compiles the aviary binary once per test binary.
func buildAviary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "aviary")
	cmd := exec.Command("go", "build", "-o", bin, "../../cmd/aviary")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building aviary: %v\n%s", err, out)
	}
	return bin
}

var sintResult = regexp.MustCompile(`finished: (\d+)/(\d+) \[(\d+) failed\]`)

// Low-level tests name their connection kind too: "(LowLevel, tcp) failed".
var sintFailed = regexp.MustCompile(`SEVERE: (\w+)\.(\w+) \([^)]*\) failed`)

// runSINT runs the framework in its own network namespace and returns the
// log, the counts and the failed tests.
func runSINT(t *testing.T, mode string, extra ...string) (passed, total int, failed []string, log string) {
	t.Helper()
	lib := os.Getenv("AVIARY_SINT_LIB")
	if lib == "" {
		lib = filepath.Join(os.Getenv("HOME"), ".cache/aviary/sint-lib")
	}
	_, errJava := exec.LookPath("java")
	_, errUnshare := exec.LookPath("unshare")
	_, errLib := os.Stat(filepath.Join(lib, "smack-integration-test-4.5.0-beta5.jar"))
	need(t, errJava == nil && errUnshare == nil && errLib == nil, "the Smack integration test framework (java, unshare, AVIARY_SINT_LIB)")
	if os.Geteuid() != 0 {
		need(t, false, "root (for a network namespace)")
	}
	bin := buildAviary(t)
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args := append([]string{"-n", "bash", "testdata/sint.sh", bin, lib, work, mode}, extra...)
	cmd := exec.CommandContext(ctx, "unshare", args...)
	// The framework's JVM and the server it starts run in one process
	// group, killed whole when ctx ends: a Smack client that deadlocks
	// (CI once saw its OMEMO classes do so) then fails this test with its
	// log, instead of outliving unshare and holding the output pipe open
	// until the package's timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	log = string(out)
	// One summary per framework run: the in-band mode runs the OMEMO
	// classes a second time, under the launcher that registers an
	// OmemoService (testdata/sint.sh).
	runs := sintResult.FindAllStringSubmatch(log, -1)
	if want := sintRuns(mode, extra); len(runs) != want {
		server, _ := os.ReadFile(filepath.Join(work, "server.log"))
		t.Fatalf("SINT did not finish (%d of %d runs; %v):\n%s\nserver log:\n%s", len(runs), want, err, tail(log, 60), tail(string(server), 40))
	}
	for _, m := range runs {
		var p, n int
		fmt.Sscan(m[1], &p)
		fmt.Sscan(m[2], &n)
		passed, total = passed+p, total+n
	}
	seen := map[string]bool{}
	for _, f := range sintFailed.FindAllStringSubmatch(log, -1) {
		name := f[1] + "." + f[2]
		if !seen[name] {
			seen[name] = true
			failed = append(failed, name)
		}
	}
	sort.Strings(failed)
	return passed, total, failed, log
}

// sintRuns is how many framework runs sint.sh makes in a mode: the
// in-band mode adds the OMEMO run unless the classes are chosen.
func sintRuns(mode string, extra []string) int {
	for _, x := range extra {
		if strings.HasPrefix(x, "-Dsinttest.enabledTests=") {
			return 1
		}
	}
	if mode == "ibr" {
		return 2
	}
	return 1
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func knownFailures(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("testdata/sint-known-failures.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	known := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, reason, _ := strings.Cut(line, " ")
		known[name] = strings.TrimSpace(reason)
	}
	return known
}

// TestSmackSINT runs the whole Smack integration test framework with
// accounts made by in-band registration. Every failure must be listed,
// with its reason, in testdata/sint-known-failures.txt.
func TestSmackSINT(t *testing.T) {
	passed, total, failed, log := runSINT(t, "ibr")
	known := knownFailures(t)
	// The line CI reads: SINT's own summary is not in this form.
	report(t, "smack-sint", fmt.Sprintf("smack-sint: %d passed, %d failed", passed, total-passed))
	for _, f := range failed {
		if _, ok := known[f]; !ok {
			t.Errorf("SINT test %s failed and is not a known failure", f)
		} else {
			t.Logf("known failure this run: %s", f)
		}
	}
	failedSet := map[string]bool{}
	for _, f := range failed {
		failedSet[f] = true
	}
	for k := range known {
		if !failedSet[k] && strings.Contains(log, k) {
			t.Logf("known failure %s passed this time: consider removing it from the list", k)
		}
	}
	if total < 30 {
		t.Errorf("only %d SINT tests ran; the framework found too few", total)
	}
	if t.Failed() {
		keepLog(t, "smack-sint.log", log)
		t.Logf("SINT output (tail; the whole run in artifacts/smack-sint.log):\n%s", tail(log, 80))
	}
}

// TestSmackSINTServiceAdministration checks the other way SINT creates
// accounts: an admin's XEP-0133 add-user/delete-user ad-hoc commands.
func TestSmackSINTServiceAdministration(t *testing.T) {
	passed, total, failed, log := runSINT(t, "admin", "-Dsinttest.enabledSpecifications=RFC6121,XEP-0199")
	report(t, "smack-sint-admin", fmt.Sprintf("smack-sint-admin: %d passed, %d failed", passed, total-passed))
	if total == 0 {
		t.Fatalf("service administration run: no tests ran\n%s", tail(log, 60))
	}
	// The same list as the in-band run: the RFC 6121 tests' own races
	// (testdata/sint-known-failures.txt) do not depend on how accounts
	// were made. Anything else fails.
	known := knownFailures(t)
	var unknown []string
	for _, f := range failed {
		if _, ok := known[f]; !ok {
			unknown = append(unknown, f)
		}
	}
	if len(unknown) > 0 {
		t.Errorf("service administration run: %d/%d passed, failed %v (not known failures: %v)\n%s", passed, total, failed, unknown, tail(log, 60))
	} else if len(failed) > 0 {
		t.Logf("known failures in the service administration run: %v", failed)
	}
}

// keepLog keeps a run's whole output in artifacts/NAME, for the failures
// the tail does not show.
func keepLog(t *testing.T, name, log string) {
	dir := os.Getenv("AVIARY_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "artifacts")
	}
	err := os.MkdirAll(dir, 0o755)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, name), []byte(log), 0o644)
	}
	if err != nil {
		t.Logf("keeping the SINT log: %v", err)
	}
}

// report prints a SINT summary line (seen with -v) and keeps it in
// artifacts/NAME.txt, which the test command prints: go test shows a
// passing package's output only in verbose mode.
func report(t *testing.T, name, line string) {
	fmt.Println(line)
	dir := os.Getenv("AVIARY_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("keeping the SINT summary: %v", err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name+".txt"), []byte(line+"\n"), 0o644); err != nil {
		t.Logf("keeping the SINT summary: %v", err)
	}
}

// TestSmackSINTMAM runs Smack's MamIntegrationTest alone (it also runs in
// TestSmackSINT, among the rest) and requires that its tests ran and
// passed: SINT skips a class whose feature the server does not announce,
// which TestSmackSINT would not notice.
func TestSmackSINTMAM(t *testing.T) {
	passed, total, failed, log := runSINT(t, "ibr", "-Dsinttest.enabledTests=MamIntegrationTest")
	report(t, "smack-sint-mam", fmt.Sprintf("smack-sint-mam: %d passed, %d failed", passed, total-passed))
	if total < 2 || passed != total || len(failed) > 0 {
		t.Errorf("MamIntegrationTest: %d of %d passed, failed %v\n%s", passed, total, failed, tail(log, 60))
	}
}

// TestSmackSINTMUC runs Smack's group chat tests (XEP-0045: the
// MultiUserChat*IntegrationTest classes; they also run in TestSmackSINT)
// alone, and requires that they ran: SINT skips them when it finds no
// group chat service in the domain's disco#items. Every failure must be
// a known one.
func TestSmackSINTMUC(t *testing.T) {
	passed, total, failed, log := runSINT(t, "ibr", "-Dsinttest.enabledTests="+strings.Join([]string{
		"MultiUserChatIntegrationTest", "MultiUserChatEntityIntegrationTest", "MultiUserChatOccupantIntegrationTest",
		"MultiUserChatRolesAffiliationsPrivilegesIntegrationTest", "MultiUserChatLowLevelIntegrationTest",
	}, ","))
	report(t, "smack-sint-muc", fmt.Sprintf("smack-sint-muc: %d passed, %d failed", passed, total-passed))
	keepLog(t, "smack-sint-muc.log", log)
	if total < 20 {
		t.Errorf("only %d group chat tests ran\n%s", total, tail(log, 60))
	}
	known := knownFailures(t)
	for _, f := range failed {
		if _, ok := known[f]; !ok {
			t.Errorf("SINT test %s failed and is not a known failure", f)
		}
	}
	if t.Failed() {
		t.Logf("SINT output (tail):\n%s", tail(log, 120))
	}
}

// TestSmackSINTPubSub runs Smack's PubSubIntegrationTest alone against
// the pubsub service (xep0060.pubsub at pubsub.localhost, which Smack
// finds in the domain's disco#items) and requires that its tests ran
// and passed: without a service SINT skips the class as not possible.
func TestSmackSINTPubSub(t *testing.T) {
	passed, total, failed, log := runSINT(t, "ibr", "-Dsinttest.enabledTests=PubSubIntegrationTest")
	report(t, "smack-sint-pubsub", fmt.Sprintf("smack-sint-pubsub: %d passed, %d failed", passed, total-passed))
	if total < 2 || passed != total || len(failed) > 0 {
		t.Errorf("PubSubIntegrationTest: %d of %d passed, failed %v\n%s", passed, total, failed, tail(log, 80))
	}
}

// TestSmackSINTUpload runs Smack's HttpFileUploadIntegrationTest alone:
// the service is discovered, a slot requested, the file PUT over HTTPS
// and fetched back, and both must match.
func TestSmackSINTUpload(t *testing.T) {
	passed, total, failed, log := runSINT(t, "ibr", "-Dsinttest.enabledTests=HttpFileUploadIntegrationTest")
	report(t, "smack-sint-upload", fmt.Sprintf("smack-sint-upload: %d passed, %d failed", passed, total-passed))
	if total < 1 || passed != total || len(failed) > 0 {
		t.Errorf("HttpFileUploadIntegrationTest: %d of %d passed, failed %v\n%s", passed, total, failed, tail(log, 60))
	}
}
