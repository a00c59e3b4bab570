//! Read models: what the store reports about jobs, workers and the leaderboard.

use serde::Serialize;
use utoipa::ToSchema;

use crate::stage::StageId;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting at its stage for a worker.
    Open,
    /// Held by a worker until its lease expires.
    Leased,
    /// Finished: passed the last enabled stage; its final output is kept.
    Done,
    /// Given up on: a stage reported a fatal error.
    Failed,
}

impl JobState {
    /// All states.
    pub const ALL: [JobState; 4] = [Self::Open, Self::Leased, Self::Done, Self::Failed];

    /// The name stored in the database and used in the JSON API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Leased => "leased",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    /// Parses a stored state name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

/// One page of a longer listing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    /// How many items match in all.
    pub total: i64,
    /// Index of the first item of this page.
    pub offset: i64,
    /// The items of this page.
    pub items: Vec<T>,
}

/// A worker as the dashboard shows it (never its token, which is its credential).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkerView {
    /// Human-readable name, e.g. `quiet-otter-17`.
    pub display_name: String,
    /// The stage the worker serves.
    pub stage: StageId,
    /// Owner's nickname (leaderboard key).
    pub nickname: String,
    /// Last progress text the worker reported.
    pub progress: String,
    /// Jobs this worker completed.
    pub jobs_completed: i64,
    /// Registration time, Unix ms.
    pub first_seen: i64,
    /// Last request, Unix ms.
    pub last_seen: i64,
    /// The job it holds, if any.
    pub job: Option<i64>,
}

/// A job in a listing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobSummary {
    /// Job number (1..N in load order).
    pub id: i64,
    /// Current stage.
    pub stage: StageId,
    /// Current state.
    pub state: JobState,
    /// Claims at the current stage.
    pub attempts: i32,
    /// Invalid-input reports at the current stage.
    pub flags: i32,
    /// Last change, Unix ms.
    pub updated_at: i64,
    /// Why the job failed, if it did.
    pub error: Option<String>,
}

/// One thing that happened to a job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobEvent {
    /// What happened: `claim`, `complete`, `flag`, `sent_back`, `release` or `expire`.
    pub kind: String,
    /// The stage it happened at.
    pub stage: StageId,
    /// The worker's display name, when a worker did it.
    pub worker: Option<String>,
    /// When, Unix ms.
    pub at: i64,
    /// Extra detail (a flag reason, the stage a job was sent back to).
    pub detail: Option<String>,
}

/// Everything about one job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobDetail {
    /// The job's current position.
    pub summary: JobSummary,
    /// The input of each stage `a`..`e` (the output of the stage before), where set.
    pub data: [Option<String>; 5],
    /// The final output, once done.
    pub result: Option<String>,
    /// Display name of the worker holding the lease, if leased.
    pub leased_to: Option<String>,
    /// When the lease expires, Unix ms, if leased.
    pub lease_expires_at: Option<i64>,
    /// When the job was finished, Unix ms.
    pub completed_at: Option<i64>,
    /// The job's history, oldest first.
    pub events: Vec<JobEvent>,
}

/// A leaderboard row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LeaderboardEntry {
    /// The owner's nickname.
    pub nickname: String,
    /// Jobs completed at any stage by workers with that nickname.
    pub jobs_completed: i64,
}
