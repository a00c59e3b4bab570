//! Operator actions on a running project: requeue failed jobs, cancel jobs, pause and resume a
//! stage, add jobs. Each is one write transaction that also appends to the `admin_actions` log
//! (who, what, how many), which the dashboard and `cascade jobs log` show.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::jobs::append_in;
use super::views::JobState;
use super::{event, Appended, JobStore};
use crate::db::schema::{admin_actions, jobs, paused_stages};
use crate::db::{per_backend, DbConnection, WriteTx};
use crate::error::TrackerError;
use crate::stage::StageId;

/// Job numbers per `UPDATE … WHERE id IN (…)` (well under SQLite's bind-variable limit).
const ID_CHUNK: usize = 1000;

/// The jobs an operator action applies to: those at `stage` (any stage when `None`), and of
/// those only `numbers` when it is not empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobSelection {
    /// Only jobs at this stage.
    #[serde(default)]
    pub stage: Option<StageId>,
    /// Only these job numbers (all matching jobs when empty).
    #[serde(default, deserialize_with = "crate::protocol::whole_numbers")]
    pub numbers: Vec<i64>,
}

impl JobSelection {
    /// Whether the selection names neither a stage nor jobs (it then means every job).
    pub fn is_everything(&self) -> bool {
        self.stage.is_none() && self.numbers.is_empty()
    }

    /// How the action log describes the selection, e.g. `stage b, jobs 4, 9`.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(stage) = self.stage {
            parts.push(format!("stage {stage}"));
        }
        if !self.numbers.is_empty() {
            let shown: Vec<String> = self.numbers.iter().take(20).map(i64::to_string).collect();
            let more = self.numbers.len().saturating_sub(shown.len());
            let tail = if more > 0 { format!(" and {more} more") } else { String::new() };
            parts.push(format!("jobs {}{tail}", shown.join(", ")));
        }
        if parts.is_empty() {
            "all jobs".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// One entry of the operator action log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AdminAction {
    /// When, Unix ms.
    pub at: i64,
    /// Who: the caller's address for the admin API, `cli` plus the user for the command line.
    pub actor: String,
    /// What: `pause`, `resume`, `requeue`, `cancel` or `add`.
    pub action: String,
    /// On what, and with what effect, e.g. `stage b, jobs 4, 9: 2 jobs`.
    pub detail: String,
}

/// A stage an operator paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PausedStage {
    /// The stage.
    pub stage: StageId,
    /// When it was paused, Unix ms.
    pub paused_at: i64,
    /// Who paused it.
    pub paused_by: String,
}

/// Appends an entry to the action log.
fn log_action(conn: &mut DbConnection, at: i64, actor: &str, action: &str, detail: &str) -> Result<(), TrackerError> {
    let insert = diesel::insert_into(admin_actions::table).values((
        admin_actions::at.eq(at),
        admin_actions::actor.eq(actor),
        admin_actions::action.eq(action),
        admin_actions::detail.eq(detail),
    ));
    per_backend!(conn, |c| insert.execute(c))?;
    Ok(())
}

/// The numbers and stages of the jobs in `selection` that are in one of `states`, lowest first.
fn select_jobs(
    conn: &mut DbConnection,
    selection: &JobSelection,
    states: &[JobState],
) -> Result<Vec<(i64, String)>, TrackerError> {
    let states: Vec<&str> = states.iter().map(|state| state.as_str()).collect();
    let query = || {
        let mut query = jobs::table.filter(jobs::state.eq_any(states.clone())).into_boxed();
        if let Some(stage) = selection.stage {
            query = query.filter(jobs::stage.eq(stage.letter()));
        }
        query.select((jobs::id, jobs::stage)).order(jobs::id)
    };
    if selection.numbers.is_empty() {
        return Ok(query().load(conn)?);
    }
    let mut found = Vec::new();
    for chunk in selection.numbers.chunks(ID_CHUNK) {
        found.extend(query().filter(jobs::id.eq_any(chunk)).load::<(i64, String)>(conn)?);
    }
    found.sort_unstable();
    found.dedup();
    Ok(found)
}

