package fakemistral

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// wfSpec is one parsed workflow of the supported DSL v2 subset.
type wfSpec struct {
	Name      string
	Type      string // "direct" or "reverse"
	Input     []inputParam
	Output    any
	Vars      map[string]any
	Tasks     map[string]*taskSpec
	TaskOrder []string
	// Node is the workflow's YAML, to store as its own definition.
	Node *yaml.Node
}

type inputParam struct {
	Name       string
	Default    any
	HasDefault bool
}

type transition struct {
	Task string
	Cond any // nil = unconditional
}

type taskSpec struct {
	Name        string
	Action      string
	ActionInput map[string]any // inline "k=v" params merged with input:
	Workflow    string
	Input       map[string]any
	Publish     map[string]any
	PublishErr  map[string]any
	OnSuccess   []transition
	OnError     []transition
	OnComplete  []transition
	RetryCount  int
	RetryDelay  float64
	WaitBefore  float64
	WaitAfter   float64
	Join        int // 0 none, -1 all, N
	WithItems   string
	PauseBefore bool
	Requires    []string
}

func (t *taskSpec) handlesError() bool { return len(t.OnError) > 0 || len(t.OnComplete) > 0 }

func (t *taskSpec) targets() []string {
	var out []string
	for _, l := range [][]transition{t.OnSuccess, t.OnError, t.OnComplete} {
		for _, tr := range l {
			out = append(out, tr.Task)
		}
	}
	return out
}

// dslError is a DSL/validation problem; the API maps it to 400.
type dslError struct{ msg string }

func (e *dslError) Error() string { return e.msg }

func dslErrf(format string, a ...any) error { return &dslError{fmt.Sprintf(format, a...)} }

// parseDoc parses YAML into a mapping node.
func parseDoc(text string) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return nil, dslErrf("Definition could not be parsed: %v", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, dslErrf("Definition could not be parsed: not a YAML mapping")
	}
	return doc.Content[0], nil
}

func pairs(n *yaml.Node) ([]string, []*yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, nil
	}
	var ks []string
	var vs []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		ks = append(ks, n.Content[i].Value)
		vs = append(vs, n.Content[i+1])
	}
	return ks, vs
}

func lookup(n *yaml.Node, key string) *yaml.Node {
	ks, vs := pairs(n)
	for i, k := range ks {
		if k == key {
			return vs[i]
		}
	}
	return nil
}

func checkVersion(root *yaml.Node) error {
	v := lookup(root, "version")
	if v == nil || (v.Value != "2.0" && v.Value != "2") {
		return dslErrf("Invalid DSL: 'version' is required and must be '2.0'")
	}
	return nil
}

// parseWorkflows parses a standalone workflow file (every top-level key but
// version is a workflow).
func parseWorkflows(text string) ([]*wfSpec, error) {
	root, err := parseDoc(text)
	if err != nil {
		return nil, err
	}
	if err := checkVersion(root); err != nil {
		return nil, err
	}
	var out []*wfSpec
	ks, vs := pairs(root)
	for i, k := range ks {
		if k == "version" {
			continue
		}
		s, err := parseWorkflow(k, vs[i])
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, dslErrf("Invalid DSL: no workflows defined")
	}
	return out, nil
}

// parseWorkbook parses a workbook; workflow names come back unqualified.
func parseWorkbook(text string) (string, []*wfSpec, error) {
	root, err := parseDoc(text)
	if err != nil {
		return "", nil, err
	}
	if err := checkVersion(root); err != nil {
		return "", nil, err
	}
	nameN := lookup(root, "name")
	if nameN == nil || nameN.Value == "" {
		return "", nil, dslErrf("Invalid DSL: workbook 'name' is required")
	}
	var out []*wfSpec
	ks, vs := pairs(lookup(root, "workflows"))
	for i, k := range ks {
		if k == "version" {
			continue
		}
		s, err := parseWorkflow(k, vs[i])
		if err != nil {
			return "", nil, err
		}
		out = append(out, s)
	}
	return nameN.Value, out, nil
}

