// Package listeners is mistral-tap's own API: listeners that clients
// register at runtime on the proxy's address (/v2/listeners), stored in the
// outbox's store and delivered by the dispatcher like file callbacks.
//
// Contract:
//
//   - Handler serves POST/GET /v2/listeners and GET/DELETE
//     /v2/listeners/{id} with Mistral's conventions: JSON, UUID ids,
//     created_at/updated_at/expires_at as "YYYY-MM-DD HH:MM:SS" (UTC), the
//     list envelope {"listeners": [...], "next": ...} paged by limit and
//     marker, errors as WSME fault bodies ({"faultcode": "Client",
//     "faultstring": ...}). A body over 64 KiB is 413, malformed JSON or a
//     bad listener 400 (nothing stored), an unknown or invisible listener
//     404, the per-project cap 409 (Conflict, as Mistral answers a
//     duplicate: the body is valid, the project's state refuses it).
//   - A listener has exactly one scope: execution_id (the execution, its
//     tasks, its sub-workflow executions and theirs), task_execution_id
//     (that task's events), workflow_name (a path.Match glob on
//     workflow_name, as a file callback's workflow) or workbook_name
//     (workflows named "<workbook>.<name>"). Workflow and workbook
//     listeners get events of their own project only. events uses the
//     config file's vocabulary (matcher.ExpandEvent); absent means "*".
//   - url (absolute http/https, literal), method (POST, PUT, PATCH),
//     headers (literal, no hop-by-hop or signature headers), format
//     (mistral, envelope, cloudevents) and secret are sealed with
//     AES-256-GCM (Sealer) before they reach the store. A secret is
//     generated (whsec_, Standard Webhooks) when none is given and shown
//     once, in the create response. Reads never show a header value or a
//     secret, and show the URL with its credentials redacted.
//   - Who: with a token in X-Auth-Token, a registration needs Mistral to
//     let that token read the scoped resource (Authorizer; the Mistral-backed
//     one asks Mistral with the caller's token). The listener is recorded in
//     the resource's project; listing, reading and deleting are limited to
//     the caller's project. mistral-tap's admin token (Authorization:
//     Bearer, or X-Auth-Token) sees every project. With Mistral's auth off
//     everyone does, as in Mistral.
//   - Registry activates stored listeners in the dispatcher (AddListener
//     with a backfill of the scope's history, so that events derived
//     before the registration are delivered too), is the dispatcher's
//     listener Matcher, removes an execution or task listener once its
//     scope's final event was seen and its deliveries are done, and ends
//     any listener at expires_at. It syncs from the store every second and
//     at once after a local change; only the replica told SetActive(true)
//     (the HA leader) activates.
//
// Choices worth knowing:
//   - The caller's project, for listing, comes from Keystone when
//     MistralOptions.KeystoneURL is set (the token validates itself), else
//     from the first execution, workbook or private workflow the token can
//     list; a token whose project cannot be told lists nothing, and reads or
//     deletes a listener only if it can read the listener's scope in the
//     listener's project.
//   - The admin token is never sent to Mistral. An admin registering while
//     Mistral's auth is on also sends a Mistral token in X-Auth-Token (with
//     the admin token as Authorization: Bearer), since the scope must still
//     be found in Mistral.
//   - A literal workflow_name is recorded in the workflow's project, which
//     for a public workflow is its owner's; a glob in the caller's.
//   - A sub-execution listener learns its subtree from the events it sees,
//     in causal order: its root's history, read by its Ready
//     (notifier.ListenerOptions) once every event accepted before its route
//     went live is recorded and before any Accept is matched against the
//     route, then live events. No grandchild is missed. Accepts wait for
//     that one read, for sub-execution listeners only; a failed read fails
//     the activation (the next sync retries). A root execution's listener
//     matches by root id and needs none.
//   - An execution or task listener is removed Settle (5s) after its
//     scope's final event (terminal event of the scoped entity, seen live
//     or in the backfill), once the dispatcher reports its lane idle. A
//     rerun after that is not followed. Expiry removes any listener; its
//     pending deliveries become dead letters ("listener expired").
package listeners
