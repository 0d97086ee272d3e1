package checkpoint

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
)

// A safetensors file is an 8-byte little-endian header length, a JSON header mapping each tensor's
// name to its dtype, shape and [start, end) byte offsets in the data that follows, then the data.
// The merge reads and writes the floating-point dtypes models are published in.

// stTensor is one tensor of a safetensors file.
type stTensor struct {
	Name  string
	DType string // F32, F16, BF16, or another dtype that is only copied
	Shape []int
	start int64 // offset of its bytes in the file
	size  int64
}

// elements is the number of elements its shape holds.
func (t *stTensor) elements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// stFile is an open safetensors file and its header.
type stFile struct {
	path    string
	f       *os.File
	meta    json.RawMessage // the header's __metadata__, kept as written
	tensors map[string]*stTensor
}

// dtypeSize is the size in bytes of one element of each dtype safetensors defines.
var dtypeSize = map[string]int64{
	"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
	"U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1,
}

// openSafetensors opens a safetensors file and checks its header: every tensor's dtype known, its
// bytes inside the file and as many as its shape needs.
func openSafetensors(path string) (*stFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, bad(path, "%v", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, bad(path, "%v", err)
	}
	out, err := readHeader(path, f, st.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	return out, nil
}

func readHeader(path string, f *os.File, size int64) (*stFile, error) {
	var n uint64
	if err := binary.Read(f, binary.LittleEndian, &n); err != nil {
		return nil, bad(path, "not a safetensors file: %v", convertIOError(err))
	}
	if n == 0 || n > uint64(size-8) || n > 100<<20 {
		return nil, bad(path, "not a safetensors file: header of %d bytes in a file of %d", n, size)
	}
	hdr := make([]byte, n)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return nil, bad(path, "safetensors header: %v", convertIOError(err))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &raw); err != nil {
		return nil, bad(path, "safetensors header: %v", err)
	}
	data := 8 + int64(n)
	out := &stFile{path: path, f: f, tensors: map[string]*stTensor{}}
	for name, v := range raw {
		if name == "__metadata__" {
			out.meta = v
			continue
		}
		var info struct {
			DType   string   `json:"dtype"`
			Shape   []int    `json:"shape"`
			Offsets [2]int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(v, &info); err != nil {
			return nil, bad(path, "safetensors header, tensor %s: %v", name, err)
		}
		t := &stTensor{Name: name, DType: info.DType, Shape: info.Shape, start: data + info.Offsets[0], size: info.Offsets[1] - info.Offsets[0]}
		es, ok := dtypeSize[t.DType]
		if !ok {
			return nil, bad(path, "tensor %s has unknown dtype %q", name, t.DType)
		}
		if t.size != t.elements()*es || info.Offsets[0] < 0 || t.start+t.size > size {
			return nil, bad(path, "tensor %s: %d bytes at offset %d do not fit its shape %v of %s in a file of %d bytes (truncated?)",
				name, t.size, info.Offsets[0], t.Shape, t.DType, size)
		}
		out.tensors[name] = t
	}
	return out, nil
}

func (s *stFile) Close() error { return s.f.Close() }

// names returns the tensor names in the order of their bytes in the file.
func (s *stFile) names() []string {
	var out []string
	for n := range s.tensors {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return s.tensors[out[i]].start < s.tensors[out[j]].start })
	return out
}

// floats reads a floating-point tensor as float32 values (exact for F32, F16 and BF16).
func (s *stFile) floats(name string) ([]float32, error) {
	t := s.tensors[name]
	b := make([]byte, t.size)
	if _, err := s.f.ReadAt(b, t.start); err != nil {
		return nil, bad(s.path, "reading tensor %s: %v", name, convertIOError(err))
	}
	out := make([]float32, t.elements())
	switch t.DType {
	case "F32":
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case "F16":
		for i := range out {
			out[i] = halfToFloat(binary.LittleEndian.Uint16(b[2*i:]))
		}
	case "BF16":
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[2*i:])) << 16)
		}
	default:
		return nil, bad(s.path, "tensor %s has dtype %s; the merge reads F32, F16 and BF16", name, t.DType)
	}
	return out, nil
}

// encodeFloats writes values in a floating-point dtype, rounding to nearest, ties to even.
func encodeFloats(dtype string, v []float32) []byte {
	var b []byte
	switch dtype {
	case "F32":
		b = make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
	case "F16":
		b = make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(b[2*i:], floatToHalf(x))
		}
	case "BF16":
		b = make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(b[2*i:], floatToBF16(x))
		}
	default:
		panic("encodeFloats: dtype " + dtype)
	}
	return b
}

// stWrite is one tensor to write: its header entry and where its bytes come from.
type stWrite struct {
	stTensor
	data []byte            // new bytes, or
	from *io.SectionReader // bytes copied unchanged from another file
}

// writeSafetensors writes tensors, in order, to a new safetensors file with the given metadata.
func writeSafetensors(path string, meta json.RawMessage, tensors []stWrite) (err error) {
	hdr := map[string]any{}
	if meta != nil {
		hdr["__metadata__"] = meta
	}
	var off int64
	for _, t := range tensors {
		hdr[t.Name] = map[string]any{"dtype": t.DType, "shape": t.Shape, "data_offsets": []int64{off, off + t.size}}
		off += t.size
	}
	h, err := json.Marshal(hdr)
	if err != nil {
		return err
	}
	for len(h)%8 != 0 {
		h = append(h, ' ') // the data that follows starts 8-byte aligned
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	binary.Write(w, binary.LittleEndian, uint64(len(h)))
	w.Write(h)
	for _, t := range tensors {
		if t.from != nil {
			_, err = io.Copy(w, io.NewSectionReader(t.from, 0, t.size))
		} else {
			_, err = w.Write(t.data)
		}
		if err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
	}
	return w.Flush()
}

// halfToFloat converts an IEEE 754 binary16 to float32 (exactly: every binary16 is a float32).
func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // infinity or NaN
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp != 0: // normal: rebias the exponent from 15 to 127
		return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
	}
	// zero or subnormal: man · 2^-24
	f := float32(man) / (1 << 24)
	if sign != 0 {
		f = -f
	}
	return f
}

// floatToHalf rounds a float32 to the nearest binary16, ties to even; magnitudes past 65504 round
// to infinity, below 2^-25 to zero, and NaN stays NaN.
func floatToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int((b>>23)&0xff) - 127 + 15
	man := b & 0x7fffff
	switch {
	case (b>>23)&0xff == 0xff: // infinity or NaN
		if man != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	case exp >= 0x1f:
		return sign | 0x7c00
	case exp <= 0: // subnormal in binary16: shift the mantissa, with its implicit 1, into place
		if exp < -10 {
			return sign
		}
		man |= 0x800000
		shift := uint(14 - exp)
		h := uint16(man >> shift)
		rem, half := man&(1<<shift-1), uint32(1)<<(shift-1)
		if rem > half || (rem == half && h&1 == 1) {
			h++
		}
		return sign | h
	}
	h := sign | uint16(exp)<<10 | uint16(man>>13)
	// Rounding up may carry into the exponent, which is still the right binary16 (up to infinity).
	if rem := man & 0x1fff; rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++
	}
	return h
}

// floatToBF16 rounds a float32 to the nearest bfloat16 (its upper 16 bits), ties to even.
func floatToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep it quiet NaN
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}