func decode(n *yaml.Node) any {
	if n == nil {
		return nil
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return nil
	}
	return v
}

func parseWorkflow(name string, n *yaml.Node) (*wfSpec, error) {
	if n.Kind != yaml.MappingNode {
		return nil, dslErrf("Invalid DSL: workflow %q must be a mapping", name)
	}
	s := &wfSpec{Name: name, Type: "direct", Tasks: map[string]*taskSpec{}, Node: n}
	if t := lookup(n, "type"); t != nil {
		s.Type = t.Value
	}
	if s.Type != "direct" && s.Type != "reverse" {
		return nil, dslErrf("Invalid DSL: workflow %q has unsupported type %q", name, s.Type)
	}
	if in := lookup(n, "input"); in != nil {
		for _, item := range in.Content {
			switch item.Kind {
			case yaml.ScalarNode:
				s.Input = append(s.Input, inputParam{Name: item.Value})
			case yaml.MappingNode:
				ks, vs := pairs(item)
				for i, k := range ks {
					s.Input = append(s.Input, inputParam{Name: k, Default: decode(vs[i]), HasDefault: true})
				}
			}
		}
	}
	s.Output = decode(lookup(n, "output"))
	if v, ok := decode(lookup(n, "vars")).(map[string]any); ok {
		s.Vars = v
	}
	ks, vs := pairs(lookup(n, "tasks"))
	if len(ks) == 0 {
		return nil, dslErrf("Invalid DSL: workflow %q has no tasks", name)
	}
	for i, k := range ks {
		t, err := parseTask(k, vs[i])
		if err != nil {
			return nil, fmt.Errorf("workflow %q: %w", name, err)
		}
		s.Tasks[k] = t
		s.TaskOrder = append(s.TaskOrder, k)
	}
	for _, tn := range s.TaskOrder {
		t := s.Tasks[tn]
		for _, target := range append(t.targets(), t.Requires...) {
			if _, ok := s.Tasks[target]; !ok && !engineCommand(target) {
				return nil, dslErrf("Invalid DSL: task %q refers to task %q which is not defined in workflow %q", tn, target, name)
			}
		}
	}
	return s, nil
}

func engineCommand(name string) bool {
	switch strings.Fields(name + " x")[0] {
	case "fail", "succeed", "pause", "noop":
		return true
	}
	return false
}

func parseTask(name string, n *yaml.Node) (*taskSpec, error) {
	if n.Kind != yaml.MappingNode {
		return nil, dslErrf("Invalid DSL: task %q must be a mapping", name)
	}
	t := &taskSpec{Name: name, ActionInput: map[string]any{}}
	raw, _ := decode(n).(map[string]any)
	if a, ok := raw["action"].(string); ok {
		t.Action, t.ActionInput = splitInline(a)
	}
	if w, ok := raw["workflow"].(string); ok {
		t.Workflow, t.Input = splitInline(w)
	}
	if t.Action == "" && t.Workflow == "" {
		t.Action = "std.noop" // Mistral's default for a task without action
	}
	if t.Action != "" && t.Workflow != "" {
		return nil, dslErrf("Invalid DSL: task %q has both action and workflow", name)
	}
	if in, ok := raw["input"].(map[string]any); ok {
		if t.Workflow != "" {
			for k, v := range in {
				t.Input[k] = v
			}
		} else {
			for k, v := range in {
				t.ActionInput[k] = v
			}
		}
	}
	t.Publish, _ = raw["publish"].(map[string]any)
	t.PublishErr, _ = raw["publish-on-error"].(map[string]any)
	var err error
	if t.OnSuccess, err = transitions(raw["on-success"]); err != nil {
		return nil, err
	}
	if t.OnError, err = transitions(raw["on-error"]); err != nil {
		return nil, err
	}
	if t.OnComplete, err = transitions(raw["on-complete"]); err != nil {
		return nil, err
	}
	if r, ok := raw["retry"].(map[string]any); ok {
		c, _ := number(r["count"])
		t.RetryCount = int(c)
		t.RetryDelay, _ = number(r["delay"])
	}
	t.WaitBefore, _ = number(raw["wait-before"])
	t.WaitAfter, _ = number(raw["wait-after"])
	switch j := raw["join"].(type) {
	case string:
		if j != "all" {
			return nil, dslErrf("Invalid DSL: task %q join must be 'all' or a number", name)
		}
		t.Join = -1
	case int:
		t.Join = j
	}
	if wi, ok := raw["with-items"].(string); ok {
		t.WithItems = wi
	}
	if pb, ok := raw["pause-before"].(bool); ok {
		t.PauseBefore = pb
	}
	switch r := raw["requires"].(type) {
	case string:
		t.Requires = []string{r}
	case []any:
		for _, x := range r {
			t.Requires = append(t.Requires, fmt.Sprint(x))
		}
	}
	return t, nil
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case float64:
		return n, true
	case string:
		f, err := strconv.ParseFloat(n, 64)
		return f, err == nil
	}
	return 0, false
}

