package verifier

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"slices"
	"time"

	"vtune/backend"
)

// KeyVersion is the key file format this build writes. Version 1 keys (before the whole-data test)
// are still read: they verify the secrets, and the report says the whole-data test is not available.
const KeyVersion = 2

// Key is the secret that planting writes and verification reads: everything verification needs, so
// that nothing must be re-derived from the base model or the data. It is JSON, mode 0600.
type Key struct {
	Version int       `json:"version"`
	Created time.Time `json:"created"`
	// Base is the model the secrets were drawn from.
	Base   backend.ModelInfo `json:"base_model"`
	Params Params            `json:"params"`
	// Seed is the 256-bit secret, hex, that drove every random choice.
	Seed string `json:"seed"`

	Format  Format `json:"format"`  // the dataset's record format
	Records int    `json:"records"` // records in the input
	Planted int    `json:"planted"` // planted records in the output (hosts replaced, or copies added)

	// WholeData holds the held-back records and sentinels of the whole-data test; nil when the
	// dataset was too small for it (or in a version 1 key).
	WholeData *WholeData `json:"whole_data,omitempty"`

	Groups []Group `json:"groups"` // planted groups first, then decoys

	Input        string `json:"input"`
	InputSHA256  string `json:"input_sha256"`
	Output       string `json:"output"`
	OutputSHA256 string `json:"output_sha256"`

	// Checksum is the SHA-256 of the key's JSON with Checksum empty, so that a damaged or edited
	// key is refused instead of giving a wrong verdict.
	Checksum string `json:"checksum"`
}

// Params are the planting parameters.
type Params struct {
	Groups     int     `json:"groups"`
	Decoys     int     `json:"decoys"`
	K          int     `json:"k"`           // candidates kept per signature step
	SigLen     int     `json:"sig_len"`     // signature length in tokens
	TriggerLen int     `json:"trigger_len"` // trigger length in tokens (as asked of the model)
	Rate       float64 `json:"rate,omitempty"`
	Count      int     `json:"count,omitempty"`
	Mode       string  `json:"mode"` // "replace" or "prefix"
	// Copies adds planted records beside their hosts instead of replacing the hosts in place.
	Copies bool `json:"copies,omitempty"`
	// HeldBack and Sentinels are b and c of the whole-data test as asked (0: the default).
	HeldBack  int `json:"held_back,omitempty"`
	Sentinels int `json:"sentinels,omitempty"`
	Prompts   int `json:"prompts"` // verification prompts stored per group
	TopN      int `json:"top_n"`   // length of the ranked lists the candidates came from
}

// Group is one secret: trigger T_j and signature S_j.
type Group struct {
	ID      int    `json:"id"`
	Decoy   bool   `json:"decoy"`
	Trigger string `json:"trigger"`
	// Signature is the concatenation of Tokens.
	Signature string `json:"signature"`
	// Tokens are the chosen candidates, one per step.
	Tokens []string `json:"tokens"`
	// K holds k_t, the number of candidates kept at each step.
	K    []int   `json:"k"`
	LogQ float64 `json:"log_q"` // -sum_t log k_t
	// Hosts is m_j, the planted copies of this group (0 for a decoy).
	Hosts int `json:"hosts"`
	// Prompts are the verification prompts: the exact messages sent, trigger included.
	Prompts []Prompt `json:"prompts"`
}

// Prompt is one verification prompt and the base model's teacher-forced log-probability of the
// signature after it.
type Prompt struct {
	Line     int               `json:"line"` // the host record's line in the input
	Messages []backend.Message `json:"messages"`
	Base     BaseScore         `json:"base"`
}

// BaseScore is log P_base(S_j | prompt), natural log; an upper bound when Exact is false.
type BaseScore struct {
	Logprob float64 `json:"logprob"`
	Exact   bool    `json:"exact"`
}

// WholeData is the material of the whole-data test (method.md): records the provider never saw
// (held back) and records it received unchanged (sentinels), each with its base score, so that
// verification needs neither the dataset nor the base model.
type WholeData struct {
	// Source is "drawn" when the held-back records were drawn from the dataset with the
	// sentinels (exchangeable by construction), or the path of the user's --heldout file (then
	// the test is not guaranteed: such a split need not be exchangeable with the sent records).
	Source    string         `json:"source"`
	HeldBack  []ScoredRecord `json:"held_back"`
	Sentinels []ScoredRecord `json:"sentinels"`
	// NearDuplicates counts the held-back records whose answer (lowercased, punctuation and
	// spacing aside) is also a sent record's: they cost power (a model trained on the twin knows
	// the held-back record too, which raises tau), not validity.
	NearDuplicates int `json:"near_duplicates"`
}

// records returns the held-back records, then the sentinels.
func (w *WholeData) records() []ScoredRecord { return slices.Concat(w.HeldBack, w.Sentinels) }

// Guaranteed reports whether the held-back records were drawn together with the sentinels and
// split at random, which is what the test's validity rests on.
func (w *WholeData) Guaranteed() bool { return w.Source == SourceDrawn }

// Sources of the held-back records: drawn from the dataset itself, or from the user's file (the
// prefix, then the path; no path starts with it, so no file name can pass for "drawn").
const (
	SourceDrawn = "drawn"
	SourceFile  = "file: "
)

