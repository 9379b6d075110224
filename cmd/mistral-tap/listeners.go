package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/mistral-tap/mistral-tap/config/redact"
)

const listenersUsage = `Usage:
  mistral-tap listeners add execution|task|workflow|workbook ID-OR-NAME URL
        [--events E,E] [--header K=V]... [--method M] [--format F] [--secret S] [--expires-at T]
  mistral-tap listeners list   [--limit N] [--json]
  mistral-tap listeners get    ID [--json]
  mistral-tap listeners delete ID

They talk to a running mistral-tap's /v2/listeners API (the proxy's address,
where clients reach Mistral): --url, or $MISTRAL_URL, default
http://127.0.0.1:8990 (a trailing /v2 is accepted, as in the mistral CLI's
--os-mistral-url). With Mistral's auth on, pass the caller's Keystone token:
--os-auth-token or $OS_AUTH_TOKEN (as the mistral CLI does). 'add' prints the
listener's signing secret once: store it then, it is never shown again.
T is "YYYY-MM-DD HH:MM:SS" (UTC) or RFC 3339.
`

// listenerScopes maps the CLI's scope words to the API's scope fields.
var listenerScopes = map[string]string{
	"execution": "execution_id", "task": "task_execution_id",
	"workflow": "workflow_name", "workbook": "workbook_name",
}

// listenerFields are the scope fields, in the order a listing shows them.
var listenerFields = []string{"execution_id", "task_execution_id", "workflow_name", "workbook_name"}

