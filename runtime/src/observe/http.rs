//! The instance's HTTP server (`http.listen`): `/metrics` for Prometheus,
//! `/healthz` and `/ready` for probes, `/api/status` as JSON and the
//! status page (`/`) that shows it. It runs on a
//! thread and a tokio runtime of its own, off the processing threads, so a
//! slow or hung client never holds a record up; it stops with the run.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::oneshot;
use weir_core::{Error, Result};

use super::metrics::METRICS;
use super::query::{self, Answer};
use super::status::{self, Phase};

/// A running server; dropping it stops it.
pub(crate) struct Server {
    /// The address it listens on.
    pub(crate) address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Listens on `listen` and serves from a thread of its own.
    ///
    /// # Errors
    /// When the address cannot be bound (in use, not local): a
    /// configuration error naming `http.listen`.
    pub(crate) fn start(listen: SocketAddr) -> Result<Server> {
        let refused = |e: std::io::Error| {
            Error::Config(format!(
                "cannot serve HTTP on {listen} (http.listen): {e}; choose another address or port, or port 0 for a free one"
            ))
        };
        let listener = std::net::TcpListener::bind(listen).map_err(refused)?;
        listener.set_nonblocking(true).map_err(refused)?;
        let addr = listener.local_addr().map_err(refused)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("cannot start the HTTP server's runtime", "", e))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("weir-http".into())
            .spawn(move || {
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::warn!("the HTTP server cannot listen on {addr}: {e}");
                            return;
                        }
                    };
                    tokio::select! {
                        served = axum::serve(listener, routes()) => {
                            if let Err(e) = served {
                                tracing::warn!("the HTTP server on {addr} stopped: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                });
                // Connections still open (a hung client) are dropped.
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .map_err(|e| Error::io("cannot start the HTTP server's thread", "", e))?;
        tracing::info!(
            address = %addr,
            "serving http://{addr}/metrics, /healthz, /ready, /api/status and the status page at /"
        );
        Ok(Server {
            address: addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn routes() -> Router {
    Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/ready", get(ready))
        .route("/api/status", get(api_status))
        .route("/api/state/{store}/{key}", get(state))
}

/// The status page: one self-contained HTML file, which reads `/api/status`.
async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn metrics() -> Response {
    match METRICS.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render the metrics: {e}\n"),
        )
            .into_response(),
    }
}

/// The process is alive: it answers.
async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

/// Every held task is running, none restoring: 200, else 503 with the phase.
async fn ready() -> Response {
    let s = status::snapshot();
    let ready = s.phase == Phase::Running;
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(serde_json::json!({ "ready": ready, "phase": s.phase, "tasks": s.tasks })),
    )
        .into_response()
}

/// An interactive query: the committed value of `key` in state `store`.
async fn state(Path((store, key)): Path<(String, String)>) -> Response {
    let answer = tokio::task::spawn_blocking(move || query::query(&store, &key)).await;
    let error = |code: StatusCode, body: serde_json::Value| (code, Json(body)).into_response();
    match answer {
        Ok(Answer::Found(found)) => Json(found).into_response(),
        Ok(Answer::Missing { key_group, epoch }) => error(
            StatusCode::NOT_FOUND,
            serde_json::json!({
                "error": "the key has no committed value",
                "key_group": key_group,
                "epoch": epoch,
            }),
        ),
        Ok(Answer::Elsewhere {
            key_group,
            shard,
            owner,
        }) => error(
            StatusCode::NOT_FOUND,
            serde_json::json!({
                "error": "another instance of the application holds this key's group: ask it",
                "key_group": key_group,
                "shard": shard,
                "owner": owner,
            }),
        ),
        Ok(Answer::Unavailable { phase }) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(serde_json::json!({
                "error": "the instance is restoring its state or between two runs; ask again",
                "phase": phase,
            })),
        )
            .into_response(),
        Ok(Answer::NoStore(why)) => {
            error(StatusCode::NOT_FOUND, serde_json::json!({ "error": why }))
        }
        Ok(Answer::BadKey(why)) => {
            error(StatusCode::BAD_REQUEST, serde_json::json!({ "error": why }))
        }
        Ok(Answer::Failed(why)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({ "error": why }),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({ "error": format!("the query failed: {e}") }),
        ),
    }
}

async fn api_status() -> Response {
    Json(status::snapshot()).into_response()
}
