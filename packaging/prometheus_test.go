package packaging

import (
	"os/exec"
	"testing"

	"github.com/logcompactd/logcompactd/internal/testutil"
)

// TestAlertRules: promtool (Debian's prometheus package) accepts the shipped
// alerting rules and passes their unit tests (alerts_test.yaml: each alert
// fires on the series it is about, after its `for`, and not before).
func TestAlertRules(t *testing.T) {
	promtool := testutil.RequireTool(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "prometheus/alerts.yaml"},
		{"test", "rules", "prometheus/alerts_test.yaml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
