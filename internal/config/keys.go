package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

var compactionKeys = []string{"workers", "threshold", "min_segments", "target_size", "growth_ref",
	"quiesce", "max_rate", "compress", "keep_inactive"}

var archiveKeys = []string{"cold_dir", "time_to_archive", "max_hot_bytes", "low_watermark",
	"max_age", "keep_free", "urgent_within", "compress", "cold_max_age", "cold_max_bytes", "s3"}

// schema lists the keys each mapping may hold; nil means a scalar.
var schema = map[string][]string{
	"":           {"state_dir", "scan_interval", "log_level", "log_format", "growth", "load", "compaction", "archive", "metrics", "streams"},
	"metrics":    {"listen", "textfile"},
	"growth":     {"window", "alpha", "horizon"},
	"load":       {"enabled", "interval", "pause_above"},
	"compaction": compactionKeys,
	"archive":    archiveKeys,
	"archive.s3": {"endpoint", "region", "path_style", "storage_class", "part_size", "timeout"},
	"streams[]":  {"name", "dir", "pattern", "order", "compaction", "archive"},
}

// checkKeys walks the YAML document, records the line of every key path
// ("compaction.target_size", "streams[2].dir") and rejects keys the schema does
// not know, so that a typo is an error naming the key and its line.
func checkKeys(root *yaml.Node, lines map[string]int) error {
	if root.Kind == 0 { // empty document
		return nil
	}
	doc := root
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil
		}
		doc = doc.Content[0]
	}
	if doc.Kind != yaml.MappingNode {
		return &Error{Line: doc.Line, Err: errors.New("config must be a mapping of keys to values")}
	}
	return walk(doc, "", "", lines)
}

func walk(n *yaml.Node, schemaKey, path string, lines map[string]int) error {
	allowed := schema[schemaKey]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		full := k.Value
		if path != "" {
			full = path + "." + k.Value
		}
		if !contains(allowed, k.Value) {
			return &Error{Key: full, Line: k.Line, Err: fmt.Errorf("unknown key%s", suggest(k.Value, allowed))}
		}
		if _, dup := lines[full]; dup {
			return &Error{Key: full, Line: k.Line, Err: errors.New("key appears twice")}
		}
		lines[full] = k.Line
		// A stream's compaction/archive sections share the global schemas.
		child := k.Value
		if schemaKey != "" && schemaKey != "streams[]" {
			child = schemaKey + "." + k.Value
		}
		switch {
		case k.Value == "streams" && schemaKey == "":
			if v.Kind != yaml.SequenceNode {
				return &Error{Key: full, Line: v.Line, Err: errors.New("must be a list of streams")}
			}
			for j, item := range v.Content {
				ip := fmt.Sprintf("streams[%d]", j)
				lines[ip] = item.Line
				if item.Kind != yaml.MappingNode {
					return &Error{Key: ip, Line: item.Line, Err: errors.New("must be a mapping with name, dir and pattern")}
				}
				if err := walk(item, "streams[]", ip, lines); err != nil {
					return err
				}
			}
		case schema[child] != nil:
			if v.Kind != yaml.MappingNode {
				if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
					continue
				}
				return &Error{Key: full, Line: v.Line, Err: errors.New("must be a mapping")}
			}
			if err := walk(v, child, full, lines); err != nil {
				return err
			}
		default:
			if v.Kind != yaml.ScalarNode {
				return &Error{Key: full, Line: v.Line, Err: errors.New("must be a single value, not a list or mapping")}
			}
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest names the closest known key when the typo is small.
func suggest(got string, allowed []string) string {
	best, bestD := "", 3
	for _, a := range allowed {
		if d := editDistance(strings.ToLower(got), a); d < bestD {
			best, bestD = a, d
		}
	}
	if best == "" {
		s := append([]string(nil), allowed...)
		sort.Strings(s)
		return " (known keys: " + strings.Join(s, ", ") + ")"
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Keys lists every key a config may hold, as "section.key" ("state_dir",
// "compaction.workers", "streams[].order"): the man page documents each.
func Keys() []string {
	var out []string
	var add func(section, prefix string)
	add = func(section, prefix string) {
		for _, k := range schema[section] {
			full := prefix + k
			child := k
			if section != "" && section != "streams[]" {
				child = section + "." + k
			}
			switch {
			case section == "" && k == "streams":
				add("streams[]", "streams[].")
			case schema[child] != nil && (section == "" || section == "archive"):
				add(child, full+".")
			default:
				out = append(out, full)
			}
		}
	}
	add("", "")
	return out
}
