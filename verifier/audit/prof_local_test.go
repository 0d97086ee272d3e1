package audit

import (
	"os"
	"testing"

	"vtune/verifier"
)

func TestProfLocal(t *testing.T) {
	p := os.Getenv("AUDIT_FILE")
	if p == "" {
		t.Skip()
	}
	k, err := verifier.ReadKey(p + ".key")
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(p, k)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r.Summary())
}