// cmdListeners registers, lists, shows and deletes runtime listeners.
func cmdListeners(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, listenersUsage)
		return usageError{errors.New("want add, list, get or delete")}
	}
	verb := args[0]
	fs := pflag.NewFlagSet("listeners "+verb, pflag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() { fmt.Fprint(stdout, listenersUsage); fs.PrintDefaults() }
	c := listenersClient{http: &http.Client{Timeout: 30 * time.Second}}
	fs.StringVar(&c.base, "url", envOr("MISTRAL_URL", "http://127.0.0.1:8990"), "mistral-tap's proxy address ($MISTRAL_URL)")
	fs.StringVar(&c.token, "os-auth-token", os.Getenv("OS_AUTH_TOKEN"), "Keystone token sent as X-Auth-Token ($OS_AUTH_TOKEN)")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	var a addFlags
	if verb == "add" {
		fs.StringSliceVar(&a.events, "events", nil, "event types, comma-separated (default every event)")
		fs.StringArrayVar(&a.headers, "header", nil, "a request header K=V (repeatable)")
		fs.StringVar(&a.method, "method", "", "HTTP method: POST (default), PUT or PATCH")
		fs.StringVar(&a.format, "format", "", "payload format: mistral (default), envelope or cloudevents")
		fs.StringVar(&a.secret, "secret", "", "signing secret (default: generated and printed once)")
		fs.StringVar(&a.expiresAt, "expires-at", "", "end of the listener (default: the server's default TTL)")
	}
	limit := 0
	if verb == "list" {
		fs.IntVar(&limit, "limit", 0, "at most this many (default all)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err}
	}
	pos := fs.Args()
	switch verb {
	case "add":
		if len(pos) != 3 {
			return usageError{fmt.Errorf("add wants SCOPE ID-OR-NAME URL, got %d arguments", len(pos))}
		}
		body, err := a.body(pos[0], pos[1], pos[2])
		if err != nil {
			return usageError{err}
		}
		return c.add(ctx, body, *asJSON, stdout)
	case "list":
		if len(pos) != 0 {
			return usageError{fmt.Errorf("list takes no arguments")}
		}
		return c.list(ctx, limit, *asJSON, stdout)
	case "get", "delete":
		if len(pos) != 1 {
			return usageError{fmt.Errorf("%s wants one listener id", verb)}
		}
		if verb == "delete" {
			if _, err := c.do(ctx, http.MethodDelete, "/"+url.PathEscape(pos[0]), nil); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "deleted listener %s\n", pos[0])
			return nil
		}
		b, err := c.do(ctx, http.MethodGet, "/"+url.PathEscape(pos[0]), nil)
		if err != nil {
			return err
		}
		return printListener(stdout, b, *asJSON)
	default:
		fmt.Fprint(stdout, listenersUsage)
		return usageError{fmt.Errorf("unknown listeners command %q (want add, list, get or delete)", verb)}
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

type addFlags struct {
	events, headers                   []string
	method, format, secret, expiresAt string
}

// body builds the POST body; only what was given is sent, so that the
// server's defaults apply to the rest.
func (a addFlags) body(scope, value, target string) (map[string]any, error) {
	field, ok := listenerScopes[scope]
	if !ok {
		return nil, fmt.Errorf("unknown scope %q (want execution, task, workflow or workbook)", scope)
	}
	if value == "" {
		return nil, fmt.Errorf("empty %s", field)
	}
	b := map[string]any{field: value, "url": target}
	if len(a.events) > 0 {
		b["events"] = a.events
	}
	if len(a.headers) > 0 {
		h := map[string]string{}
		for i, kv := range a.headers {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || strings.TrimSpace(k) == "" {
				// The text may hold a credential: never quote it.
				return nil, fmt.Errorf("--header number %d: want K=V (e.g. --header Authorization='Bearer ...')", i+1)
			}
			h[strings.TrimSpace(k)] = v
		}
		b["headers"] = h
	}
	for k, v := range map[string]string{"method": a.method, "format": a.format, "secret": a.secret, "expires_at": a.expiresAt} {
		if v != "" {
			b[k] = v
		}
	}
	return b, nil
}

// listenersClient calls /v2/listeners.
type listenersClient struct {
	http        *http.Client
	base, token string
}

func (c listenersClient) endpoint(rest string) (string, error) {
	u, err := url.Parse(strings.TrimRight(c.base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", usageError{fmt.Errorf("--url %q: want http(s)://host:port of mistral-tap's proxy", c.base)}
	}
	u.Path = strings.TrimSuffix(u.Path, "/v2") + "/v2/listeners" + rest
	return u.String(), nil
}

// do sends one request and returns the body of a 2xx answer; otherwise
// an error with the API's faultstring.
func (c listenersClient) do(ctx context.Context, method, rest string, body any) ([]byte, error) {
	target, err := c.endpoint(rest)
	if err != nil {
		return nil, err
	}
	return c.doURL(ctx, method, target, body)
}

func (c listenersClient) doURL(ctx context.Context, method, target string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("X-Auth-Token", c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, redact.URL(target), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, redact.URL(target), err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %s: %s", method, redact.URL(target), resp.Status, faultString(b))
	}
	return b, nil
}

// faultString is the message of a Mistral fault body (or of Keystone's
// 401 body), else the body's first line.
func faultString(b []byte) string {
	var f struct {
		Fault string `json:"faultstring"`
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &f) == nil {
		if f.Fault != "" {
			return f.Fault
		}
		if f.Error.Message != "" {
			return f.Error.Message
		}
	}
	return oneLine(string(b), 200)
}

func (c listenersClient) add(ctx context.Context, body map[string]any, asJSON bool, stdout io.Writer) error {
	b, err := c.do(ctx, http.MethodPost, "", body)
	if err != nil {
		return err
	}
	if err := printListener(stdout, b, asJSON); err != nil {
		return err
	}
	if !asJSON {
		var l map[string]any
		_ = json.Unmarshal(b, &l)
		if s, _ := l["secret"].(string); s != "" && body["secret"] == nil {
			fmt.Fprintln(stdout, "\nThe secret above signs every request (webhook-signature header); it is shown only now.")
		}
	}
	return nil
}

// list follows the API's next links until limit listeners (0 = all).
func (c listenersClient) list(ctx context.Context, limit int, asJSON bool, stdout io.Writer) error {
	target, err := c.endpoint("")
	if err != nil {
		return err
	}
	if limit > 0 {
		target += "?limit=" + fmt.Sprint(limit)
	}
	var all []map[string]any
	for page := 0; target != "" && page < 10000; page++ {
		b, err := c.doURL(ctx, http.MethodGet, target, nil)
		if err != nil {
			return err
		}
		var env struct {
			Listeners []map[string]any `json:"listeners"`
			Next      string           `json:"next"`
		}
		if err := json.Unmarshal(b, &env); err != nil {
			return fmt.Errorf("GET %s: not a listener list: %w", redact.URL(target), err)
		}
		all = append(all, env.Listeners...)
		target = env.Next
		if limit > 0 && len(all) >= limit {
			all = all[:limit]
			break
		}
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"listeners": all})
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSCOPE\tEVENTS\tURL\tPROJECT\tCREATED\tEXPIRES")
	for _, l := range all {
		scope := "-"
		for _, f := range listenerFields {
			if v, _ := l[f].(string); v != "" {
				scope = f + "=" + v
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", str(l["id"]), scope, events(l["events"]), str(l["url"]),
			str(l["project_id"]), str(l["created_at"]), str(l["expires_at"]))
	}
	return tw.Flush()
}

// printListener prints one listener as "key: value" lines (or its JSON),
// in a stable order; headers show their names only (the API never
// returns their values).
func printListener(w io.Writer, b []byte, asJSON bool) error {
	if asJSON {
		_, err := fmt.Fprintln(w, strings.TrimSpace(string(b)))
		return err
	}
	var l map[string]any
	if err := json.Unmarshal(b, &l); err != nil {
		return fmt.Errorf("not a listener: %w", err)
	}
	keys := append([]string{"id"}, listenerFields...)
	keys = append(keys, "events", "url", "method", "headers", "format", "project_id", "root_execution_id", "created_at", "updated_at", "expires_at", "secret")
	for _, k := range keys {
		v, ok := l[k]
		if !ok || v == nil || v == "" {
			continue
		}
		switch k {
		case "events":
			v = events(v)
		case "headers":
			h, _ := v.(map[string]any)
			names := make([]string, 0, len(h))
			for n := range h {
				names = append(names, n)
			}
			if len(names) == 0 {
				continue
			}
			slices.Sort(names)
			v = strings.Join(names, ", ")
		}
		fmt.Fprintf(w, "%-18s %v\n", k+":", v)
	}
	return nil
}

func str(v any) string {
	if s, ok := v.(string); ok && s != "" {
		return s
	}
	return "-"
}

func events(v any) string {
	l, _ := v.([]any)
	if len(l) == 0 {
		return "*"
	}
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = fmt.Sprint(e)
	}
	return strings.Join(s, ",")
}
