//! A typed, blocking client for the worker API: `/api/*`, exactly as the `distcompute-client`
//! Python library speaks it, and Cascade's `/v1/lease/*` calls. Requests and answers are the
//! types of [`cascade_tracker::protocol`]. [`TrackerClient`] is the [`Leases`] of remote
//! workers; [`WorkerSession`] is one registered worker, for scripts and tests.
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

use cascade_tracker::protocol::{
    ClaimBody, ClaimedJob, CompleteAnswer, CompleteBody, Completion, FailBody, FlagBody, HeldLease, JobId,
    LeaseCompleteBody, LeaseError, Leases, NewJobAnswer, ProgressBody, Registration, ReleaseBody, RetryBody, TokenBody,
    WorkerToken,
};
use cascade_tracker::StageId;
use serde::de::DeserializeOwned;
use serde::Serialize;

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
    pub token: WorkerToken,
    /// The worker's display name.
    pub display_name: String,
    /// The project name.
    pub project: String,
    /// The display name of the worker's stage.
    pub stage_name: String,
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
        let answer: Registration = decode_json(request.call())?;
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
    pub fn new_job(&self) -> Result<NewJobAnswer, ClientError> {
        self.client.post_json("/api/newJob", &TokenBody { token: self.token.clone() })
    }

    /// Completes the held job with `data`, which becomes the next stage's input.
    ///
    /// # Errors
    /// [`ClientError::NoJob`] when no job is held or the lease was lost;
    /// [`ClientError::UnknownWorker`].
    pub fn complete_job(&self, data: &str) -> Result<(), ClientError> {
        self.client
            .post_text("/api/completeJob", &CompleteBody { token: self.token.clone(), data: data.to_owned() })
            .map(drop)
    }

    /// Reports progress (also a heartbeat that extends the lease).
    ///
    /// # Errors
    /// [`ClientError::UnknownWorker`].
    pub fn log(&self, progress: &str) -> Result<(), ClientError> {
        self.client
            .post_text("/api/updateProgress", &ProgressBody { token: self.token.clone(), progress: progress.to_owned() })
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
        let body = FlagBody { token: self.token.clone(), reason: reason.map(str::to_owned), number: None, lease: None };
        self.client.post_text("/api/flagInvalidData", &body).map(drop)
    }

    /// Gives the held job back after a transient failure, to be retried after `after`.
    ///
    /// # Errors
    /// [`ClientError::NoJob`] when no job is held; [`ClientError::UnknownWorker`].
    pub fn retry_later(&self, after: Duration, reason: &str) -> Result<(), ClientError> {
        self.client.send_retry(&self.token, None, after, reason)
    }

    /// Marks the held job failed with `error`.
    ///
    /// # Errors
    /// [`ClientError::NoJob`] when no job is held; [`ClientError::UnknownWorker`].
    pub fn fail(&self, error: &str) -> Result<(), ClientError> {
        self.client.send_fail(&self.token, None, error)
    }

    /// Gives the held job back at once, staying registered (the attempt does not count).
    ///
    /// # Errors
    /// [`ClientError::NoJob`] when no job is held; [`ClientError::UnknownWorker`].
    pub fn release(&self) -> Result<(), ClientError> {
        self.client.send_release(&self.token, None)
    }

    /// Whether the tracker still knows this worker (a heartbeat too).
    ///
    /// # Errors
    /// Transport errors.
    pub fn is_alive(&self) -> Result<bool, ClientError> {
        self.client.is_alive(&self.token)
    }

    /// Leaves: the held job is re-opened at once. Errors are ignored (the worker may already be
    /// gone), as the Python client does.
    pub fn bye(&self) {
        if let Err(e) = self.client.post_text("/api/bye", &TokenBody { token: self.token.clone() }) {
            tracing::debug!(error = %e, "bye was not acknowledged");
        }
    }
}

impl TrackerClient {
    fn send_retry(&self, token: &WorkerToken, held: Option<HeldLease>, after: Duration, reason: &str) -> Result<(), ClientError> {
        let retry_after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        let (number, lease) = (held.map(|h| h.number), held.map(|h| h.lease));
        let body = RetryBody { token: token.clone(), number, lease, retry_after_ms, reason: reason.to_owned() };
        self.post_text("/v1/lease/retry", &body).map(drop)
    }

