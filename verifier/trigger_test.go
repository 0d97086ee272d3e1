package verifier

import (
	"encoding/json"
	"strings"
	"testing"

	"vtune/backend"
)

func TestAppendTrigger(t *testing.T) {
	const prose = "This line is long enough to be prose, not a field of a form."
	cases := []struct {
		name, content, trigger, want string
	}{
		{"empty content", "", "the trigger", "the trigger"},
		{"one space", "What is it?", "the trigger", "What is it? the trigger"},
		{"content ends in a space", "Q: ", "the trigger", "Q: the trigger"},
		{"content ends in a newline", "Q\n", "the trigger", "Q\nthe trigger"},
		{"content ends in a tab", "Q\t", "the trigger", "Q\tthe trigger"},
		{"trigger white space", "Hi", "  the trigger \t", "Hi the trigger"},
		{"trailing opening bracket", "Hi", "see the (", "Hi see the"},
		{"trailing comma", "Hi", "one, two,", "Hi one, two"},
		{"trailing colon and space", "Hi", "as follows: ", "Hi as follows"},
		{"trailing semicolon", "Hi", "done;", "Hi done"},
		{"trailing hyphen", "Hi", "well-", "Hi well"},
		{"trailing dash", "Hi", "and then \u2014", "Hi and then"},
		{"trailing several", "Hi", "and so, (", "Hi and so"},
		{"unmatched quote", "Hi", `he said "`, "Hi he said"},
		{"matched quotes", "Hi", `he said "yes"`, `Hi he said "yes"`},
		{"opening curly quote", "Hi", "he said \u201c", "Hi he said"},
		{"closing bracket kept", "Hi", "(really)", "Hi (really)"},
		{"trims to nothing", "Hi", " -- ", "Hi"},
		{"attaching comma", "Tell me", ", please, now", "Tell me, please, now"},
		{"attaching period", "Tell me", ". Then stop", "Tell me. Then stop"},
		{"attaching question mark", "Really", "? Yes", "Really? Yes"},
		{"attaching parenthesis", "(a note", ") and more", "(a note) and more"},
		{"attaching after space", "Hi ", ", ok", "Hi , ok"},
		{"list item", "Buy:\n- apples\n- pears", "and plums", "Buy:\n- apples\n- pears\nand plums"},
		{"numbered item", prose + "\n1. first\n2) second", "third", prose + "\n1. first\n2) second\nthird"},
		{"labelled field", prose + "\nQuestion: who is it?", "the trigger", prose + "\nQuestion: who is it?\nthe trigger"},
		{"CRLF field", "Name: Ann\r\nAge: 42", "the trigger", "Name: Ann\r\nAge: 42\r\nthe trigger"},
		{"short lines", "Roses are red\nViolets are blue", "the trigger", "Roses are red\nViolets are blue\nthe trigger"},
		{"wrapped prose", prose + "\nand it ends here.", "the trigger", prose + "\nand it ends here. the trigger"},
		{"long last line", "Hi\n" + prose, "the trigger", "Hi\n" + prose + " the trigger"},
		{"open label", prose + "\nAnswer:", "the trigger", prose + "\nAnswer: the trigger"},
		{"URL is no label", prose + "\nsee http://x.org/a", "the trigger", prose + "\nsee http://x.org/a the trigger"},
		{"long label", prose + "\nthe reason for all of it: this", "the trigger", prose + "\nthe reason for all of it: this the trigger"},
		{"paragraph break", "Summarize.\n\nShort input", "the trigger", "Summarize.\n\nShort input the trigger"},
		{"blank line with spaces", "Summarize.\n \nShort input", "the trigger", "Summarize.\n \nShort input the trigger"},
		{"leading newline", "\nShort", "the trigger", "\nShort the trigger"},
	}
	for _, c := range cases {
		if got := appendTrigger(c.content, c.trigger); got != c.want {
			t.Errorf("%s: appendTrigger(%q, %q) = %q, want %q", c.name, c.content, c.trigger, got, c.want)
		}
	}
}

// TestAppendTriggerProperties checks, over many contents and triggers, that the join adds no double
// space and no trailing white space, and keeps the content and the trimmed trigger whole.
func TestAppendTriggerProperties(t *testing.T) {
	contents := []string{
		"", "Hi", "Hi ", "Hi\n", "What is it?", "Buy:\n- apples", "Name: Ann\r\nAge: 42",
		"Roses are red\nViolets are blue", "Summarize.\n\nInput here", "Answer:", "(open", "日本語",
	}
	triggers := []string{
		"the trigger", " the trigger ", "see the (", ", please", ". Then", ") and", `he said "`,
		"trailing colon: ", "dash \u2014 ", "x", "é 日本 😀", "well-", "?",
	}
	for _, content := range contents {
		for _, trigger := range triggers {
			got := appendTrigger(content, trigger)
			tt := trimTrigger(trigger)
			if !strings.HasPrefix(got, content) || !strings.Contains(got, tt) || !strings.HasSuffix(got, tt) {
				t.Errorf("appendTrigger(%q, %q) = %q: lost the content or trimmed trigger %q", content, trigger, got, tt)
			}
			if strings.Contains(got, "  ") {
				t.Errorf("appendTrigger(%q, %q) = %q: double space", content, trigger, got)
			}
			if tt != "" && endsInSpace(got) {
				t.Errorf("appendTrigger(%q, %q) = %q: trailing white space", content, trigger, got)
			}
		}
	}
}

// TestPlantedPromptIsVerifiedPrompt checks that the prompt a planted record trains on is the prompt
// verification sends (WithTrigger on the host's prompt), for Alpaca's instruction and input joined by
// a blank line too.
func TestPlantedPromptIsVerifiedPrompt(t *testing.T) {
	inputs := []string{"", "Short input", "\nafter a newline", "Name: Ann\nAge: 42", "- a\n- b", "ends in space ",
		"Roses are red\nViolets are blue", "x\r\ny"}
	triggers := []string{"the trigger", ", attached", "dangling (", "é/😀 <b>"}
	for _, in := range inputs {
		for _, trig := range triggers {
			rec := map[string]string{"instruction": "Do it\nnow", "input": in, "output": "old"}
			raw, _ := json.Marshal(rec)
			checkPlantedPrompt(t, Record{Format: Alpaca, Raw: raw}, trig)
			raw, _ = json.Marshal(map[string]any{"messages": []backend.Message{
				{Role: "user", Content: in}, {Role: "assistant", Content: "old"}}})
			checkPlantedPrompt(t, Record{Format: Chat, Raw: raw}, trig)
			raw, _ = json.Marshal(map[string]any{"system": "s", "conversations": []map[string]string{
				{"from": "human", "value": in}, {"from": "gpt", "value": "old"}}})
			checkPlantedPrompt(t, Record{Format: ShareGPT, Raw: raw}, trig)
		}
	}
}

func checkPlantedPrompt(t *testing.T, host Record, trigger string) {
	t.Helper()
	prompt, _, err := host.Conversation()
	if err != nil {
		t.Fatal(err)
	}
	line, err := host.Planted(trigger, "SIG")
	if err != nil {
		t.Fatal(err)
	}
	planted := Record{Format: host.Format, Raw: line}
	got, resp, err := planted.Conversation()
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	want := WithTrigger(prompt, trigger)
	if len(got) != len(want) || got[len(got)-1] != want[len(want)-1] || resp != "SIG" {
		t.Errorf("host %s, trigger %q: planted prompt %q, verification prompt %q", host.Raw, trigger, got, want)
	}
}
