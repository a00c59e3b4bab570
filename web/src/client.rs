//! A typed, blocking client for the worker API (`/api/*`), speaking exactly what the
//! `distcompute-client` Python library speaks.
//!
//! ```no_run
//! use cascade_web::{ClientError, TrackerClient};
//!
//! let client = TrackerClient::new("http://127.0.0.1:8080");
//! let mut worker = client.register("alice", "a")?;
//! loop {
//!     match worker.new_job() {
//!         Ok(job) => worker.complete_job(&format!("processed {}", job.data))?,
//!         Err(ClientError::NoJob(_)) => break,
//!         Err(e) => return Err(e),
//!     }
//! }
//! worker.bye();
//! # Ok::<(), ClientError>(())
//! ```

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What can go wrong talking to a tracker. The variants follow the protocol's status mapping.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// 400: the request was refused as invalid (bad or disabled stage).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 403: no job to hand out, or no job held to complete or flag.
    #[error("no job: {0}")]
    NoJob(String),
    /// 404: the tracker does not know this worker (it left or was swept).
    #[error("unknown worker: {0}")]
    UnknownWorker(String),
    /// Any other status.
    #[error("tracker answered {status}: {body}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Response text.
        body: String,
    },
    /// The tracker could not be reached or the connection broke; retrying may help.
    #[error("transport error: {0}")]
    Transport(String),
    /// The answer was not what the protocol promises.
    #[error("unexpected answer: {0}")]
    Decode(String),
}

impl ClientError {
    /// Whether the failure is a connection problem worth retrying.
    pub fn is_transport(&self) -> bool {
        matches!(self, Self::Transport(_))
    }
}

/// Keep-alive connections kept open per client (ureq keeps 3 per host by default, so more
/// threads sharing a client would each open a new TCP connection per request).
const MAX_IDLE_CONNECTIONS: usize = 256;
/// Longest wait for a TCP connection to the tracker.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for each of: sending a request, its body, receiving the answer, its body.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);
/// Read and write buffer of each connection. Worker API messages are small; ureq's default of
/// 128 KiB per direction costs more to allocate and clear than the request itself. Longer
/// bodies stream through the buffer.
const CONNECTION_BUFFER_BYTES: usize = 16 * 1024;

/// A connection to one tracker (keeps connections alive between requests; cheap to clone).
#[derive(Debug, Clone)]
pub struct TrackerClient {
    base: String,
    agent: ureq::Agent,
}

/// A registered worker: its token and names, and the calls a worker makes.
#[derive(Debug, Clone)]
pub struct WorkerSession {
    client: TrackerClient,
    /// The worker's credential.
    pub token: String,
    /// The worker's display name.
    pub display_name: String,
    /// The project name.
    pub project: String,
    /// The display name of the worker's stage.
    pub stage_name: String,
}

/// A job handed out by `newJob`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Job {
    /// The job's input at this stage (opaque text; `<!json!>`-prefixed for JSON).
    pub data: String,
    /// The job number.
    pub number: i64,
}

#[derive(Deserialize)]
struct NewWorkerAnswer {
    token: String,
    display_name: String,
    project: String,
    stage_name: String,
}

#[derive(Serialize)]
struct TokenBody<'a> {
    token: &'a str,
}

#[derive(Serialize)]
struct ProgressBody<'a> {
    token: &'a str,
    progress: &'a str,
}

#[derive(Serialize)]
struct FlagBody<'a> {
    token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

#[derive(Serialize)]
struct RetryBody<'a> {
    token: &'a str,
    retry_after_ms: u64,
    reason: &'a str,
}

#[derive(Serialize)]
struct FailBody<'a> {
    token: &'a str,
    error: &'a str,
}

#[derive(Serialize)]
struct CompleteBody<'a> {
    token: &'a str,
    data: &'a str,
}

impl TrackerClient {
    /// A client for the tracker at `base_url` (e.g. `http://127.0.0.1:8080`; a trailing `/` is
    /// ignored). A request fails when connecting takes over 10 s or when sending it or its
    /// answer stalls for 60 s. Clones share one pool of keep-alive connections, large enough for
    /// 256 threads calling at once.
    pub fn new(base_url: &str) -> Self {
        // Per-phase timeouts, no overall one: with an overall timeout ureq resolves the host
        // name of every request on a thread of its own, even for a pooled connection.
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_send_request(Some(TRANSFER_TIMEOUT))
            .timeout_send_body(Some(TRANSFER_TIMEOUT))
            .timeout_recv_response(Some(TRANSFER_TIMEOUT))
            .timeout_recv_body(Some(TRANSFER_TIMEOUT))
            .max_idle_connections(MAX_IDLE_CONNECTIONS)
            .max_idle_connections_per_host(MAX_IDLE_CONNECTIONS)
            .input_buffer_size(CONNECTION_BUFFER_BYTES)
            .output_buffer_size(CONNECTION_BUFFER_BYTES)
            .build()
            .into();
        Self { base: base_url.trim_end_matches('/').to_owned(), agent }
    }

    /// The tracker's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Registers a worker for `stage` (a letter `a`..`e`) under `nickname`.
    ///
    /// # Errors
    /// [`ClientError::BadRequest`] for an invalid or disabled stage; transport errors.
    pub fn register(&self, nickname: &str, stage: &str) -> Result<WorkerSession, ClientError> {
        let request = self
            .agent
            .get(format!("{}/api/new", self.base))
            .query("nickname", nickname)
            .query("stage", stage);
        let answer: NewWorkerAnswer = decode_json(request.call())?;
        Ok(WorkerSession {
            client: self.clone(),
            token: answer.token,
            display_name: answer.display_name,
            project: answer.project,
            stage_name: answer.stage_name,
        })
    }

