//! A blocking client for the operator API (`/v1/admin/*`), which `cascade jobs` and
//! `cascade stage` use with `--tracker`.

use cascade_tracker::{AdminAction, JobSelection, StageId};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::admin::{AddJobsBody, AddedJobs, ChangedJobs, StagePause};
use crate::client::ClientError;

/// A connection to one tracker's admin API, presenting an admin token.
#[derive(Clone)]
pub struct AdminClient {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient").field("base", &self.base).finish_non_exhaustive()
    }
}

impl AdminClient {
    /// A client for the tracker at `base_url` that presents `token` as its bearer token.
    pub fn new(base_url: &str, token: &str) -> Self {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Self { base: base_url.trim_end_matches('/').to_owned(), token: token.to_owned(), agent }
    }

    /// Adds jobs after the last one, skipping inputs already there.
    ///
    /// # Errors
    /// [`ClientError::Server`] with the tracker's status and message (401: wrong token; 404:
    /// the admin API is disabled); transport errors.
    pub fn add_jobs(&self, jobs: &[String]) -> Result<AddedJobs, ClientError> {
        self.post("/v1/admin/jobs", &AddJobsBody { jobs: jobs.to_vec() })
    }

    /// Re-opens the failed jobs of `selection`; returns how many.
    ///
    /// # Errors
    /// As [`add_jobs`](Self::add_jobs).
    pub fn requeue(&self, selection: &JobSelection) -> Result<usize, ClientError> {
        Ok(self.post::<ChangedJobs>("/v1/admin/jobs/requeue", selection)?.jobs)
    }

    /// Cancels the unfinished jobs of `selection`; returns how many.
    ///
    /// # Errors
    /// As [`add_jobs`](Self::add_jobs).
    pub fn cancel(&self, selection: &JobSelection) -> Result<usize, ClientError> {
        Ok(self.post::<ChangedJobs>("/v1/admin/jobs/cancel", selection)?.jobs)
    }

    /// Pauses `stage`; returns whether that changed anything.
    ///
    /// # Errors
    /// As [`add_jobs`](Self::add_jobs).
    pub fn pause(&self, stage: StageId) -> Result<bool, ClientError> {
        Ok(self.post::<StagePause>(&format!("/v1/admin/stages/{stage}/pause"), &())?.changed)
    }

    /// Resumes `stage`; returns whether that changed anything.
    ///
    /// # Errors
    /// As [`add_jobs`](Self::add_jobs).
    pub fn resume(&self, stage: StageId) -> Result<bool, ClientError> {
        Ok(self.post::<StagePause>(&format!("/v1/admin/stages/{stage}/resume"), &())?.changed)
    }

    /// The last `limit` operator actions, newest first.
    ///
    /// # Errors
    /// As [`add_jobs`](Self::add_jobs).
    pub fn actions(&self, limit: i64) -> Result<Vec<AdminAction>, ClientError> {
        let request = self
            .agent
            .get(format!("{}/v1/admin/actions", self.base))
            .query("limit", limit.to_string())
            .header("Authorization", format!("Bearer {}", self.token));
        decode(request.call())
    }

    fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T, ClientError> {
        let request = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token));
        decode(request.send_json(body))
    }
}

/// The answer's JSON, or the tracker's status and message.
fn decode<T: DeserializeOwned>(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<T, ClientError> {
    let mut response = result.map_err(|e| ClientError::Transport(e.to_string()))?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().map_err(|e| ClientError::Transport(e.to_string()))?;
    if status != 200 {
        return Err(ClientError::Server { status, body });
    }
    serde_json::from_str(&body).map_err(|e| ClientError::Decode(format!("{e}: {body}")))
}
