package servertest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strings"
)

// JSONLogKeys parses the JSON log lines in out (slog.JSONHandler) and
// returns each line's top-level keys in order, repeats included: slog's
// With does not replace a key a parent logger already set, so a line can
// name a key twice (component=admin component=audit), which log search
// then reads as either.
func JSONLogKeys(out string) ([][]string, error) {
	var lines [][]string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		keys, err := topLevelKeys(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%v: %s", err, sc.Text())
		}
		lines = append(lines, keys)
	}
	return lines, sc.Err()
}

// RepeatedKeys returns the keys named more than once in keys.
func RepeatedKeys(keys []string) []string {
	seen := map[string]int{}
	var out []string
	for _, k := range keys {
		if seen[k]++; seen[k] == 2 {
			out = append(out, k)
		}
	}
	return out
}

// topLevelKeys returns the keys of a JSON object in order, duplicates
// included.
func topLevelKeys(line string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return keys, nil
}
