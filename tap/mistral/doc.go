// Package mistral is mistral-tap's own client of Mistral's REST API v2: the
// watcher's polls, the tracker's completion fetches and the workbook
// resolver all go through one Client (the proxy forwards other clients'
// requests and does not use it).
//
// Contract:
//
//   - Requests are GETs below Options.BaseURL + "/v2" with Accept:
//     application/json, User-Agent mistral-tap, and Options.Headers. Queries
//     keep ':' and ',' readable and spell a space %20, as Mistral's own
//     clients do.
//   - Auth: with Options.Keystone set, every request carries X-Auth-Token
//     from Keystone v3 (password credentials). The token is fetched on first
//     use, cached, and renewed at the earlier of 80% of its lifetime and five
//     minutes before expiry; a 401 from Mistral drops it and the request is
//     retried once with a fresh one. Header values and passwords are
//     secrets: they never appear in errors. Keystone refusing the
//     credentials (401/403/404: wrong password, no role in the project) is
//     a *KeystoneError whose NoAccess is true, and is answered again
//     without asking Keystone for a while (10 s, doubling up to 5 min), so
//     a misconfiguration never becomes a tight loop of failed logins that
//     Keystone's lockout would turn into a locked account.
//   - Projects: Mistral 15 lists tasks and workbooks of the token's project
//     only, even for an admin with all_projects. InProject(id) returns a
//     client with a token scoped to that project (cached, the home project
//     reusing the home token); Projects lists the projects the user can
//     scope to (Keystone's /v3/auth/projects, cached a minute) and
//     ProjectID resolves a name from that answer without blocking.
//   - Paging: a list is an iterator of pages, one request per page, every
//     request asking for Options.PageSize rows. Executions and tasks page
//     by marker (the last row's id) until a page is short: Mistral's `next`
//     repeats their filters in a form that cannot be sent back. Workbooks
//     follow `next` by its query only (Mistral builds the link from the
//     request's Host, which is not necessarily reachable from here), keep
//     the caller's all_projects, and stop at an empty page or a marker seen
//     before. No list runs past maxPages pages.
//   - Rows: execution and task lists ask only for the fields of
//     event.Execution and event.Task that Mistral's notifier payload has;
//     rows without an id or a state are dropped (the marker is still the
//     last row the engine sent).
//   - Errors: a non-2xx answer is an *Error carrying the status and
//     Mistral's faultstring (or a short excerpt of the body); an
//     unreachable engine and a malformed body are wrapped errors naming the
//     path, never the query or headers.
//   - LastContact reports when the engine last answered with a 2xx.
//   - Backoff and Outage are the retry spacing and the log-once rule that
//     pollers of the engine share.
//
// A Client is safe for concurrent use. It imports only tap/event from
// mistral-tap: later stages (matcher, notifier, config) import it, never the
// reverse.
package mistral
