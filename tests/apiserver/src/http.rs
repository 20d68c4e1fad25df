//! HTTP routing: parses Kubernetes API paths and query parameters by hand (the URL scheme
//! has optional `namespaces/<ns>` and `watch` parts that a route table handles badly) and
//! answers JSON.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::canonical::FieldValidation;
use crate::error::{ApiError, success_status};
use crate::resource::{self, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{
    ListOptions, ListResult, PatchType, Preconditions, Store, Stored, WriteOptions, Written,
};
use crate::table::{self, IncludeObject};
use crate::watch::{self, WatchRequest};
use crate::{discovery, hooks};

/// Largest request body accepted (a 10k-endpoint slice is far below this).
const MAX_BODY: usize = 64 << 20;

/// Shared state of every request handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub addr: SocketAddr,
    pub bookmark_interval: Duration,
    /// Asks the accept loop to drop every connection and stay down for a while.
    pub restart: tokio::sync::mpsc::UnboundedSender<hooks::RestartRequest>,
}

pub fn router(state: AppState) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(state)
}

type Query = HashMap<String, String>;

fn parse_query(req: &Request) -> Query {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn flag(q: &Query, name: &str) -> bool {
    matches!(q.get(name).map(String::as_str), Some("1" | "true" | "True"))
}

pub fn json_response(code: StatusCode, value: &Value) -> Response {
    bytes_response(
        code,
        Bytes::from(serde_json::to_vec(value).expect("JSON values encode")),
        "application/json",
    )
}

fn bytes_response(code: StatusCode, body: Bytes, content_type: &str) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).expect("valid header"),
    );
    r
}

pub fn error_response(e: &ApiError) -> Response {
    json_response(
        StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.status(),
    )
}

async fn handle(State(st): State<AppState>, req: Request) -> Response {
    st.store.counters.requests.fetch_add(1, Ordering::Relaxed);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let response = match dispatch(&st, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    tracing::debug!(%method, %path, status = response.status().as_u16(), "request");
    response
}

async fn dispatch(st: &AppState, req: Request) -> Result<Response, ApiError> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let get = req.method() == Method::GET;
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] if get => Ok(json_response(StatusCode::OK, &discovery::version())),
        ["healthz" | "livez" | "readyz"] if get => Ok(bytes_response(
            StatusCode::OK,
            Bytes::from_static(b"ok"),
            "text/plain",
        )),
        ["api"] if get => Ok(if discovery::wants_aggregated(&accept) {
            aggregated(discovery::aggregated(true))
        } else {
            json_response(
                StatusCode::OK,
                &discovery::api_versions(&st.addr.to_string()),
            )
        }),
        ["apis"] if get => Ok(if discovery::wants_aggregated(&accept) {
            aggregated(discovery::aggregated(false))
        } else {
            json_response(StatusCode::OK, &discovery::api_group_list())
        }),
        ["openapi", "v2"] if get => Ok(if accept.contains("protobuf") {
            bytes_response(
                StatusCode::OK,
                Bytes::from(discovery::openapi_v2_protobuf()),
                discovery::OPENAPI_V2_PROTOBUF,
            )
        } else {
            json_response(StatusCode::OK, &discovery::openapi_v2_json())
        }),
        ["openapi", "v3"] if get => Ok(json_response(
            StatusCode::OK,
            &discovery::openapi_v3_index(),
        )),
        ["openapi", "v3", "api", v] if get => openapi(discovery::openapi_v3_group_version("", v)),
        ["openapi", "v3", "apis", g, v] if get => {
            openapi(discovery::openapi_v3_group_version(g, v))
        }
        ["_test", ..] => hooks::handle(st, req).await,
        ["api", "v1"] if get => Ok(json_response(
            StatusCode::OK,
            &discovery::resource_list("", "v1").expect("core v1 served"),
        )),
        ["apis", g] if get => discovery::api_group(g)
            .map(|d| json_response(StatusCode::OK, &d))
            .ok_or(ApiError::UnknownPath),
        ["apis", g, v] if get => discovery::resource_list(g, v)
            .map(|d| json_response(StatusCode::OK, &d))
            .ok_or(ApiError::UnknownPath),
        ["api", "v1", rest @ ..] => {
            let target = Target::parse("", "v1", rest)?;
            resource_request(st, req, target, &accept).await
        }
        ["apis", g, v, rest @ ..] => {
            let target = Target::parse(g, v, rest)?;
            resource_request(st, req, target, &accept).await
        }
        _ => Err(ApiError::UnknownPath),
    }
}

