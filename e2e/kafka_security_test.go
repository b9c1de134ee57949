package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/internal/clustertest"
	"github.com/wardenhq/warden/internal/testenv"
	"github.com/wardenhq/warden/node"
	"github.com/wardenhq/warden/transport"
)

// secureKafka is a broker process serving TLS and requiring SCRAM, with the
// client flags and files that reach it.
type secureKafka struct {
	addr, caFile, pwFile string
	password             string
	// clientArgs are the --kafka-* flags of agent and ship.
	clientArgs []string
}

const scramUser, scramPassword = "warden", "s3cret-pass"

// startSecureBroker starts `warden broker` with TLS (a certificate from a
// CA made for the test) and SASL SCRAM-SHA-256, with topic access-logs.
func startSecureBroker(t *testing.T, dir string, partitions int, dataDir string) (*secureKafka, *proc) {
	t.Helper()
	pkiDir := filepath.Join(dir, "pki")
	if err := os.MkdirAll(pkiDir, 0o700); err != nil {
		t.Fatal(err)
	}
	pki, err := transport.NewTestPKI(pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := pki.Issue("broker")
	if err != nil {
		t.Fatal(err)
	}
	k := &secureKafka{addr: freeAddr(t), caFile: pki.CAFile, pwFile: filepath.Join(dir, "kafka-password"), password: scramPassword}
	if err := os.WriteFile(k.pwFile, []byte(scramPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startSecureBrokerAt(t, dir, k, cert, key, partitions, dataDir)
	k.clientArgs = []string{"--kafka-tls-ca", k.caFile, "--kafka-sasl", "scram-sha-256", "--kafka-user", scramUser, "--kafka-password-file", k.pwFile}
	return k, p
}

func startSecureBrokerAt(t *testing.T, dir string, k *secureKafka, cert, key string, partitions int, dataDir string) *proc {
	t.Helper()
	p := startProc(t, dir, "broker", "broker", "--listen", k.addr, "--data-dir", dataDir, "--topic", "access-logs",
		"--partitions", strconv.Itoa(partitions), "--tls-cert", cert, "--tls-key", key,
		"--sasl-mechanism", "scram-sha-256", "--sasl-user", scramUser, "--sasl-password-file", k.pwFile)
	t.Cleanup(func() {
		if p.alive() {
			p.kill()
		}
	})
	waitFor(t, 15*time.Second, "secure broker up", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "broker.log"))
		return bytes.Contains(b, []byte("broker serving"))
	})
	return p
}

// kcatSecure runs kcat against k with SASL_SSL.
func (k *secureKafka) kcat(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	kcat := testenv.Tool(t, "kcat")
	base := []string{"-b", k.addr, "-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=SCRAM-SHA-256",
		"-X", "sasl.username=" + scramUser, "-X", "sasl.password=" + k.password, "-X", "ssl.ca.location=" + k.caFile}
	return exec.Command(kcat, append(base, args...)...).CombinedOutput()
}

// startAgentProc starts one single-node agent with extra flags, killed at the end.
func startAgentProc(t *testing.T, dir, id, brokerAddr string, extra ...string) (*proc, agentSpec) {
	t.Helper()
	a, err := clustertest.NewAgent(id, "127.0.0.1", filepath.Join(dir, id))
	if err != nil {
		t.Fatal(err)
	}
	f := a.Flags(brokerAddr, "access-logs")
	f.BatchInterval, f.Extra = 50*time.Millisecond, append([]string{"--retention", "0"}, extra...)
	p := startProc(t, dir, id, f.Args()...)
	t.Cleanup(func() {
		if p.alive() {
			p.kill()
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, id+".log"))
			t.Logf("---- %s.log (tail) ----\n%s", id, tail(b, 3000))
			b, _ = os.ReadFile(filepath.Join(dir, "broker.log"))
			t.Logf("---- broker.log (tail) ----\n%s", tail(b, 2000))
		}
	})
	return p, specOf(a)
}

// statsRequests reads the request count of /v1/stats at http (agents
// started by startAgentProc keep every minute: --retention 0). Malformed
// lines are an error here.
func statsRequests(http string) (int64, error) {
	var s struct {
		Requests  int64 `json:"requests"`
		Malformed int64 `json:"malformed"`
	}
	if err := getJSON("http://"+http+"/v1/stats?top=1", &s); err != nil {
		return 0, err
	}
	if s.Malformed != 0 {
		return s.Requests, fmt.Errorf("%d malformed lines", s.Malformed)
	}
	return s.Requests, nil
}

