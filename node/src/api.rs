//! The local API (DESIGN §10): HTTP/JSON on a loopback address for the institution's own
//! systems and the `tfx` CLI, described in `deploy/openapi.yaml`. Every route except
//! `/v1/health` (the same check as the metrics listener's `/health`) requires `Authorization: Bearer <token>`, where the token is the content of a
//! file only the node's user can read (created 0600 on first start). The address must be
//! loopback (checked when the config loads), so the token never crosses a network.
//!
//! Reads never go past the local log's durable head: a record is visible here only once it
//! would survive a crash. Submitting returns after the append is durable. Error bodies are
//! `{"error": "..."}`; validation errors name the field and rule (the submitter's own input),
//! and nothing here logs a field value.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query as UrlQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tfx_protocol::limits::{QUERY_RESULTS_MAX, RECORD_JSON_BYTES_MAX};
use tfx_protocol::policy::SignedPolicy;
use tfx_protocol::record::{verify_disclosures, verify_envelope};
use tfx_protocol::schema::RecordKind;
use tfx_protocol::store::{Query, Store};
use tfx_protocol::validate::parse_record_json;
use tfx_protocol::{MemberId, RecordId, Timestamp};

use crate::ledger::{LedgerFilter, LEDGER_ROWS_MAX};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::keyfile;
use crate::node::Shared;

#[derive(Clone)]
struct Api {
    shared: Shared,
    token: std::sync::Arc<zeroize::Zeroizing<String>>,
    /// Turns true when the node stops: waiting reads answer at once, so a graceful shutdown
    /// never waits out a `wait_ms`.
    shutdown: watch::Receiver<bool>,
    /// One permit per read waiting for a record (`[api] waiting_reads`): each holds a
    /// connection and a task, so their number is bounded like every other queue.
    waiting: std::sync::Arc<tokio::sync::Semaphore>,
    waiting_limit: usize,
}

type ApiResult = Result<Response, (StatusCode, Json<serde_json::Value>)>;

fn fail(status: StatusCode, msg: impl Into<String>) -> (StatusCode, Json<serde_json::Value>) {
    (status, Json(json!({ "error": msg.into() })))
}

/// Loads the API token, creating it (0600) on first start.
pub fn load_or_create_token(path: &Path) -> anyhow::Result<zeroize::Zeroizing<String>> {
    if !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        keyfile::generate_secret(path).with_context(|| format!("creating {}", path.display()))?;
    }
    let secret =
        keyfile::load_secret(path).with_context(|| format!("loading {}", path.display()))?;
    Ok(zeroize::Zeroizing::new(hex::encode(&secret[..])))
}

/// Binds the API and serves it until `shutdown` turns true.
pub async fn serve(
    addr: SocketAddr,
    token_file: &Path,
    waiting_reads: usize,
    shared: Shared,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let token = load_or_create_token(token_file)?;
    let api = Api {
        shared,
        token: std::sync::Arc::new(token),
        shutdown: shutdown.clone(),
        waiting: std::sync::Arc::new(tokio::sync::Semaphore::new(waiting_reads)),
        waiting_limit: waiting_reads,
    };
    let authed = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/records", get(query).post(submit))
        .route("/v1/records/{id}", get(get_record))
        .route("/v1/policy", get(get_policy).post(install_policy))
        .route("/v1/ledger", get(ledger))
        .route("/v1/backup", axum::routing::post(backup))
        .route(
            "/v1/audit/export",
            // 10,000 record ids of 66 bytes each, and field names.
            axum::routing::post(audit_export).layer(DefaultBodyLimit::max(1024 * 1024)),
        )
        .layer(middleware::from_fn_with_state(api.clone(), auth));
    let app = Router::new()
        .route("/v1/health", get(health))
        .merge(authed)
        .layer(DefaultBodyLimit::max(RECORD_JSON_BYTES_MAX))
        .with_state(api);
    serve_loopback(addr, app, shutdown, "the local API").await
}

/// Binds `app` on `addr` (which must be loopback: nothing served here leaves the host) and
/// serves it until `shutdown` turns true. `what` names it in errors.
pub async fn serve_loopback(
    addr: SocketAddr,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "{what} must listen on loopback, not {addr}"
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {what} on {addr}"))?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let stop = async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "{what} stopped");
        }
    });
    Ok((local, task))
}