fn aggregated(doc: Value) -> Response {
    bytes_response(
        StatusCode::OK,
        Bytes::from(doc.to_string()),
        discovery::AGGREGATED_V2,
    )
}

fn openapi(doc: Option<Value>) -> Result<Response, ApiError> {
    doc.map(|d| json_response(StatusCode::OK, &d))
        .ok_or(ApiError::UnknownPath)
}

/// What a resource path names.
#[derive(Debug)]
struct Target {
    resource: &'static ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
    /// The deprecated `/watch/` path prefix.
    watch_path: bool,
}

impl Target {
    fn parse(group: &str, version: &str, mut rest: &[&str]) -> Result<Target, ApiError> {
        let watch_path = rest.first() == Some(&"watch");
        if watch_path {
            rest = &rest[1..];
        }
        let find = |plural: &str| resource::by_plural(group, version, plural);
        let (resource, namespace, tail) = match rest {
            ["namespaces", ns, plural, tail @ ..] if find(plural).is_some_and(|r| r.namespaced) => {
                (find(plural).expect("checked"), Some(ns.to_string()), tail)
            }
            [plural, tail @ ..] => (find(plural).ok_or(ApiError::UnknownPath)?, None, tail),
            [] => return Err(ApiError::UnknownPath),
        };
        let (name, status) = match tail {
            [] => (None, false),
            [name] => (Some(name.to_string()), false),
            [name, "status"] if resource.has_status => (Some(name.to_string()), true),
            _ => return Err(ApiError::UnknownPath),
        };
        if namespace.is_none() && resource.namespaced && name.is_some() {
            return Err(ApiError::UnknownPath);
        }
        Ok(Target {
            resource,
            namespace,
            name,
            status,
            watch_path,
        })
    }
}

fn write_options(q: &Query) -> Result<WriteOptions, ApiError> {
    let dry_run = match q.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "Invalid dryRun value: {other}; must be All"
            )));
        }
    };
    Ok(WriteOptions {
        dry_run,
        field_validation: FieldValidation::parse(q.get("fieldValidation").map(String::as_str))?,
    })
}

async fn read_body(req: Request) -> Result<(HeaderMap, Bytes), ApiError> {
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))?;
    Ok((headers, body))
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Decodes a JSON (or YAML) object body.
fn object_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    match content_type(headers).as_str() {
        "" | "application/json" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::BadRequest(format!("couldn't decode the request body as JSON: {e}"))
        }),
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml_ng::from_slice(body)
            .map_err(|e| {
                ApiError::BadRequest(format!("couldn't decode the request body as YAML: {e}"))
            }),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {other})"
        ))),
    }
}

fn written_response(w: Written, created_code: StatusCode) -> Response {
    let code = if w.created {
        created_code
    } else {
        StatusCode::OK
    };
    let mut r = bytes_response(code, w.object.json, "application/json");
    for warning in w.warnings {
        let text = format!(
            "299 - {}",
            serde_json::to_string(&warning).expect("strings encode")
        );
        if let Ok(v) = HeaderValue::from_str(&text) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

fn list_response(resource: &ResourceType, list: ListResult) -> Response {
    let mut meta = json!({"resourceVersion": list.resource_version.to_string()});
    if let Some(c) = &list.continue_token {
        meta["continue"] = json!(c);
    }
    let head = json!({"kind": resource.list_kind(), "apiVersion": resource.api_version(), "metadata": meta});
    let head = serde_json::to_vec(&head).expect("JSON values encode");
    // Splice the pre-encoded items in: `{…,"metadata":{…},"items":[…]}`.
    let mut out = Vec::with_capacity(
        head.len() + list.items.iter().map(|i| i.json.len() + 1).sum::<usize>() + 16,
    );
    out.extend_from_slice(&head[..head.len() - 1]);
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in list.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&item.json);
    }
    out.extend_from_slice(b"]}");
    bytes_response(StatusCode::OK, Bytes::from(out), "application/json")
}