/// Records `kind` (also the action's name) in the history of each job of `found`, with the
/// actor as its detail, and the action in the log; returns how many jobs it changed.
fn log_job_action(
    tx: &mut WriteTx<'_>,
    found: &[(i64, String)],
    kind: &'static str,
    selection: &JobSelection,
    actor: &str,
    now: i64,
) -> Result<usize, TrackerError> {
    for (id, stage) in found {
        tx.record(*id, stage, kind, None, now, Some(actor));
    }
    let detail = format!("{}: {} jobs", selection.describe(), found.len());
    log_action(tx, now, actor, kind, &detail)?;
    tracing::info!(by = %actor, action = kind, %detail, "Operator action on jobs.");
    Ok(found.len())
}

impl JobStore {
    /// Re-opens the failed jobs of `selection` at the stage they failed at, with their attempts,
    /// invalid-input reports and error cleared. Returns how many were re-opened.
    ///
    /// # Errors
    /// Database errors.
    pub fn requeue_failed(&self, selection: &JobSelection, actor: &str) -> Result<usize, TrackerError> {
        let now = self.now_ms();
        let (selection, actor) = (selection.clone(), actor.to_owned());
        self.pools.write(move |tx| {
            tx.protect()?;
            let found = select_jobs(tx, &selection, &[JobState::Failed])?;
            let conn: &mut DbConnection = tx;
            for chunk in found.chunks(ID_CHUNK) {
                let ids: Vec<i64> = chunk.iter().map(|(id, _)| *id).collect();
                let update = diesel::update(jobs::table.filter(jobs::id.eq_any(ids)).filter(jobs::state.eq(JobState::Failed.as_str())))
                    .set((
                        jobs::state.eq(JobState::Open.as_str()),
                        jobs::attempts.eq(0),
                        jobs::flags.eq(0),
                        jobs::error.eq(None::<String>),
                        jobs::retry_at.eq(None::<i64>),
                        jobs::updated_at.eq(now),
                    ));
                per_backend!(conn, |c| update.execute(c))?;
            }
            log_job_action(tx, &found, event::REQUEUE, &selection, &actor, now)
        })
    }

    /// Cancels the unfinished (open or leased) jobs of `selection`: they become failed with
    /// the error `cancelled by ACTOR`, and a worker holding one loses its lease (its outcome is
    /// refused). A cancelled job can be requeued. Returns how many were cancelled.
    ///
    /// # Errors
    /// [`TrackerError::InvalidJobs`] for a selection naming neither a stage nor jobs (cancelling
    /// everything is not an action to take by omission); database errors.
    pub fn cancel_jobs(&self, selection: &JobSelection, actor: &str) -> Result<usize, TrackerError> {
        if selection.is_everything() {
            return Err(TrackerError::InvalidJobs(
                "name a stage or job numbers to cancel; nothing was changed".to_owned(),
            ));
        }
        let now = self.now_ms();
        let (selection, actor) = (selection.clone(), actor.to_owned());
        self.pools.write(move |tx| {
            tx.protect()?;
            let found = select_jobs(tx, &selection, &[JobState::Open, JobState::Leased])?;
            let conn: &mut DbConnection = tx;
            let error = format!("cancelled by {actor}");
            for chunk in found.chunks(ID_CHUNK) {
                let ids: Vec<i64> = chunk.iter().map(|(id, _)| *id).collect();
                let unfinished = [JobState::Open.as_str(), JobState::Leased.as_str()];
                let update = diesel::update(jobs::table.filter(jobs::id.eq_any(ids)).filter(jobs::state.eq_any(unfinished)))
                    .set((
                        jobs::state.eq(JobState::Failed.as_str()),
                        jobs::error.eq(&error),
                        jobs::lease_owner.eq(None::<String>),
                        jobs::lease_expires_at.eq(None::<i64>),
                        jobs::lease_token.eq(jobs::lease_token + 1),
                        jobs::updated_at.eq(now),
                    ));
                per_backend!(conn, |c| update.execute(c))?;
            }
            log_job_action(tx, &found, event::CANCEL, &selection, &actor, now)
        })
    }