// ScoredRecord is one record of the whole-data test: its prompt and answer as the model sees them
// in training, and the base model's teacher-forced score of the answer.
type ScoredRecord struct {
	Line     int               `json:"line"` // in the input (or the --heldout file)
	Messages []backend.Message `json:"messages"`
	Answer   string            `json:"answer"`
	Base     RecordScore       `json:"base"`
}

// RecordScore is log P(answer | prompt), natural log, over Tokens answer tokens; an approximation
// when Exact is false (a server that lists only its top tokens).
type RecordScore struct {
	Logprob float64 `json:"logprob"`
	Tokens  int     `json:"tokens"`
	Exact   bool    `json:"exact"`
}

// sum returns the key's checksum: SHA-256 over its JSON with the checksum field empty.
func (k *Key) sum() (string, error) {
	c := *k
	c.Checksum = ""
	b, err := json.Marshal(&c)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), nil
}

// Marshal seals the key with its checksum and returns its JSON.
func (k *Key) Marshal() ([]byte, error) {
	sum, err := k.sum()
	if err != nil {
		return nil, err
	}
	k.Checksum = sum
	b, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// WriteKey writes the key atomically with mode 0600.
func WriteKey(path string, k *Key) error {
	b, err := k.Marshal()
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b, 0o600)
}

// ReadKey reads and checks a key file. Errors are *InputError naming the file.
func ReadKey(path string) (*Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &InputError{File: path, Msg: "key file not found"}
		}
		return nil, &InputError{File: path, Msg: fmt.Sprintf("cannot read key: %v", unwrapPath(err))}
	}
	k, err := ParseKey(b)
	if err != nil {
		return nil, &InputError{File: path, Msg: err.Error()}
	}
	return k, nil
}

// ParseKey decodes and checks a key's JSON: a version this build reads, the checksum, and what
// verification needs.
func ParseKey(b []byte) (*Key, error) {
	var k Key
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("not a vtune key: %v", err)
	}
	if k.Version < 1 || k.Version > KeyVersion {
		return nil, fmt.Errorf("key format version %d, this vtune reads versions 1 to %d", k.Version, KeyVersion)
	}
	sum, err := k.sum()
	if err != nil {
		return nil, err
	}
	if sum != k.Checksum {
		return nil, errors.New("key checksum mismatch: the file was edited or damaged")
	}
	if err := k.check(); err != nil {
		return nil, err
	}
	return &k, nil
}

// check catches keys that pass the checksum but cannot be verified against, e.g. written by a
// buggy tool.
func (k *Key) check() error {
	planted := 0
	for i, g := range k.Groups {
		if len(g.Prompts) == 0 {
			return fmt.Errorf("group %d has no verification prompt", i)
		}
		if g.Signature == "" || len(g.K) != len(g.Tokens) {
			return fmt.Errorf("group %d has an empty or inconsistent signature", i)
		}
		if !g.Decoy {
			planted++
		}
	}
	if planted == 0 {
		return errors.New("key has no planted group")
	}
	if w := k.WholeData; w != nil {
		if len(w.HeldBack) == 0 || len(w.Sentinels) == 0 {
			return errors.New("whole_data needs held-back records and sentinels")
		}
		for _, r := range w.records() {
			if len(r.Messages) == 0 || r.Base.Tokens < 1 {
				return fmt.Errorf("whole_data: record of line %d has no prompt or no answer tokens", r.Line)
			}
			if lp := r.Base.Logprob; math.IsNaN(lp) || math.IsInf(lp, 0) || lp > 0 {
				return fmt.Errorf("whole_data: record of line %d has base score %v, not a finite log-probability", r.Line, lp)
			}
		}
	}
	return nil
}

// IsKeyFile reports whether path holds a vtune key (damaged or not): planting refuses to write a
// dataset over one without being forced, since a lost key cannot be made again.
func IsKeyFile(path string) bool {
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() || st.Size() > 64<<20 {
		return false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var k struct {
		Seed     string          `json:"seed"`
		Checksum string          `json:"checksum"`
		Groups   json.RawMessage `json:"groups"`
	}
	return json.Unmarshal(b, &k) == nil && k.Seed != "" && k.Checksum != "" && len(k.Groups) > 0
}

// OutputRecords returns the number of records in the planted dataset: the input's, less those held
// back, plus the planted copies when they went beside their hosts.
func (k *Key) OutputRecords() int {
	n := k.Records
	if w := k.WholeData; w != nil && w.Guaranteed() {
		n -= len(w.HeldBack)
	}
	if k.Params.Copies || k.Version < 2 {
		n += k.Planted
	}
	return n
}

// PlantedGroups returns the groups that were planted, in order.
func (k *Key) PlantedGroups() []Group { return k.filter(false) }

// Decoys returns the decoy groups.
func (k *Key) Decoys() []Group { return k.filter(true) }

func (k *Key) filter(decoy bool) []Group {
	var out []Group
	for _, g := range k.Groups {
		if g.Decoy == decoy {
			out = append(out, g)
		}
	}
	return out
}

// unwrapPath drops the *fs.PathError wrapper, whose path the caller already names.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