fn single_response(resource: &ResourceType, obj: Stored, accept: &str, q: &Query) -> Response {
    if table::wanted(accept) {
        let rv = obj
            .value
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let t = table::render(
            resource,
            &[obj],
            rv,
            None,
            IncludeObject::parse(q.get("includeObject").map(String::as_str)),
        );
        return json_response(StatusCode::OK, &t);
    }
    bytes_response(StatusCode::OK, obj.json, "application/json")
}

fn parse_rv(q: &Query) -> Result<Option<u64>, ApiError> {
    match q.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {v}"))),
    }
}

async fn resource_request(
    st: &AppState,
    req: Request,
    t: Target,
    accept: &str,
) -> Result<Response, ApiError> {
    let q = parse_query(&req);
    let store = &st.store;
    let ns = t.namespace.as_deref();
    let r = t.resource;
    let method = req.method().clone();
    let is_watch = t.watch_path || flag(&q, "watch");
    match (method, t.name.clone()) {
        (Method::GET, name) if is_watch => {
            let mut fields =
                FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str), r)?;
            if let Some(name) = name {
                fields = FieldSelector::parse(&format!("metadata.name={name}"), r)?;
            }
            let labels = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))?;
            let resource_version = parse_rv(&q)?;
            if let Some(rv) = resource_version {
                watch::wait_for_version(store, rv).await?;
            }
            let timeout = match q.get("timeoutSeconds") {
                Some(s) => Some(Duration::from_secs(s.parse().map_err(|_| {
                    ApiError::BadRequest(format!("invalid timeoutSeconds: {s}"))
                })?)),
                None => None,
            };
            let wr = WatchRequest {
                resource: r,
                namespace: t.namespace.clone(),
                labels,
                fields,
                resource_version,
                bookmarks: flag(&q, "allowWatchBookmarks"),
                timeout,
                send_initial_events: flag(&q, "sendInitialEvents"),
                table: table::wanted(accept)
                    .then(|| IncludeObject::parse(q.get("includeObject").map(String::as_str))),
            };
            let body = Body::from_stream(watch::start(store.clone(), wr, st.bookmark_interval));
            let mut resp = Response::new(body);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(resp)
        }
        (Method::GET, None) => {
            store.counters.lists.fetch_add(1, Ordering::Relaxed);
            let labels = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))?;
            let fields =
                FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str), r)?;
            let limit = match q.get("limit") {
                Some(l) => Some(
                    l.parse::<usize>()
                        .map_err(|_| ApiError::BadRequest(format!("invalid limit: {l}")))?,
                ),
                None => None,
            };
            // resourceVersion: unset or "0" lists the current state; N with Exact lists
            // the state at N; N otherwise waits until the store has reached N.
            let exact_version = match (
                q.get("resourceVersionMatch").map(String::as_str),
                parse_rv(&q)?,
            ) {
                (None | Some(""), rv) | (Some("NotOlderThan"), rv) => {
                    if let Some(rv) = rv {
                        watch::wait_for_version(store, rv).await?;
                    }
                    None
                }
                (Some("Exact"), Some(rv)) => {
                    watch::wait_for_version(store, rv).await?;
                    Some(rv)
                }
                (Some(m), _) => {
                    return Err(ApiError::BadRequest(format!(
                        "resourceVersionMatch \"{m}\" needs a resourceVersion other than 0, or is not one of Exact, NotOlderThan"
                    )));
                }
            };
            let opts = ListOptions {
                limit,
                continue_token: q.get("continue").map(String::as_str),
                exact_version,
            };
            let list = store.list(r, ns, &labels, &fields, &opts)?;
            if table::wanted(accept) {
                let t = table::render(
                    r,
                    &list.items,
                    list.resource_version,
                    list.continue_token.as_deref(),
                    IncludeObject::parse(q.get("includeObject").map(String::as_str)),
                );
                return Ok(json_response(StatusCode::OK, &t));
            }
            Ok(list_response(r, list))
        }
        (Method::GET, Some(name)) => {
            store.counters.gets.fetch_add(1, Ordering::Relaxed);
            Ok(single_response(r, store.get(r, ns, &name)?, accept, &q))
        }
        (Method::POST, None) => {
            if r.namespaced && ns.is_none() {
                return Err(ApiError::MethodNotAllowed(
                    "create needs a namespace in the path".into(),
                ));
            }
            let opts = write_options(&q)?;
            let (headers, body) = read_body(req).await?;
            let obj = object_body(&headers, &body)?;
            Ok(written_response(
                store.create(r, ns, &obj, opts)?,
                StatusCode::CREATED,
            ))
        }
        (Method::PUT, Some(name)) => {
            let opts = write_options(&q)?;
            let (headers, body) = read_body(req).await?;
            let obj = object_body(&headers, &body)?;
            Ok(written_response(
                store.replace(r, ns, &name, &obj, t.status, opts)?,
                StatusCode::CREATED,
            ))
        }
        (Method::PATCH, Some(name)) => {
            let opts = write_options(&q)?;
            let (headers, body) = read_body(req).await?;
            let patch_type = match content_type(&headers).as_str() {
                "application/merge-patch+json" => PatchType::Merge,
                "application/strategic-merge-patch+json" => PatchType::Strategic,
                "application/json-patch+json" => PatchType::Json,
                "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                    return Err(ApiError::UnsupportedMediaType("server-side apply is not supported by this test apiserver; use create/replace or a merge patch".into()));
                }
                other => {
                    return Err(ApiError::UnsupportedMediaType(format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {other})"
                    )));
                }
            };
            Ok(written_response(
                store.patch(r, ns, &name, patch_type, &body, t.status, opts)?,
                StatusCode::OK,
            ))
        }
        (Method::DELETE, Some(name)) => {
            let mut opts = write_options(&q)?;
            let (_, body) = read_body(req).await?;
            let mut pre = Preconditions::default();
            if !body.is_empty() {
                let options: Value = serde_json::from_slice(&body).map_err(|e| {
                    ApiError::BadRequest(format!("couldn't decode DeleteOptions: {e}"))
                })?;
                pre.uid = options
                    .pointer("/preconditions/uid")
                    .and_then(Value::as_str)
                    .map(String::from);
                pre.resource_version = options
                    .pointer("/preconditions/resourceVersion")
                    .and_then(Value::as_str)
                    .map(String::from);
                if options
                    .get("dryRun")
                    .and_then(Value::as_array)
                    .is_some_and(|d| d.iter().any(|x| x == "All"))
                {
                    opts.dry_run = true;
                }
            }
            let deleted = store.delete(r, ns, &name, &pre, opts.dry_run)?;
            Ok(bytes_response(
                StatusCode::OK,
                deleted.json,
                "application/json",
            ))
        }
        (Method::DELETE, None) => {
            let opts = write_options(&q)?;
            let labels = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))?;
            let fields =
                FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str), r)?;
            let list = store.delete_collection(r, ns, &labels, &fields, opts.dry_run);
            if list.items.is_empty() {
                return Ok(json_response(StatusCode::OK, &success_status(None)));
            }
            Ok(list_response(r, list))
        }
        (m, _) => Err(ApiError::MethodNotAllowed(format!(
            "the server does not allow this method on the requested resource ({m})"
        ))),
    }
}