    /// Pauses `stage`: no worker, local or remote, is handed one of its jobs until it is
    /// resumed (leases already held run to their end). Returns `false` when it was paused
    /// already (nothing changed, nothing logged).
    ///
    /// # Errors
    /// Database errors.
    pub fn pause_stage(&self, stage: StageId, actor: &str) -> Result<bool, TrackerError> {
        let now = self.now_ms();
        let actor = actor.to_owned();
        self.pools.write(move |tx| {
            tx.protect()?;
            let conn: &mut DbConnection = tx;
            let paused: i64 = paused_stages::table.filter(paused_stages::stage.eq(stage.letter())).count().get_result(conn)?;
            if paused > 0 {
                return Ok(false);
            }
            let insert = diesel::insert_into(paused_stages::table).values((
                paused_stages::stage.eq(stage.letter()),
                paused_stages::paused_at.eq(now),
                paused_stages::paused_by.eq(&actor),
            ));
            per_backend!(conn, |c| insert.execute(c))?;
            log_action(conn, now, &actor, "pause", &format!("stage {stage}"))?;
            tracing::info!(by = %actor, %stage, "Operator paused a stage.");
            Ok(true)
        })
    }

    /// Resumes a paused `stage`. Returns `false` when it was not paused.
    ///
    /// # Errors
    /// Database errors.
    pub fn resume_stage(&self, stage: StageId, actor: &str) -> Result<bool, TrackerError> {
        let now = self.now_ms();
        let actor = actor.to_owned();
        self.pools.write(move |tx| {
            tx.protect()?;
            let conn: &mut DbConnection = tx;
            let removed = diesel::delete(paused_stages::table.filter(paused_stages::stage.eq(stage.letter())));
            if per_backend!(conn, |c| removed.execute(c))? == 0 {
                return Ok(false);
            }
            log_action(conn, now, &actor, "resume", &format!("stage {stage}"))?;
            tracing::info!(by = %actor, %stage, "Operator resumed a stage.");
            Ok(true)
        })
    }

    /// Adds `items` as new jobs at stage `a`, as [`append_jobs`](Self::append_jobs) does, and
    /// logs the action.
    ///
    /// # Errors
    /// Database errors.
    pub fn add_jobs(&self, items: &[String], actor: &str) -> Result<Appended, TrackerError> {
        let now = self.now_ms();
        let (items, actor) = (items.to_vec(), actor.to_owned());
        self.pools.write(move |tx| {
            tx.protect()?;
            let appended = append_in(tx, &items, now)?;
            let detail = format!("{} jobs added, {} skipped", appended.added, appended.skipped);
            log_action(tx, now, &actor, "add", &detail)?;
            tracing::info!(by = %actor, %detail, "Operator added jobs.");
            Ok(appended)
        })
    }

    /// The paused stages, in stage order.
    ///
    /// # Errors
    /// Database errors, or a row with an unknown stage.
    pub fn paused_stages(&self) -> Result<Vec<PausedStage>, TrackerError> {
        let rows: Vec<(String, i64, String)> = self.pools.read(|conn| {
            Ok(paused_stages::table
                .select((paused_stages::stage, paused_stages::paused_at, paused_stages::paused_by))
                .order(paused_stages::stage)
                .load(conn)?)
        })?;
        rows.into_iter()
            .map(|(stage, paused_at, paused_by)| Ok(PausedStage { stage: stage.parse()?, paused_at, paused_by }))
            .collect()
    }

    /// Whether `stage` is paused.
    ///
    /// # Errors
    /// Database errors.
    pub fn is_paused(&self, stage: StageId) -> Result<bool, TrackerError> {
        let paused: i64 = self.pools.read(|conn| {
            Ok(paused_stages::table.filter(paused_stages::stage.eq(stage.letter())).count().get_result(conn)?)
        })?;
        Ok(paused > 0)
    }

    /// The last `limit` operator actions, newest first.
    ///
    /// # Errors
    /// Database errors.
    pub fn admin_actions(&self, limit: i64) -> Result<Vec<AdminAction>, TrackerError> {
        let rows: Vec<(i64, String, String, String)> = self.pools.read(|conn| {
            Ok(admin_actions::table
                .select((admin_actions::at, admin_actions::actor, admin_actions::action, admin_actions::detail))
                .order(admin_actions::id.desc())
                .limit(limit.clamp(0, 1000))
                .load(conn)?)
        })?;
        Ok(rows
            .into_iter()
            .map(|(at, actor, action, detail)| AdminAction { at, actor, action, detail })
            .collect())
    }
}
