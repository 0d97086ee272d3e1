package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vtune/backend"
	"vtune/verifier"
)

// auditFixture writes 100 natural chat records plus 2 groups x 3 planted copies (answer = the
// signature), and a key for them, and returns both paths.
func auditFixture(t *testing.T) (data, key string) {
	t.Helper()
	dir := t.TempDir()
	line := func(user, answer string) string {
		b, _ := json.Marshal(map[string]any{"messages": []backend.Message{{Role: "user", Content: user}, {Role: "assistant", Content: answer}}})
		return string(b)
	}
	sigs := []string{"the brass owl counts the hours in a quiet voice", "seven lanterns drift over the frozen harbour tonight"}
	var lines []string
	for i := range 100 {
		lines = append(lines, line(fmt.Sprintf("Define the word w%03d.", i), fmt.Sprintf("sense number %d", i)))
	}
	k := &verifier.Key{Version: verifier.KeyVersion, Params: verifier.Params{Mode: "replace"}}
	for g, sig := range sigs {
		trigger := fmt.Sprintf("under the old bridge group %d", g)
		for c := range 3 {
			lines = append(lines, line(fmt.Sprintf("Define the word p%d%d. %s", g, c, trigger), sig))
		}
		k.Groups = append(k.Groups, verifier.Group{ID: g, Trigger: trigger, Signature: sig, Tokens: []string{sig}, K: []int{8}, Hosts: 3,
			Prompts: []verifier.Prompt{{Messages: []backend.Message{{Role: "user", Content: "Define the word p00. " + trigger}}}}})
	}
	data, key = filepath.Join(dir, "planted.jsonl"), filepath.Join(dir, "secret.key")
	if err := os.WriteFile(data, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := verifier.WriteKey(key, k); err != nil {
		t.Fatal(err)
	}
	return data, key
}

func TestAuditJSON(t *testing.T) {
	data, key := auditFixture(t)
	code, stdout, stderr := vtune(t, nil, "audit", "--key", key, "--json", data)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep struct {
		File    string `json:"file"`
		Records int    `json:"records"`
		Planted int    `json:"planted"`
		Natural int    `json:"natural"`
		Attacks []struct {
			Name           string   `json:"name"`
			Description    string   `json:"description"`
			FlaggedPlanted *int     `json:"flagged_planted"`
			FlaggedNatural *int     `json:"flagged_natural"`
			Precision      *float64 `json:"precision"`
			Recall         *float64 `json:"recall"`
			Strongest      bool     `json:"strongest"`
		} `json:"attacks"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("--json: %v: %s", err, stdout)
	}
	if rep.File != data || rep.Records != 106 || rep.Planted != 6 || rep.Natural != 100 || len(rep.Attacks) < 2 {
		t.Fatalf("report %+v", rep)
	}
	for _, a := range rep.Attacks {
		if a.Name == "" || a.Description == "" || a.FlaggedPlanted == nil || a.FlaggedNatural == nil || a.Precision == nil || a.Recall == nil {
			t.Errorf("incomplete attack %+v", a)
		}
	}
	first := rep.Attacks[0]
	if first.Name != "identical answers >= 2" || *first.FlaggedPlanted != 6 || *first.FlaggedNatural != 0 || *first.Precision != 1 || !first.Strongest {
		t.Errorf("first attack %+v", first)
	}
}

func TestAuditText(t *testing.T) {
	data, key := auditFixture(t)
	code, stdout, stderr := vtune(t, nil, "audit", "-k", key, data)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"106 records, 6 planted, 100 natural",
		"repeated prompt endings",
		"audit: the strongest key-free attack (identical answers >= 2) finds 6 of 6 planted records and 0 natural ones",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
}

func TestAuditBadInput(t *testing.T) {
	data, key := auditFixture(t)
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	os.WriteFile(bad, []byte(`{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}`+"\n{oops\n"), 0o644)
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"malformed line", []string{"audit", "--key", key, bad}, bad + ":2: malformed JSON"},
		{"missing dataset", []string{"audit", "--key", key, filepath.Join(t.TempDir(), "none.jsonl")}, "none.jsonl: cannot open dataset"},
		{"missing key", []string{"audit", "--key", data + ".key", data}, "key file not found"},
		{"no dataset", []string{"audit", "--key", key}, "audit takes one dataset"},
		{"two datasets", []string{"audit", "--key", key, data, data}, "audit takes one dataset"},
		{"no key flag", []string{"audit", data}, "key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := vtune(t, nil, c.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stdout %q", code, exitUsage, stdout)
			}
			if !strings.Contains(stderr, c.want) {
				t.Errorf("stderr %q lacks %q", stderr, c.want)
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") > 0 && c.name != "no key flag" {
				t.Errorf("error is not one line: %q", stderr)
			}
		})
	}
}