// readyz returns /readyz's status code and reason.
func readyz(addr string) (int, string) {
	resp, err := httpClient.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var v struct {
		Reason string `json:"reason"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v.Reason
}

func fileLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "" {
			out = append(out, sc.Text())
		}
	}
	return out
}

// TestProcesses_SecureKafka_AgentAndShipOverSCRAMAndTLS: a broker that
// serves only TLS and requires SCRAM-SHA-256; an agent and `warden ship`
// with the CA and the credentials (the agent's password from a file, ship's
// from $WARDEN_KAFKA_PASSWORD). /v1/stats counts exactly the shipped lines,
// and kcat over SASL_SSL reads back exactly what ship wrote.
func TestProcesses_SecureKafka_AgentAndShipOverSCRAMAndTLS(t *testing.T) {
	dir := t.TempDir()
	k, _ := startSecureBroker(t, dir, 4, filepath.Join(dir, "broker-data"))
	_, s := startAgentProc(t, dir, "n1", k.addr, k.clientArgs...)
	waitFor(t, 30*time.Second, "agent ready over TLS and SCRAM", func() bool {
		code, _ := readyz(s.http)
		return code == http.StatusOK
	})

	sample := testenv.Data(t, "elastic-apache/apache_logs")
	want := fileLines(t, sample)
	ship := exec.Command(wardenBin(t), "ship", "--brokers", k.addr, "--topic", "access-logs", "--quiet",
		"--kafka-tls-ca", k.caFile, "--kafka-sasl", "scram-sha-256", "--kafka-user", scramUser, sample)
	ship.Env = append(os.Environ(), "WARDEN_KAFKA_PASSWORD="+scramPassword)
	if out, err := ship.CombinedOutput(); err != nil {
		t.Fatalf("warden ship: %v\n%s", err, out)
	}
	waitFor(t, 60*time.Second, fmt.Sprintf("/v1/stats counting the %d shipped lines", len(want)), func() bool {
		n, err := statsRequests(s.http)
		return err == nil && n == int64(len(want))
	})
	time.Sleep(time.Second)
	if n, _ := statsRequests(s.http); n != int64(len(want)) {
		t.Fatalf("/v1/stats counts %d requests, want exactly %d", n, len(want))
	}

	out, err := k.kcat(t, "-C", "-t", "access-logs", "-e", "-q", "-f", "%s\n")
	if err != nil {
		t.Fatalf("kcat over SASL_SSL: %v\n%s", err, out)
	}
	got := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	sort.Strings(got)
	sort.Strings(want)
	if len(got) != len(want) {
		t.Fatalf("kcat read %d lines, ship sent %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("kcat line %q, want %q", got[i], want[i])
		}
	}
	// ship --follow reads its position back and ships over TLS and SCRAM too.
	logs := filepath.Join(dir, "logs")
	os.MkdirAll(logs, 0o755)
	lw := newLogWriter(t, logs, 3)
	lw.write(200)
	follow := startProc(t, dir, "ship-follow", append([]string{"ship", "--follow", filepath.Join(logs, "access.log*"), "--brokers", k.addr,
		"--topic", "access-logs", "--ship-id", "secure"}, k.clientArgs...)...)
	defer follow.kill()
	waitFor(t, 30*time.Second, "the followed lines counted too", func() bool {
		n, err := statsRequests(s.http)
		return err == nil && n == int64(len(want)+200)
	})

	// Without credentials kcat is refused.
	kcat := testenv.Tool(t, "kcat")
	if out, err := exec.Command(kcat, "-b", k.addr, "-X", "security.protocol=SSL", "-X", "ssl.ca.location="+k.caFile,
		"-C", "-t", "access-logs", "-e", "-q", "-m", "1", "-X", "socket.timeout.ms=3000", "-X", "session.timeout.ms=3000").CombinedOutput(); err == nil && len(bytes.TrimSpace(out)) > 0 && !bytes.Contains(out, []byte("ERROR")) {
		t.Fatalf("kcat without SASL read %q", out)
	}
}

// TestProcesses_SecureKafka_WrongPasswordIsOneClearErrorAndNotReady: an
// agent with a wrong password stays up (no crash loop), says once what is
// wrong, and /readyz says why it is not ready; ship with a wrong password
// stops at once with the same explanation instead of retrying for
// --timeout.
func TestProcesses_SecureKafka_WrongPasswordIsOneClearErrorAndNotReady(t *testing.T) {
	dir := t.TempDir()
	k, _ := startSecureBroker(t, dir, 2, filepath.Join(dir, "broker-data"))
	bad := filepath.Join(dir, "wrong-password")
	if err := os.WriteFile(bad, []byte("not-it"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--kafka-tls-ca", k.caFile, "--kafka-sasl", "scram-sha-256", "--kafka-user", scramUser, "--kafka-password-file", bad}
	p, s := startAgentProc(t, dir, "n1", k.addr, args...)
	var reason string
	waitFor(t, 20*time.Second, "/readyz naming the refused credentials", func() bool {
		code, why := readyz(s.http)
		reason = why
		return code == http.StatusServiceUnavailable && strings.Contains(why, "credentials")
	})
	t.Logf("/readyz: %s", reason)
	time.Sleep(6 * time.Second) // several retries with backoff
	if !p.alive() {
		t.Fatal("the agent exited")
	}
	if code, _ := readyz(s.http); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d with a wrong password", code)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "n1.log"))
	if n := bytes.Count(log, []byte("credentials were refused")); n != 1 {
		t.Fatalf("the refused credentials are logged %d times, want once:\n%s", n, log)
	}

	start := time.Now()
	out, err := exec.Command(wardenBin(t), append([]string{"ship", "--brokers", k.addr, "--topic", "access-logs", "--quiet"}, args...)...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "credentials") || time.Since(start) > 10*time.Second {
		t.Fatalf("ship with a wrong password: %v after %s\n%s", err, time.Since(start).Round(time.Millisecond), out)
	}
	if lines := strings.Count(strings.TrimSpace(string(out)), "\n") + 1; lines != 1 {
		t.Fatalf("ship printed %d lines, want one:\n%s", lines, out)
	}
}

// TestProcesses_TopicChecks_MissingOrShrunkIsNotReadyNeverReset: an agent
// whose topic does not exist is not ready and says so; a topic recreated
// with fewer partitions than the cluster has offsets for is reported, and
// the committed offsets stay as they were.
func TestProcesses_TopicChecks_MissingOrShrunkIsNotReadyNeverReset(t *testing.T) {
	dir := t.TempDir()
	baddr := freeAddr(t)
	data := filepath.Join(dir, "broker-data")
	bp := startProc(t, dir, "broker", "broker", "--listen", baddr, "--data-dir", data, "--topic", "access-logs", "--partitions", "4")
	t.Cleanup(func() {
		if bp.alive() {
			bp.kill()
		}
	})
	waitFor(t, 15*time.Second, "broker up", func() bool {
		conn, err := net.DialTimeout("tcp", baddr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})

	// A topic name that does not exist.
	_, miss := startAgentProc(t, dir, "m1", baddr, "--topic", "no-such-topic")
	waitFor(t, 20*time.Second, "/readyz naming the missing topic", func() bool {
		code, why := readyz(miss.http)
		return code == http.StatusServiceUnavailable && strings.Contains(why, `"no-such-topic" does not exist`)
	})

	// A cluster that committed offsets on 4 partitions.
	_, s := startAgentProc(t, dir, "n1", baddr)
	p := newProducer(t, baddr, "access-logs", 3)
	p.produce(400)
	waitFor(t, 30*time.Second, "records committed", func() bool {
		parts, err := getParts(s.http)
		ok, _ := p.matches(parts)
		return err == nil && ok
	})
	before, _ := getParts(s.http)

	// The broker loses its data and comes back with the topic at 2 partitions.
	bp.kill()
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	bp = startProc(t, dir, "broker", "broker", "--listen", baddr, "--data-dir", data, "--topic", "access-logs", "--partitions", "2")
	var reason string
	waitFor(t, 30*time.Second, "/readyz naming the shrunk topic", func() bool {
		code, why := readyz(s.http)
		reason = why
		return code == http.StatusServiceUnavailable && strings.Contains(why, "has 2 partitions")
	})
	t.Logf("/readyz: %s", reason)
	time.Sleep(3 * time.Second)
	after, err := getParts(s.http)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("partitions %d, was %d", len(after), len(before))
	}
	for i := range after {
		if after[i].Committed != before[i].Committed {
			t.Fatalf("partition %d committed offset moved from %d to %d", after[i].Partition, before[i].Committed, after[i].Committed)
		}
	}
	log, _ := os.ReadFile(filepath.Join(dir, "n1.log"))
	if n := bytes.Count(log, []byte("has 2 partitions in Kafka")); n != 1 {
		t.Fatalf("the shrunk topic is logged %d times, want once", n)
	}
}

// getParts reads /v1/partitions at http.
func getParts(http string) ([]node.PartitionInfo, error) {
	var out []node.PartitionInfo
	return out, getJSON("http://"+http+"/v1/partitions", &out)
}

// TestChaos_SecureKafka: `warden chaos --kafka-tls --kafka-sasl ...` runs
// its broker with TLS (a CA made for the run) and SCRAM, its agents and
// its own clients with the matching settings, and passes its checks.
func TestChaos_SecureKafka(t *testing.T) {
	dir := t.TempDir()
	out, err := exec.Command(wardenBin(t), "chaos", "--nodes", "1", "--duration", "3s", "--faults", "none", "--rate", "200",
		"--partitions", "2", "--report", dir, "--kafka-tls", "--kafka-sasl", "scram-sha-512", "--kafka-user", "chaos",
		"--kafka-password", "chaos-pass").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("Verdict: PASS")) {
		t.Fatalf("warden chaos over TLS and SCRAM: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "broker.log"))
	if !bytes.Contains(b, []byte(`tls=true`)) || !bytes.Contains(b, []byte(`sasl="scram-sha-512 user chaos"`)) {
		t.Fatalf("the chaos broker did not require TLS and SCRAM:\n%s", b)
	}
}