/// Writes a consistent backup of the store into `<data>/backups/` and answers with its path
/// and what it holds (`tfx-node backup` moves it where the operator asked). One at a time.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportBody {
    records: Vec<String>,
    #[serde(default)]
    fields: Option<Vec<String>>,
}

/// Builds and signs an audit bundle (SPEC §19) of the records asked for, from this node's
/// store: the caller writes the bytes to a file. Read-only; the store stays in use by sync.
async fn audit_export(State(api): State<Api>, body: axum::body::Bytes) -> ApiResult {
    let req: ExportBody = serde_json::from_slice(&body).map_err(|e| {
        fail(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"records\": [hex id, ...], \"fields\": [name, ...]?}}: {e}"),
        )
    })?;
    if req.records.len() > tfx_protocol::bundle::BUNDLE_RECORDS_MAX {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            format!(
                "{} records asked for (at most {} per bundle)",
                req.records.len(),
                tfx_protocol::bundle::BUNDLE_RECORDS_MAX
            ),
        ));
    }
    let mut ids = Vec::with_capacity(req.records.len());
    for r in &req.records {
        ids.push(RecordId::from_hex(r).ok_or_else(|| {
            fail(
                StatusCode::BAD_REQUEST,
                format!("record id {r:?} is not 64 hex digits"),
            )
        })?);
    }
    let shared = api.shared.clone();
    let durable = durable_size(&api);
    let built = tokio::task::spawn_blocking(move || -> Result<_, (StatusCode, String)> {
        let internal = |e: anyhow::Error| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"));
        let rosters = crate::node::read_roster_chain(&shared.roster_dir).map_err(internal)?;
        let roster = shared.membership.roster();
        let evidence = shared
            .store
            .evidence()
            .map_err(|e| internal(e.into()))?
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        let key = crate::keyfile::load_signing_key(&shared.record_signing_key)
            .map_err(|e| internal(e.into()))?;
        let request = tfx_protocol::bundle::ExportRequest {
            exporter: shared.member.clone(),
            created: crate::clock::now(),
            rosters,
            roster: &roster,
            records: ids,
            fields: req.fields,
            local_durable: durable,
            evidence,
        };
        let bundle = tfx_protocol::bundle::export(&*shared.store, request).map_err(|e| {
            use tfx_protocol::bundle::ExportError as E;
            let code = match e {
                E::NotHeld(_) => StatusCode::NOT_FOUND,
                E::NotCovered { .. } => StatusCode::CONFLICT,
                E::TooMany { .. } | E::Empty => StatusCode::BAD_REQUEST,
                E::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (code, e.to_string())
        })?;
        let records = bundle.items.len();
        let with_cosignatures = bundle
            .items
            .iter()
            .filter(|i| !i.cosignatures.is_empty())
            .count();
        Ok((bundle.sign(&key), records, with_cosignatures))
    })
    .await
    .map_err(|e| {
        fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("export task: {e}"),
        )
    })?;
    let (bytes, records, with_cosignatures) = built.map_err(|(code, msg)| fail(code, msg))?;
    tracing::info!(records, bytes = bytes.len(), "audit bundle exported");
    Ok(Json(json!({
        "bundle_hex": hex::encode(&bytes),
        "records": records,
        "records_with_cosignatures": with_cosignatures,
    }))
    .into_response())
}

