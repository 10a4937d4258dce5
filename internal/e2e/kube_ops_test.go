package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// TestKubeForwarderOps runs the real forwarder with metrics_listen set:
// kubectl requests through kube-exec show up on /metrics by code and
// verb, with the tunnel up; /readyz turns 503 while the bastion is down
// (no tunnel) and 200 again once the forwarder has reconnected.
func TestKubeForwarderOps(t *testing.T) {
	e := startKubeEnv(t)
	alice := e.user(t, "alice@example.com", "kube-dev")
	base := "http://" + e.fwdMetrics
	tunnel := func(name string) string { return fmt.Sprintf(`postern_kube_forwarder_%s{bastion=%q}`, name, e.addr) }
	requests := func(code, verb string) string {
		return fmt.Sprintf(`postern_kube_forwarder_requests_total{code=%q,verb=%q}`, code, verb)
	}

	if code, _ := httpGet(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	waitStatus(t, base, "/readyz", 200)
	waitMetric(t, base, "postern_kube_forwarder_tunnels_up", is(1))
	waitMetric(t, base, tunnel("tunnel_up"), is(1))
	waitMetric(t, base, tunnel("tunnel_reconnects_total"), is(0))

	if out, stderr, code := e.run(t, alice, "", "get", "pods", "-n", "team-a"); code != 0 {
		t.Fatalf("kubectl get pods -n team-a: exit %d\n%s%s", code, out, stderr)
	}
	if _, _, code := e.run(t, alice, "", "get", "pods", "-n", "default"); code == 0 {
		t.Fatal("kubectl get pods -n default succeeded")
	}
	waitMetric(t, base, requests("200", "list"), atLeast(1))
	waitMetric(t, base, requests("403", "list"), atLeast(1))
	waitMetric(t, base, `postern_kube_forwarder_request_duration_seconds_count{verb="list"}`, atLeast(2))
	waitMetric(t, base, `postern_kube_forwarder_relayed_bytes_total{direction="in"}`, atLeast(1))
	waitMetric(t, base, `postern_kube_forwarder_relayed_bytes_total{direction="out"}`, atLeast(1))
	waitMetric(t, base, "postern_kube_forwarder_audit_errors_total", is(0))

	t.Run("readyz follows the tunnel", func(t *testing.T) {
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("forwarder output:\n%s", e.fwd.logs)
			}
		})
		e.bastion.stop(t)
		if body := waitStatus(t, base, "/readyz", 503); !strings.Contains(body, "no tunnel to a bastion is up") {
			t.Errorf("/readyz with the bastion down: %q", body)
		}
		waitMetric(t, base, "postern_kube_forwarder_tunnels_up", is(0))
		waitMetric(t, base, tunnel("tunnel_up"), is(0))
		// The forwarder keeps trying while the bastion is down.
		waitMetric(t, base, tunnel("tunnel_connect_errors_total"), atLeast(1))
		if code, _ := httpGet(t, base+"/healthz"); code != 200 {
			t.Errorf("/healthz with the bastion down: %d", code)
		}

		e.startBastion(t)
		waitStatus(t, base, "/readyz", 200)
		waitMetric(t, base, "postern_kube_forwarder_tunnels_up", is(1))
		waitMetric(t, base, tunnel("tunnel_reconnects_total"), is(1))
		before := waitMetric(t, base, requests("200", "list"), atLeast(1))
		if out, stderr, code := e.run(t, alice, "", "get", "pods", "-n", "team-a"); code != 0 {
			t.Fatalf("kubectl after the reconnect: exit %d\n%s%s", code, out, stderr)
		}
		waitMetric(t, base, requests("200", "list"), atLeast(before+1))
	})
}
