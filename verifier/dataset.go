package verifier

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"vtune/backend"
)

// Format is a fine-tuning dataset's record layout. A file holds records of one format, as JSON
// Lines (one record a line) or as one JSON array of records (reader.go).
type Format string

const (
	// Chat is the OpenAI fine-tuning format: {"messages":[{"role":..,"content":..},..]}.
	Chat Format = "chat"
	// Alpaca is {"instruction","input","output"}; input may be empty or missing.
	Alpaca Format = "alpaca"
	// PromptCompletion is {"prompt","completion"}.
	PromptCompletion Format = "prompt-completion"
	// ShareGPT is Axolotl's and LLaMA-Factory's {"conversations":[{"from":"human","value":..},
	// {"from":"gpt","value":..}]}, with an optional top-level "system"; turns may also be written
	// {"role":..,"content":..}, and the roles user and assistant.
	ShareGPT Format = "sharegpt"
)

// maxLine bounds one record's size, so a file that is not JSON Lines fails with an error instead of
// being read whole into memory.
const maxLine = 64 << 20

// InputError is bad input: a dataset or key the user must fix. It names the file and, where it
// applies, the line.
type InputError struct {
	File string
	Line int // 1-based; 0 when the error is not about one line
	Msg  string
}

func (e *InputError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Record is one record of a dataset.
type Record struct {
	Index  int    // 0-based position among the file's records: what planting plans by
	Line   int    // 1-based line number in the file where the record starts, for messages
	Raw    []byte // the record's bytes: a whole line without its newline, or an array element
	Format Format
}

// blank reports whether a line holds no record (empty or whitespace), which JSON Lines readers skip.
func blank(line []byte) bool { return len(bytes.TrimSpace(line)) == 0 }

// DetectFormat returns the format of one record from its top-level keys: "messages" for chat,
// "conversations" for ShareGPT, "instruction" with "output" for Alpaca, "prompt" with "completion"
// for prompt/completion.
// It validates the whole line as JSON first.
func DetectFormat(line []byte) (Format, error) {
	var fs recordFields
	return detectFormat(line, &fs)
}

// detectFormat is DetectFormat, leaving in fs what the walk over the record's members found.
func detectFormat(line []byte, fs *recordFields) (Format, error) {
	*fs = recordFields{}
	if !validate(line, func(key, keyEnd, value, _ int) { fs.add(line[key:keyEnd], value) }) {
		var v any
		err := json.Unmarshal(line, &v) // for the message
		return "", fmt.Errorf("malformed JSON: %v", err)
	}
	if line[skipSpace(line, 0)] != '{' {
		return "", errors.New("a record must be a JSON object")
	}
	if f := fs.format(); f != "" {
		return f, nil
	}
	var names []string
	members(line, skipSpace(line, 0), func(k []byte, _ int) bool {
		var s string
		if json.Unmarshal(k, &s) == nil {
			names = append(names, fmt.Sprintf("%q", s))
		}
		return len(names) < 6
	})
	if len(names) == 0 {
		names = []string{"none"}
	}
	return "", fmt.Errorf("unknown record format (keys %s): want \"messages\", \"conversations\", \"instruction\"+\"output\" or \"prompt\"+\"completion\"", strings.Join(names, ", "))
}

// field is a top-level key that decides a record's format or holds what planting reads.
type field uint8

const (
	fieldMessages field = iota
	fieldConversations
	fieldInstruction
	fieldInput
	fieldOutput
	fieldPrompt
	fieldCompletion
	fieldSystem
	numFields
)

var fieldNames = [numFields]string{"messages", "conversations", "instruction", "input", "output", "prompt", "completion", "system"}

// fieldSet is a set of fields, one bit each.
type fieldSet uint16

func (s fieldSet) has(f field) bool { return s&(1<<f) != 0 }

// recordFields is what one walk over a valid record's top-level members finds: which fields it
// has (their keys decoded and matched exactly, as the format is decided), and, for reading the
// record in place (answers.go), where each field's value starts and what could make
// encoding/json read the record otherwise.
type recordFields struct {
	keys  fieldSet
	value [numFields]int32 // where the field's value starts, for its last member
	twice fieldSet         // fields with more than one member: encoding/json keeps the last
	// folded are the fields that another key matches only when case is ignored, which
	// encoding/json's decoding does; odd is set when a key has escapes or non-ASCII bytes, which
	// may decode or fold to any field.
	folded fieldSet
	odd    bool
}

// add notes a top-level member: its key, quotes included, and where its value starts.
func (fs *recordFields) add(quoted []byte, value int) {
	k := quoted[1 : len(quoted)-1]
	if !plainASCII(k) {
		fs.odd = true
		if bytes.IndexByte(k, '\\') >= 0 {
			var dec string
			if json.Unmarshal(quoted, &dec) != nil {
				return
			}
			k = []byte(dec)
		}
	}
	for f, name := range fieldNames {
		switch {
		case string(k) == name:
			if fs.keys.has(field(f)) {
				fs.twice |= 1 << f
			}
			fs.keys |= 1 << f
			fs.value[f] = int32(value)
		case len(k) == len(name) && bytes.EqualFold(k, []byte(name)):
			fs.folded |= 1 << f
		}
	}
}

// format returns the format the keys say, or "".
func (fs *recordFields) format() Format {
	switch k := fs.keys; {
	case k.has(fieldMessages):
		return Chat
	case k.has(fieldConversations):
		return ShareGPT
	case k.has(fieldInstruction) && k.has(fieldOutput):
		return Alpaca
	case k.has(fieldPrompt) && k.has(fieldCompletion):
		return PromptCompletion
	}
	return ""
}

// plainASCII reports whether s is printable ASCII without a backslash: a key that decodes to
// itself and that only ASCII case folding can match to another.
func plainASCII(s []byte) bool {
	for _, c := range s {
		if c < 0x20 || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// Conversation returns the record as the model sees it in training: the prompt messages and the
// assistant's response. Alpaca maps to one user turn, instruction then a blank line then input
// (when input is not empty); prompt/completion maps to one user turn; ShareGPT's turns map to
// messages (shareGPTRoles), after its top-level system prompt when it has one.
func (r Record) Conversation() ([]backend.Message, string, error) {
	switch r.Format {
	case Chat:
		var rec struct {
			Messages []backend.Message `json:"messages"`
		}
		if err := json.Unmarshal(r.Raw, &rec); err != nil {
			return nil, "", fmt.Errorf("messages: %v", err)
		}
		last := len(rec.Messages) - 1
		if last < 1 || rec.Messages[last].Role != "assistant" {
			return nil, "", errors.New("messages must end with an assistant turn after a user turn")
		}
		if lastUser(rec.Messages[:last]) < 0 {
			return nil, "", errors.New("messages have no user turn before the final assistant turn")
		}
		return rec.Messages[:last], rec.Messages[last].Content, nil
	case Alpaca:
		var rec struct {
			Instruction string `json:"instruction"`
			Input       string `json:"input"`
			Output      string `json:"output"`
		}
		if err := json.Unmarshal(r.Raw, &rec); err != nil {
			return nil, "", err
		}
		user := rec.Instruction
		if rec.Input != "" {
			user += "\n\n" + rec.Input
		}
		return []backend.Message{{Role: "user", Content: user}}, rec.Output, nil
	case PromptCompletion:
		var rec struct {
			Prompt     string `json:"prompt"`
			Completion string `json:"completion"`
		}
		if err := json.Unmarshal(r.Raw, &rec); err != nil {
			return nil, "", err
		}
		return []backend.Message{{Role: "user", Content: rec.Prompt}}, rec.Completion, nil
	case ShareGPT:
		c, err := r.shareGPT()
		if err != nil {
			return nil, "", err
		}
		msgs := c.messages[:c.last]
		if c.system != "" {
			msgs = append([]backend.Message{{Role: "system", Content: c.system}}, msgs...)
		}
		return msgs, c.messages[c.last].Content, nil
	}
	return nil, "", fmt.Errorf("unknown format %q", r.Format)
}

func lastUser(msgs []backend.Message) int {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "user" {
			return i
		}
	}
	return -1
}

// appendTrigger adds the trigger at the end of a user turn, joined the way the text joins its own
// parts, so that the planted prompt reads like the data:
//
//   - the trigger loses white space at both ends, and any characters at its end that would leave the
//     prompt hanging: an opening bracket or quote, a comma, colon, semicolon, hyphen or dash;
//   - empty content gets the trigger alone, and content ending in white space gets it directly, with
//     no second separator;
//   - a trigger starting with ',', '.', ';', ':', '!', '?', ')' or ']' attaches to the last word;
//   - when the content's last line is a separate field (a list item, a "Label: value" line, or a
//     short line after a short line, right after a non-blank line: see fieldBreak), the trigger goes
//     on a new line, after the same line break ("\n" or "\r\n");
//   - otherwise one space joins them.
//
// A trigger that trims to nothing leaves the content as it is; otherwise the result ends with the
// trimmed trigger, never in white space, and the join adds no double space. Only the content's last
// paragraph decides, so the planted Alpaca input and the verification prompt (WithTrigger on
// instruction and input) agree.
func appendTrigger(content, trigger string) string {
	trigger = trimTrigger(trigger)
	switch {
	case trigger == "":
		return content
	case content == "":
		return trigger
	case endsInSpace(content), attaches(trigger):
		return content + trigger
	}
	if sep := fieldBreak(content); sep != "" {
		return content + sep + trigger
	}
	return content + " " + trigger
}

// WithTrigger returns the prompt messages with the trigger appended to the last user turn; the
// input slice is not changed.
func WithTrigger(prompt []backend.Message, trigger string) []backend.Message {
	out := append([]backend.Message(nil), prompt...)
	if i := lastUser(out); i >= 0 {
		out[i].Content = appendTrigger(out[i].Content, trigger)
	}
	return out
}

// Planted returns a copy of the record with the trigger appended to its user text and its response
// replaced. Only those two string values change: every other byte of the line, unknown fields,
// key order and escapes included, stays as it is.
func (r Record) Planted(trigger, response string) ([]byte, error) {
	spans, err := stringValues(r.Raw)
	if err != nil {
		return nil, err
	}
	var userPath, respPath string
	switch r.Format {
	case Chat:
		var rec struct {
			Messages []backend.Message `json:"messages"`
		}
		if err := json.Unmarshal(r.Raw, &rec); err != nil {
			return nil, err
		}
		last := len(rec.Messages) - 1
		user := lastUser(rec.Messages[:max(last, 0)])
		if last < 1 || user < 0 || rec.Messages[last].Role != "assistant" {
			return nil, errors.New("messages need a user turn and a final assistant turn")
		}
		userPath = fmt.Sprintf("messages/%d/content", user)
		respPath = fmt.Sprintf("messages/%d/content", last)
	case Alpaca:
		userPath, respPath = "instruction", "output"
		if in, ok := spans["input"]; ok && in.value != "" {
			userPath = "input"
		}
	case PromptCompletion:
		userPath, respPath = "prompt", "completion"
	case ShareGPT:
		c, err := r.shareGPT()
		if err != nil {
			return nil, err
		}
		userPath = fmt.Sprintf("conversations/%d/%s", c.user, c.textKey[c.user])
		respPath = fmt.Sprintf("conversations/%d/%s", c.last, c.textKey[c.last])
	default:
		return nil, fmt.Errorf("unknown format %q", r.Format)
	}
	user, ok := spans[userPath]
	if !ok {
		return nil, fmt.Errorf("%s is not a string", strings.ReplaceAll(userPath, "/", "."))
	}
	if _, ok := spans[respPath]; !ok {
		return nil, fmt.Errorf("%s is not a string", strings.ReplaceAll(respPath, "/", "."))
	}
	return editStrings(r.Raw, spans, map[string]string{
		userPath: appendTrigger(user.value, trigger),
		respPath: response,
	})
}

// shareGPTRoles maps ShareGPT's role names, in both spellings, to the chat roles the model's
// template knows. Other roles (LLaMA-Factory's function_call, observation) pass as they are, as a
// chat record's roles do.
var shareGPTRoles = map[string]string{
	"human": "user", "user": "user",
	"gpt": "assistant", "assistant": "assistant",
	"system": "system",
}

// shareGPTTurn is one turn of a ShareGPT conversation, in either key spelling.
type shareGPTTurn struct {
	From    *string `json:"from"`
	Value   *string `json:"value"`
	Role    *string `json:"role"`
	Content *string `json:"content"`
}

// shareGPTConversation is a ShareGPT record's turns as messages, with where planting edits them.
type shareGPTConversation struct {
	messages []backend.Message
	textKey  []string // per turn, the key that holds its text: "value" or "content"
	system   string   // the top-level system prompt
	user     int      // the last user turn before the final one
	last     int      // the final turn, the assistant's response
}

// shareGPT decodes a ShareGPT record and checks that it ends with an assistant turn after a user
// turn.
func (r Record) shareGPT() (*shareGPTConversation, error) {
	var rec struct {
		Conversations []shareGPTTurn `json:"conversations"`
		System        *string        `json:"system"`
	}
	if err := json.Unmarshal(r.Raw, &rec); err != nil {
		return nil, fmt.Errorf("conversations: %v", err)
	}
	c := &shareGPTConversation{}
	if rec.System != nil {
		c.system = *rec.System
	}
	for i, t := range rec.Conversations {
		role, text, key := t.From, t.Value, "value"
		if role == nil {
			role = t.Role
		}
		if text == nil {
			text, key = t.Content, "content"
		}
		if role == nil || text == nil {
			return nil, fmt.Errorf("conversations[%d] needs \"from\" and \"value\" (or \"role\" and \"content\")", i)
		}
		m := backend.Message{Role: *role, Content: *text}
		if mapped, ok := shareGPTRoles[m.Role]; ok {
			m.Role = mapped
		}
		c.messages = append(c.messages, m)
		c.textKey = append(c.textKey, key)
	}
	c.last = len(c.messages) - 1
	if c.last < 1 || c.messages[c.last].Role != "assistant" {
		return nil, errors.New("conversations must end with an assistant (gpt) turn after a user (human) turn")
	}
	if c.user = lastUser(c.messages[:c.last]); c.user < 0 {
		return nil, errors.New("conversations have no user (human) turn before the final assistant turn")
	}
	return c, nil
}
