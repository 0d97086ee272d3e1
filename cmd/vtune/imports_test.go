package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportGraph holds the layering the packages' docs promise: imports flow one way,
// cmd -> {verifier, checkpoint} -> backend. A serving-stack client that reached up into the
// verifier, or a checkpoint loader that needed the key, would tie the layers back together.
func TestImportGraph(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "vtune/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	// Each rule: the packages under pkg may import, of this module, only those under may.
	allowed := []struct {
		pkg string
		may []string
	}{
		{"vtune/backend", []string{"vtune/backend"}},
		{"vtune/checkpoint", []string{"vtune/backend"}},
		{"vtune/verifier", []string{"vtune/verifier", "vtune/backend"}},
	}
	under := func(p, prefix string) bool { return p == prefix || strings.HasPrefix(p, prefix+"/") }
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, imports := f[0], f[1:]
		for _, rule := range allowed {
			if !under(pkg, rule.pkg) {
				continue
			}
			checked++
			for _, imp := range imports {
				if !under(imp, "vtune") {
					continue
				}
				ok := false
				for _, m := range rule.may {
					ok = ok || under(imp, m)
				}
				if !ok {
					t.Errorf("%s imports %s: only %v may be imported there", pkg, imp, rule.may)
				}
			}
		}
	}
	if checked < 5 {
		t.Fatalf("checked %d packages; go list printed:\n%s", checked, out)
	}
}
