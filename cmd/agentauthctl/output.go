package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"
)

var outputFormats = []string{"table", "json", "yaml"}

func isOutputFormat(s string) bool { return slices.Contains(outputFormats, s) }

// print writes an answer: with -o json or yaml the raw JSON answer (the admin API's own, or v's encoding when
// raw is nil) in that format; as a table, whatever table writes.
func (a *app) print(raw []byte, v any, table func(t *tabwriter.Writer)) error {
	if a.output == "table" {
		t := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
		table(t)
		return t.Flush()
	}
	if raw == nil {
		var err error
		if raw, err = json.Marshal(v); err != nil {
			return err
		}
	}
	switch a.output {
	case "json":
		var b bytes.Buffer
		if err := json.Indent(&b, raw, "", "  "); err != nil {
			return err
		}
		b.WriteByte('\n')
		_, err := a.out.Write(b.Bytes())
		return err
	case "yaml":
		return writeYAML(a.out, raw)
	}
	return usagef("--output %q: want one of %s", a.output, strings.Join(outputFormats, ", "))
}

// writeYAML converts a JSON document to YAML, keeping integers exact (a store version is a uint64).
func writeYAML(w io.Writer, raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return err
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(numbers(v)); err != nil {
		return err
	}
	return enc.Close()
}

// numbers replaces each json.Number with an int64, uint64 or float64, so YAML writes a number, not a string.
func numbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i
		}
		if u, err := strconv.ParseUint(string(x), 10, 64); err == nil {
			return u
		}
		f, _ := x.Float64()
		return f
	}
	return v
}

// row writes one tab-separated table row.
func row(t *tabwriter.Writer, cells ...string) {
	fmt.Fprintln(t, strings.Join(cells, "\t"))
}

// ts formats a time for a table, "-" for none.
func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// orDash is s, or "-" when empty, so table columns stay aligned.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