    /// Jobs waiting at `stage`.
    ///
    /// # Errors
    /// [`ClientError::BadRequest`] for an invalid stage; transport errors.
    pub fn job_count(&self, stage: &str) -> Result<i64, ClientError> {
        let request = self.agent.get(format!("{}/api/jobCount", self.base)).query("stage", stage);
        let text = decode_text(request.call())?;
        text.trim().parse().map_err(|_| ClientError::Decode(format!("job count {text:?}")))
    }

    fn post_text(&self, path: &str, body: &impl Serialize) -> Result<String, ClientError> {
        decode_text(self.agent.post(format!("{}{path}", self.base)).send_json(body))
    }

    fn post_json<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T, ClientError> {
        decode_json(self.agent.post(format!("{}{path}", self.base)).send_json(body))
    }
}

impl WorkerSession {
    /// Claims a job of the worker's stage (any job still held is given back first).
    ///
    /// # Errors
    /// [`ClientError::NoJob`] when the stage has nothing open; [`ClientError::UnknownWorker`].
    pub fn new_job(&self) -> Result<Job, ClientError> {
        self.client.post_json("/api/newJob", &TokenBody { token: &self.token })
    }

    /// Completes the held job with `data`, which becomes the next stage's input.
    ///
    /// # Errors
    /// [`ClientError::NoJob`] when no job is held or the lease was lost;
    /// [`ClientError::UnknownWorker`].
    pub fn complete_job(&self, data: &str) -> Result<(), ClientError> {
        self.client
            .post_text("/api/completeJob", &CompleteBody { token: &self.token, data })
            .map(drop)
    }

    /// Reports progress (also a heartbeat that extends the lease).
    ///
    /// # Errors
    /// [`ClientError::UnknownWorker`].
    pub fn log(&self, progress: &str) -> Result<(), ClientError> {
        self.client
            .post_text("/api/updateProgress", &ProgressBody { token: &self.token, progress })
            .map(drop)
    }

    /// Reports the held job's input as invalid and gives the job up.
    ///
    /// # Errors
    /// [`ClientError::NoJob`] when no job is held; [`ClientError::UnknownWorker`].
    pub fn flag_invalid_data(&self) -> Result<(), ClientError> {
        self.flag(None)
    }

    /// Like [`WorkerSession::flag_invalid_data`], saying why; the reason shows on the dashboard
    /// and in the job's history.
    ///
    /// # Errors
    /// [`ClientError::NoJob`] when no job is held; [`ClientError::UnknownWorker`].
    pub fn flag_invalid_data_because(&self, reason: &str) -> Result<(), ClientError> {
        self.flag(Some(reason))
    }

    fn flag(&self, reason: Option<&str>) -> Result<(), ClientError> {
        self.client.post_text("/api/flagInvalidData", &FlagBody { token: &self.token, reason }).map(drop)
    }

    /// Gives the held job back after a transient failure, to be retried after `after`.
    ///
    /// # Errors
    /// [`ClientError::NoJob`] when no job is held; [`ClientError::UnknownWorker`].
    pub fn retry_later(&self, after: Duration, reason: &str) -> Result<(), ClientError> {
        let retry_after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        self.client
            .post_text("/v1/lease/retry", &RetryBody { token: &self.token, retry_after_ms, reason })
            .map(drop)
    }

    /// Marks the held job failed with `error`.
    ///
    /// # Errors
    /// [`ClientError::NoJob`] when no job is held; [`ClientError::UnknownWorker`].
    pub fn fail(&self, error: &str) -> Result<(), ClientError> {
        self.client.post_text("/v1/lease/fail", &FailBody { token: &self.token, error }).map(drop)
    }

    /// Gives the held job back at once, staying registered.
    ///
    /// # Errors
    /// [`ClientError::NoJob`] when no job is held; [`ClientError::UnknownWorker`].
    pub fn release(&self) -> Result<(), ClientError> {
        self.client.post_text("/v1/lease/release", &TokenBody { token: &self.token }).map(drop)
    }

    /// Whether the tracker still knows this worker (a heartbeat too).
    ///
    /// # Errors
    /// Transport errors.
    pub fn is_alive(&self) -> Result<bool, ClientError> {
        let text = self.client.post_text("/api/validateWorker", &TokenBody { token: &self.token })?;
        Ok(text == "True")
    }

    /// Leaves: the held job is re-opened at once. Errors are ignored (the worker may already be
    /// gone), as the Python client does.
    pub fn bye(&self) {
        if let Err(e) = self.client.post_text("/api/bye", &TokenBody { token: &self.token }) {
            tracing::debug!(error = %e, "bye was not acknowledged");
        }
    }
}

fn read_answer(
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<String, ClientError> {
    let mut response = result.map_err(|e| ClientError::Transport(e.to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    match status {
        200 => Ok(body),
        400 => Err(ClientError::BadRequest(body)),
        403 => Err(ClientError::NoJob(body)),
        404 => Err(ClientError::UnknownWorker(body)),
        _ => Err(ClientError::Server { status, body }),
    }
}

fn decode_text(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<String, ClientError> {
    read_answer(result)
}

fn decode_json<T: DeserializeOwned>(
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<T, ClientError> {
    let body = read_answer(result)?;
    serde_json::from_str(&body).map_err(|e| ClientError::Decode(format!("{e}: {body}")))
}