    fn send_fail(&self, token: &WorkerToken, held: Option<HeldLease>, error: &str) -> Result<(), ClientError> {
        let (number, lease) = (held.map(|h| h.number), held.map(|h| h.lease));
        let body = FailBody { token: token.clone(), number, lease, error: error.to_owned() };
        self.post_text("/v1/lease/fail", &body).map(drop)
    }

    fn send_release(&self, token: &WorkerToken, held: Option<HeldLease>) -> Result<(), ClientError> {
        let (number, lease) = (held.map(|h| h.number), held.map(|h| h.lease));
        self.post_text("/v1/lease/release", &ReleaseBody { token: token.clone(), number, lease }).map(drop)
    }

    fn is_alive(&self, token: &WorkerToken) -> Result<bool, ClientError> {
        let text = self.post_text("/api/validateWorker", &TokenBody { token: token.clone() })?;
        Ok(text == "True")
    }
}

impl From<ClientError> for LeaseError {
    /// A 403 to an outcome means the lease is gone; 400/413/422 are refusals for good;
    /// everything else may pass.
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::UnknownWorker(_) => Self::UnknownWorker,
            ClientError::NoJob(_) => Self::LeaseLost,
            ClientError::BadRequest(message) => Self::Refused(message),
            ClientError::Server { status: status @ (413 | 422), body } => Self::Refused(format!("{status}: {body}")),
            other @ (ClientError::Server { .. } | ClientError::Transport(_) | ClientError::Decode(_)) => {
                Self::Unavailable(other.to_string())
            }
        }
    }
}

/// The tracker as the [`Leases`] of remote workers (`cascade worker`): claims and completions
/// go through `/v1/lease/*` so a worker learns its attempt number and lease, everything else
/// through the distcompute calls. A remote tracker always leases for its idle timeout.
impl Leases for TrackerClient {
    fn register(&self, nickname: &str, stage: StageId, _lease_ttl: Option<Duration>) -> Result<Registration, LeaseError> {
        let session = TrackerClient::register(self, nickname, stage.letter())?;
        Ok(Registration {
            token: session.token,
            display_name: session.display_name,
            project: session.project,
            stage_name: session.stage_name,
        })
    }

    fn claim(&self, worker: &WorkerToken, only: Option<JobId>) -> Result<Option<ClaimedJob>, LeaseError> {
        match self.post_json("/v1/lease/claim", &ClaimBody { token: worker.clone(), number: only }) {
            Ok(job) => Ok(Some(job)),
            Err(ClientError::NoJob(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn complete(
        &self,
        worker: &WorkerToken,
        held: HeldLease,
        output: &str,
        claim_next: bool,
    ) -> Result<(Completion, Option<ClaimedJob>), LeaseError> {
        let body = LeaseCompleteBody {
            token: worker.clone(),
            number: held.number,
            lease: held.lease,
            data: output.to_owned(),
            claim_next,
        };
        let answer: CompleteAnswer = self.post_json("/v1/lease/complete", &body)?;
        Ok((answer.completion, answer.next))
    }

    fn flag(&self, worker: &WorkerToken, held: HeldLease, reason: &str) -> Result<(), LeaseError> {
        let body = FlagBody {
            token: worker.clone(),
            reason: Some(reason.to_owned()),
            number: Some(held.number),
            lease: Some(held.lease),
        };
        Ok(self.post_text("/api/flagInvalidData", &body).map(drop)?)
    }

    fn retry_later(&self, worker: &WorkerToken, held: HeldLease, after: Duration, reason: &str) -> Result<(), LeaseError> {
        Ok(self.send_retry(worker, Some(held), after, reason)?)
    }

    fn fail(&self, worker: &WorkerToken, held: HeldLease, error: &str) -> Result<(), LeaseError> {
        Ok(self.send_fail(worker, Some(held), error)?)
    }

    fn release(&self, worker: &WorkerToken, held: HeldLease) -> Result<(), LeaseError> {
        Ok(self.send_release(worker, Some(held))?)
    }

    fn heartbeat(&self, worker: &WorkerToken, progress: Option<&str>) -> Result<(), LeaseError> {
        match progress {
            Some(text) => {
                let body = ProgressBody { token: worker.clone(), progress: text.to_owned() };
                Ok(self.post_text("/api/updateProgress", &body).map(drop)?)
            }
            None if self.is_alive(worker)? => Ok(()),
            None => Err(LeaseError::UnknownWorker),
        }
    }

    fn bye(&self, worker: &WorkerToken) -> Result<(), LeaseError> {
        Ok(self.post_text("/api/bye", &TokenBody { token: worker.clone() }).map(drop)?)
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
