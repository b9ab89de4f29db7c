package manifest

import (
	"bytes"
	"strconv"
	"strings"

	yamlv3 "gopkg.in/yaml.v3"
)

// document is one YAML document of a file.
type document struct {
	// data is the document's text. Lines before the document in the file are
	// not included, so positions inside data are shifted by firstLine-1.
	data []byte
	// firstLine is the file line (1-based) where data begins.
	firstLine int
	// startLine is the file line of the document's first content (not blank,
	// not a comment): the line a diagnostic about the whole document names.
	startLine int
}

// splitDocuments cuts a YAML stream at its document markers ("---" and
// "..." at the start of a line). YAML forbids these markers inside a
// document's content, so cutting the text is exact and keeps line numbers.
func splitDocuments(data []byte) []document {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark
	var docs []document
	var cur []byte
	curFirst, curStart := 1, 0
	flush := func(next int) {
		if curStart > 0 {
			docs = append(docs, document{data: cur, firstLine: curFirst, startLine: curStart})
		}
		cur, curFirst, curStart = nil, next, 0
	}
	lineNo := 0
	for len(data) > 0 {
		lineNo++
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i+1], data[i+1:]
		} else {
			line, data = data, nil
		}
		text := strings.TrimRight(string(line), "\r\n")
		if isMarker(text, "---") {
			flush(lineNo)
			// Content may follow the marker on the same line ("--- {a: 1}").
			// Blank the marker out so columns and line numbers stay true.
			rest := text[3:]
			if hasContent(rest) {
				cur = append(cur, "   "+rest+"\n"...)
				curStart = lineNo
			} else {
				cur = append(cur, '\n')
			}
			continue
		}
		if isMarker(text, "...") {
			flush(lineNo + 1)
			continue
		}
		cur = append(cur, line...)
		if curStart == 0 && hasContent(text) {
			curStart = lineNo
		}
	}
	flush(lineNo + 1)
	return docs
}

func isMarker(line, marker string) bool {
	return strings.HasPrefix(line, marker) && (len(line) == 3 || line[3] == ' ' || line[3] == '\t')
}

// hasContent reports whether a line holds more than whitespace and a comment.
// Directives ("%YAML 1.2") are not content either.
func hasContent(line string) bool {
	t := strings.TrimLeft(line, " \t")
	return t != "" && t[0] != '#' && t[0] != '%'
}

// locator finds the line of a field inside a document. It parses the document
// a second time, with gopkg.in/yaml.v3 which keeps positions, and only when a
// diagnostic needs a line: accepted revisions never pay for it.
type locator struct {
	doc    *document
	prefix []pathStep // where the object sits in the document (items[3] of a List)
	parsed bool
	root   *yamlv3.Node
}

func newLocator(doc *document, prefix []pathStep) *locator {
	return &locator{doc: doc, prefix: prefix}
}

// line returns the file line of the deepest node along fieldPath that exists
// in the text, or the line where the object starts.
func (l *locator) line(fieldPath string) int {
	if l == nil || l.doc == nil {
		return 0
	}
	if !l.parsed {
		l.parsed = true
		l.root = parseNode(l.doc.data)
	}
	node := l.root
	if node == nil {
		return l.doc.startLine
	}
	best := node.Line
	steps := append(append([]pathStep(nil), l.prefix...), parsePath(fieldPath)...)
	for i, step := range steps {
		next, keyLine := child(node, step)
		if next == nil {
			break
		}
		node = next
		best = keyLine
		if i < len(l.prefix) {
			best = node.Line
		}
	}
	if best <= 0 {
		return l.doc.startLine
	}
	return l.doc.firstLine + best - 1
}

// parseNode returns the document's top node, or nil when the text does not
// parse (the caller reports the document start instead).
func parseNode(data []byte) (root *yamlv3.Node) {
	defer func() {
		// Positions are a nicety: a parser failure must never turn into a
		// crash, and the diagnostic keeps the document's start line.
		if recover() != nil {
			root = nil
		}
	}()
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 {
		return nil
	}
	return doc.Content[0]
}

// child follows one step from node, returning the node reached and the line
// that best names it: for a mapping key, the key's own line.
func child(node *yamlv3.Node, step pathStep) (*yamlv3.Node, int) {
	for node != nil && node.Kind == yamlv3.AliasNode {
		node = node.Alias
	}
	if node == nil {
		return nil, 0
	}
	switch node.Kind {
	case yamlv3.MappingNode:
		if step.index >= 0 {
			return nil, 0
		}
		for i := 0; i+1 < len(node.Content); i += 2 {
			if node.Content[i].Value == step.key {
				return node.Content[i+1], node.Content[i].Line
			}
		}
	case yamlv3.SequenceNode:
		if step.index >= 0 && step.index < len(node.Content) {
			n := node.Content[step.index]
			return n, n.Line
		}
	}
	return nil, 0
}

// pathStep is one element of a field path: a key (index < 0) or an index.
type pathStep struct {
	key   string
	index int
}

// parsePath splits a field path as field.Path renders it, such as
// `spec.containers[0].env[1].name` or `metadata.labels[app.kubernetes.io/name]`.
func parsePath(p string) []pathStep {
	var steps []pathStep
	for len(p) > 0 {
		switch p[0] {
		case '.':
			p = p[1:]
		case '[':
			end := strings.IndexByte(p, ']')
			if end < 0 {
				return steps
			}
			sub := p[1:end]
			p = p[end+1:]
			if n, err := strconv.Atoi(sub); err == nil && n >= 0 {
				steps = append(steps, pathStep{index: n})
			} else {
				steps = append(steps, pathStep{key: sub, index: -1})
			}
		default:
			end := strings.IndexAny(p, ".[")
			if end < 0 {
				end = len(p)
			}
			steps = append(steps, pathStep{key: p[:end], index: -1})
			p = p[end:]
		}
	}
	return steps
}
