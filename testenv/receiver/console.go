package receiver

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// ConsolePrinter returns a webhook endpoint that prints each notification
// readably on one line (two for task events) to w and answers 200. It
// understands Mistral's own flat payload, an envelope that wraps the entity
// (under "execution", "task" or "data", with "type"/"event", "sequence" and
// "inferred" beside it), structured CloudEvents, and binary CloudEvents
// (ce-* headers). Anything else is printed raw, shortened.
func ConsolePrinter(w io.Writer) http.Handler {
	var mu sync.Mutex // one notification's lines stay together
	return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		line := Describe(req.Header, body)
		mu.Lock()
		fmt.Fprintf(w, "%s %s\n", time.Now().Format("15:04:05.000"), line)
		mu.Unlock()
		rw.WriteHeader(http.StatusOK)
	})
}

// Describe renders one notification (headers and body) the way
// ConsolePrinter prints it, without the time prefix.
func Describe(h http.Header, body []byte) string {
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil || doc == nil {
		return "raw " + shorten(strings.TrimSpace(string(body)), 200)
	}
	var (
		evType   string
		from     string
		via      string
		inferred *bool
		seq      string
		entity   = doc
		envelope bool
	)
	if ct := h.Get("Ce-Type"); ct != "" { // binary CloudEvents: body is the data
		evType = ct
		envelope = true
		seq = h.Get("Ce-Sequence")
		if v := h.Get("Ce-Inferred"); v != "" {
			b := v == "true"
			inferred = &b
		}
	}
	for _, k := range []string{"execution", "task", "data"} {
		if m, ok := doc[k].(map[string]any); ok {
			entity = m
			envelope = true
			break
		}
	}
	if envelope && evType == "" {
		evType = str(doc["type"])
		if evType == "" {
			evType = str(doc["event"])
		}
	}
	if evType == "" {
		evType = str(entity["event"])
	}
	if evType == "" {
		evType = "null" // Mistral's event for DELAYED/WAITING/IDLE targets
	}
	if envelope {
		for _, m := range []map[string]any{doc, entity} {
			if b, ok := m["inferred"].(bool); ok && inferred == nil {
				inferred = &b
			}
			if s := num(m["sequence"]); s != "" && seq == "" {
				seq = s
			}
		}
		from = str(doc["previous_state"])
		if src := str(doc["source"]); src == "tap" || src == "watch" {
			via = src
		}
	}
	if trimmed := strings.TrimLeft(seq, "0"); trimmed != "" {
		seq = trimmed // CloudEvents pads the sequence to sort as text
	}

	var b strings.Builder
	fmt.Fprintf(&b, "%-20s %s", evType, str(entity["workflow_name"]))
	isTask := str(entity["workflow_execution_id"]) != ""
	if isTask {
		fmt.Fprintf(&b, " / %s", str(entity["name"]))
	}
	if from != "" {
		fmt.Fprintf(&b, " %s→%s", from, orDash(str(entity["state"])))
	} else {
		fmt.Fprintf(&b, " state=%s", orDash(str(entity["state"])))
	}
	if si := str(entity["state_info"]); si != "" {
		fmt.Fprintf(&b, " info=%q", shorten(si, 60))
	}
	if seq != "" {
		fmt.Fprintf(&b, " seq=%s", seq)
	}
	if inferred != nil && *inferred {
		b.WriteString(" INFERRED")
	}
	if via != "" {
		fmt.Fprintf(&b, " via=%s", via)
	}
	if isTask {
		fmt.Fprintf(&b, "\n             task=%s exec=%s", str(entity["id"]), str(entity["workflow_execution_id"]))
	} else {
		fmt.Fprintf(&b, " exec=%s", str(entity["id"]))
		if r := str(entity["root_execution_id"]); r != "" {
			fmt.Fprintf(&b, " root=%s parent-task=%s", r, orDash(str(entity["task_execution_id"])))
		}
	}
	if id := h.Get("Webhook-Id"); id != "" {
		fmt.Fprintf(&b, " id=%s", id)
	}
	return b.String()
}

func str(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

func num(v any) string {
	switch n := v.(type) {
	case float64:
		return fmt.Sprintf("%.0f", n)
	case string:
		return n
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
