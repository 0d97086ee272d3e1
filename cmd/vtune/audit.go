package main

import (
	"errors"

	"github.com/urfave/cli/v2"

	"vtune/verifier"
	"vtune/verifier/audit"
)

func auditCommand() *cli.Command {
	return &cli.Command{
		Name:      "audit",
		Usage:     "show which planted records a provider can find without the key",
		UsageText: "vtune audit --key KEY.json [--json] PLANTED.jsonl",
		ArgsUsage: "PLANTED.jsonl",
		Description: `Runs on the planted dataset the scans a provider can run without the key: identical
answers, shared answer prefixes, repeated prompt endings, prompts that are another prompt plus a
few words, lines escaped or ordered unlike the rest, answer lengths outside the usual range.
For each it prints how many planted and how many natural records it flags; the key only labels
the records. A provider that finds the planted records can train on them alone: the whole-data
test of vtune verify catches that, and this report shows how easy it would be.`,
		Flags: []cli.Flag{
			&cli.PathFlag{Name: "key", Aliases: []string{"k"}, Usage: "key written by vtune plant (labels the planted records)", Required: true},
			&cli.BoolFlag{Name: "json", Usage: "print the audit as JSON on stdout"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return errors.New("audit takes one dataset: vtune audit --key KEY.json PLANTED.jsonl (flags before the file)")
			}
			key, err := verifier.ReadKey(c.Path("key"))
			if err != nil {
				return err
			}
			rep, err := audit.Run(c.Context, c.Args().First(), key)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(c.App.Writer, rep)
			}
			audit.WriteReport(c.App.Writer, rep)
			return nil
		},
	}
}