func transitions(v any) ([]transition, error) {
	var out []transition
	switch x := v.(type) {
	case nil:
	case string:
		out = append(out, transition{Task: x})
	case []any:
		for _, item := range x {
			switch it := item.(type) {
			case string:
				out = append(out, transition{Task: it})
			case map[string]any:
				for k, c := range it {
					out = append(out, transition{Task: k, Cond: c})
				}
			default:
				return nil, dslErrf("Invalid DSL: bad transition %v", item)
			}
		}
	default:
		return nil, dslErrf("Invalid DSL: bad transition %v", v)
	}
	return out, nil
}

var inlineRe = regexp.MustCompile(`(\w+)=(<%.*?%>|\{\{.*?\}\}|"(?:[^"\\]|\\.)*"|'[^']*'|\S+)`)

// splitInline splits "std.echo output=hello n=1" into the name and params;
// values are JSON where they parse as JSON, else strings.
func splitInline(s string) (string, map[string]any) {
	s = strings.TrimSpace(s)
	params := map[string]any{}
	name, rest, _ := strings.Cut(s, " ")
	for _, m := range inlineRe.FindAllStringSubmatch(rest, -1) {
		v := m[2]
		switch {
		case strings.HasPrefix(v, "'"):
			params[m[1]] = strings.Trim(v, "'")
		default:
			var j any
			if err := json.Unmarshal([]byte(v), &j); err == nil {
				params[m[1]] = j
			} else {
				params[m[1]] = v
			}
		}
	}
	return name, params
}

// inputString renders a workflow's input the way Mistral's API shows it:
// `a, b="2"`.
func inputString(in []inputParam) string {
	parts := make([]string, 0, len(in))
	for _, p := range in {
		if p.HasDefault {
			b, _ := json.Marshal(p.Default)
			parts = append(parts, fmt.Sprintf("%s=%s", p.Name, b))
		} else {
			parts = append(parts, p.Name)
		}
	}
	return strings.Join(parts, ", ")
}

// interfaceOf is the workflow's interface: input names and output keys.
func interfaceOf(s *wfSpec) map[string]any {
	in := make([]any, 0, len(s.Input))
	for _, p := range s.Input {
		if p.HasDefault {
			in = append(in, map[string]any{p.Name: p.Default})
		} else {
			in = append(in, p.Name)
		}
	}
	out := []any{}
	if m, ok := s.Output.(map[string]any); ok {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = append(out, k)
		}
	}
	return map[string]any{"input": in, "output": out}
}

// workflowDefinition renders one workflow as its own definition text.
func workflowDefinition(s *wfSpec) string {
	doc := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Value: "version"}, {Kind: yaml.ScalarNode, Value: "2.0", Style: yaml.SingleQuotedStyle},
		{Kind: yaml.ScalarNode, Value: s.Name}, s.Node,
	}}
	b, err := yaml.Marshal(doc)
	if err != nil {
		return ""
	}
	return string(b)
}
