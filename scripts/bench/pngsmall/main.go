// Command pngsmall copies a PNG as a paletted PNG of its most frequent colours (at most 256; every
// other pixel takes the nearest of them), so that the figures committed under docs/img stay small.
// The figures of verifier/plot are flat colours plus anti-aliasing, which this keeps readable.
//
//	go run ./scripts/bench/pngsmall IN.png OUT.png
package main

import (
	"cmp"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"
	"slices"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: pngsmall IN.png OUT.png")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "pngsmall:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	count := map[color.RGBA]int{}
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			count[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)]++
		}
	}
	type cc struct {
		c color.RGBA
		n int
	}
	var all []cc
	for c, n := range count {
		all = append(all, cc{c, n})
	}
	slices.SortFunc(all, func(a, b cc) int {
		if a.n != b.n {
			return cmp.Compare(b.n, a.n)
		}
		return cmp.Compare(uint32(a.c.R)<<24|uint32(a.c.G)<<16|uint32(a.c.B)<<8|uint32(a.c.A),
			uint32(b.c.R)<<24|uint32(b.c.G)<<16|uint32(b.c.B)<<8|uint32(b.c.A))
	})
	pal := color.Palette{}
	for _, c := range all[:min(len(all), 256)] {
		pal = append(pal, c.c)
	}
	p := image.NewPaletted(bounds, pal)
	draw.Draw(p, bounds, img, bounds.Min, draw.Src)
	o, err := os.Create(out)
	if err != nil {
		return err
	}
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(o, p); err != nil {
		o.Close()
		return err
	}
	return o.Close()
}