async fn backup(State(api): State<Api>) -> ApiResult {
    if api.shared.appender.recovering() {
        return Err(fail(
            StatusCode::CONFLICT,
            "this node is recovering its own log after a restore; back it up once it issues again",
        ));
    }
    // Held by the blocking task itself: a client that gives up does not end the backup early,
    // and a second one cannot start meanwhile.
    let Ok(running) = api.shared.backup_running.clone().try_lock_owned() else {
        return Err(fail(
            StatusCode::CONFLICT,
            "a backup is already being written",
        ));
    };
    let shared = api.shared.clone();
    let written = tokio::task::spawn_blocking(move || {
        let _running = running;
        std::fs::create_dir_all(&shared.backup_dir)
            .with_context(|| format!("creating {}", shared.backup_dir.display()))?;
        let path = shared.backup_dir.join(format!(
            "tfx-{}-{}.tfxbackup",
            shared.member,
            crate::clock::now().0
        ));
        let durable = shared.appender.durable_head();
        let key = crate::keyfile::load_signing_key(&shared.record_signing_key)?;
        let summary = crate::backup::write_file(
            &shared.store,
            &shared.ledger,
            &shared.member,
            &key,
            Some(&durable),
            &path,
        )?;
        Ok::<_, anyhow::Error>((path, summary))
    })
    .await
    .map_err(|e| fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let (path, summary) =
        written.map_err(|e| fail(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    tracing::info!(path = %path.display(), records = summary.records, bytes = summary.bytes, "backup written");
    Ok(Json(json!({
        "path": path.display().to_string(),
        "summary": summary,
    }))
    .into_response())
}

/// The health check (`crate::metrics::health`), unauthenticated like the metrics listener's
/// `/health`: it reveals no data, and monitors should not need the token.
async fn health(State(api): State<Api>) -> Response {
    crate::metrics::health_response(&api.shared).await
}

/// The policy in force: its version and the view of every role (what each may receive).
async fn get_policy(State(api): State<Api>) -> ApiResult {
    let dir = api.shared.policy_dir.clone();
    let chain = tokio::task::spawn_blocking(move || crate::node::read_policy_chain(&dir))
        .await
        .map_err(|e| fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| fail(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    let Some(last) = chain.last() else {
        return Ok(Json(json!({ "version": 0, "grants": [] })).into_response());
    };
    let p = SignedPolicy::decode(last)
        .map_err(|e| fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .policy;
    let grants: Vec<serde_json::Value> = p
        .grants
        .iter()
        .map(|g| {
            json!({
                "kind": g.kind.name(),
                "role": g.role,
                "fields": g.fields,
                "purpose": g.purpose,
                "retention_days": g.retention_days,
            })
        })
        .collect();
    Ok(Json(json!({
        "version": p.version,
        "roster_version": p.roster_version,
        "issued_at_ms": p.issued_at.0,
        "grants": grants,
    }))
    .into_response())
}

/// Installs a signed policy version (the body: its bytes). The node verifies it against the
/// roster's governors and the current version, adopts it and announces it to peers.
async fn install_policy(State(api): State<Api>, body: axum::body::Bytes) -> ApiResult {
    let (reply, answer) = tokio::sync::oneshot::channel();
    let input = crate::connection::Input::InstallPolicy {
        bytes: body.to_vec(),
        reply,
    };
    api.shared
        .driver
        .send(input)
        .await
        .map_err(|_| fail(StatusCode::SERVICE_UNAVAILABLE, "the node is shutting down"))?;
    match answer.await {
        Ok(Ok(version)) => Ok(Json(json!({ "version": version })).into_response()),
        Ok(Err(e)) => Err(fail(StatusCode::UNPROCESSABLE_ENTITY, e)),
        Err(_) => Err(fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node is shutting down",
        )),
    }
}

#[derive(Debug, Deserialize)]
struct LedgerParams {
    recipient: Option<String>,
    record: Option<String>,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
    limit: Option<usize>,
}

/// The disclosure ledger: one row per record disclosed to a peer.
async fn ledger(State(api): State<Api>, UrlQuery(p): UrlQuery<LedgerParams>) -> ApiResult {
    let bad = |e: String| fail(StatusCode::BAD_REQUEST, e);
    let filter = LedgerFilter {
        recipient: p
            .recipient
            .as_deref()
            .map(MemberId::new)
            .transpose()
            .map_err(|e| bad(format!("recipient: {e}")))?,
        record: p
            .record
            .as_deref()
            .map(|r| RecordId::from_hex(r).ok_or(()))
            .transpose()
            .map_err(|()| bad("record: must be 64 hex digits".into()))?,
        since: p.since_ms.map(Timestamp),
        until: p.until_ms.map(Timestamp),
        limit: p.limit.unwrap_or(LEDGER_ROWS_MAX),
    };
    let ledger = api.shared.ledger.clone();
    let rows = tokio::task::spawn_blocking(move || ledger.query(&filter))
        .await
        .map_err(|e| fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(json!({ "rows": rows })).into_response())
}

async fn auth(State(api): State<Api>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let expected = api.token.as_bytes();
    // Constant-time comparison: the token must not leak through response timing.
    let ok = given.len() == expected.len()
        && given
            .as_bytes()
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !ok {
        return fail(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (see the node's api.token file)",
        )
        .into_response();
    }
    next.run(req).await
}

async fn status(State(api): State<Api>) -> ApiResult {
    let sync = api.shared.status.borrow().clone();
    let stats = api.shared.appender.stats();
    let durable = *api.shared.appender.durable_head().borrow();
    Ok(Json(json!({
        "member": api.shared.member.as_str(),
        "roster_version": sync.roster_version,
        "local_log": { "size": durable.size, "root": hex::encode(durable.root) },
        "heads": sync.heads,
        "peers": sync.peers,
        "frozen": sync.frozen,
        "equivocations": sync.equivocations,
        "received_batches": sync.received,
        "peers_disconnected_for_misbehaviour": sync.misbehaviour,
        "appender": { "batches": stats.batches, "records": stats.records },
        "policy_version": sync.policy_version,
        "refused_disclosures": sync.refused_disclosures,
        "flagged": sync.flagged,
        "purged_disclosures": sync.purged_disclosures,
        "backfilling": sync.backfilling,
        "received_records": sync.received_records,
        "forks": sync.forks,
        "store_failed": sync.store_failed,
        "recovering": sync.recovering,
    }))
    .into_response())
}

async fn submit(State(api): State<Api>, body: axum::body::Bytes) -> ApiResult {
    let record = parse_record_json(&body)
        .map_err(|e| fail(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let roster = api.shared.membership.roster();
    let roles = roster
        .member(&api.shared.member)
        .map(|m| m.roles.clone())
        .unwrap_or_default();
    if !record
        .kind
        .issuer_roles()
        .iter()
        .any(|r| roles.iter().any(|m| m == r))
    {
        return Err(fail(
            StatusCode::FORBIDDEN,
            format!(
                "{} holds roles {roles:?}; {} records may be issued only by {:?}",
                api.shared.member,
                record.kind,
                record.kind.issuer_roles()
            ),
        ));
    }
    let receipt = api
        .shared
        .appender
        .append(record)
        .await
        .map_err(|e| fail(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": receipt.id.to_hex(),
            "origin": api.shared.member.as_str(),
            "seq": receipt.seq.0,
            "issued_at": receipt.issued_at.to_rfc3339(),
        })),
    )
        .into_response())
}

/// Whether (origin, seq) is readable given the local log's durable size: the local log only up
/// to its durable head.
fn visible(api: &Api, durable: u64, origin: &tfx_protocol::MemberId, seq: u64) -> bool {
    origin != &api.shared.member || seq < durable
}

fn durable_size(api: &Api) -> u64 {
    api.shared.appender.durable_head().borrow().size
}

fn store_error(e: impl std::fmt::Display) -> (StatusCode, Json<serde_json::Value>) {
    tracing::error!(error = %e, "store read failed");
    fail(
        StatusCode::INTERNAL_SERVER_ERROR,
        "store read failed; see the node log",
    )
}

/// Longest `wait_ms` a read may ask for: longer waits are the caller's loop to make, so that
/// no request holds its connection open indefinitely.
pub const RECORD_WAIT_MS_MAX: u64 = 30_000;

#[derive(Debug, Deserialize)]
struct GetParams {
    /// Wait up to this long for the record to arrive instead of answering 404 at once.
    wait_ms: Option<u64>,
}

async fn get_record(
    State(api): State<Api>,
    UrlPath(id): UrlPath<String>,
    UrlQuery(p): UrlQuery<GetParams>,
) -> ApiResult {
    let rid = RecordId::from_hex(&id)
        .ok_or_else(|| fail(StatusCode::BAD_REQUEST, "record id must be 64 hex digits"))?;
    let wait = p.wait_ms.unwrap_or(0);
    if wait > RECORD_WAIT_MS_MAX {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            format!("wait_ms {wait} is over the limit of {RECORD_WAIT_MS_MAX}"),
        ));
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(wait);
    // Subscribed before the first read, so nothing applied in between goes unnoticed.
    let mut arrivals = api.shared.arrivals.clone();
    let mut durable = api.shared.appender.durable_head();
    let mut shutdown = api.shutdown.clone();
    arrivals.borrow_and_update();
    durable.borrow_and_update();
    let mut permit = None;
    loop {
        let answer = read_record(&api, &id, &rid);
        let waiting = matches!(&answer, Err((StatusCode::NOT_FOUND, _)))
            && tokio::time::Instant::now() < deadline
            && !*shutdown.borrow_and_update();
        if !waiting {
            return answer;
        }
        if permit.is_none() {
            // Taken only once the record is known to be missing: reads that find it at once
            // never count against the limit.
            match api.waiting.clone().try_acquire_owned() {
                Ok(p) => permit = Some(p),
                Err(_) => {
                    return Err(fail(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "{} reads are already waiting here ([api] waiting_reads); \
                             try again shortly",
                            api.waiting_limit
                        ),
                    ))
                }
            }
        }
        // Records become readable when a batch from a peer is applied or the local durable
        // head moves. A closed channel or the node stopping ends the wait with this answer.
        tokio::select! {
            r = arrivals.changed() => if r.is_err() { return answer },
            r = durable.changed() => if r.is_err() { return answer },
            r = shutdown.changed() => if r.is_err() { return answer },
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// One record as `GET /v1/records/{id}` shows it, or 404 if it is not held (durably) here.
fn read_record(api: &Api, id: &str, rid: &RecordId) -> ApiResult {
    let rid = *rid;
    let not_found = || fail(StatusCode::NOT_FOUND, format!("no record {id} here"));
    let store = &api.shared.store;
    let (origin, seq) = store
        .locate(&rid)
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    if !visible(api, durable_size(api), &origin, seq.0) {
        return Err(not_found());
    }
    let envelope = store
        .envelope(&origin, seq)
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    let roster = api.shared.membership.roster();
    let verified = verify_envelope(&envelope, &*roster).map_err(|e| {
        fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("stored envelope no longer verifies: {}", e.redacted()),
        )
    })?;
    // Every field shown is checked against the signed header, as any holder could check it.
    let held = store.disclosures(&rid).map_err(store_error)?;
    let disclosures = verify_disclosures(&verified.header, &held).map_err(|e| {
        fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("a stored disclosure no longer verifies: {}", e.redacted()),
        )
    })?;
    let mut fields = serde_json::Map::new();
    for d in &disclosures {
        fields.insert(d.name().to_owned(), d.value().to_json());
    }
    let h = &verified.header;
    Ok(Json(json!({
        "id": id,
        "origin": h.origin.as_str(),
        "seq": h.seq.0,
        "kind": h.kind.name(),
        "issued_at": h.issued_at.to_rfc3339(),
        "supersedes": h.supersedes.map(|s| s.to_hex()),
        "verified": true,
        "fields": fields,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
struct QueryParams {
    subject: Option<String>,
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
}

fn time_param(
    name: &str,
    v: &Option<String>,
) -> Result<Option<Timestamp>, (StatusCode, Json<serde_json::Value>)> {
    v.as_deref()
        .map(|s| {
            Timestamp::parse_rfc3339(s)
                .map_err(|e| fail(StatusCode::BAD_REQUEST, format!("{name}: {e}")))
        })
        .transpose()
}

async fn query(State(api): State<Api>, UrlQuery(p): UrlQuery<QueryParams>) -> ApiResult {
    let kind = match p.kind.as_deref() {
        None => None,
        Some(k) => Some(RecordKind::parse(k).ok_or_else(|| {
            fail(
                StatusCode::BAD_REQUEST,
                format!("kind: {k:?} is not credit, ip-valuation, monitoring or risk-warning"),
            )
        })?),
    };
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > QUERY_RESULTS_MAX {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            format!("limit: {limit} is outside 1..={QUERY_RESULTS_MAX}"),
        ));
    }
    let q = Query {
        subject: p.subject.clone(),
        kind,
        since: time_param("since", &p.since)?,
        until: time_param("until", &p.until)?,
        limit,
    };
    let store = api.shared.store.clone();
    let refs = tokio::task::spawn_blocking(move || store.query(&q))
        .await
        .map_err(store_error)?
        .map_err(store_error)?;
    let durable = durable_size(&api);
    let records: Vec<_> = refs
        .into_iter()
        .filter(|r| visible(&api, durable, &r.origin, r.seq.0))
        .map(|r| {
            json!({
                "id": r.id.to_hex(),
                "origin": r.origin.as_str(),
                "seq": r.seq.0,
                "kind": r.kind.name(),
                "issued_at": r.issued_at.to_rfc3339(),
            })
        })
        .collect();
    Ok(Json(json!({ "records": records })).into_response())
}
