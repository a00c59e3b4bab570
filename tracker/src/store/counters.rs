//! Raw counts for monitoring: jobs by stage and state, events by stage and kind, workers by
//! stage.
//!
//! Both come from the database, so they are right across several tracker processes and after
//! restarts. Event counts only grow (the history is append-only) until a `load_jobs` with
//! `reset` clears it, which a monitoring system sees as a counter reset.

use diesel::dsl::count_star;
use diesel::prelude::*;
use serde::Serialize;

use super::views::JobState;
use super::JobStore;
use crate::db::schema::{job_events, jobs, workers};
use crate::error::TrackerError;
use crate::stage::StageId;

/// How many jobs sit at one stage in one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateCount {
    /// The stage the jobs are at.
    pub stage: StageId,
    /// Their state there.
    pub state: JobState,
    /// How many.
    pub jobs: i64,
}

/// How many events of one kind were recorded at one stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventCount {
    /// The stage the events happened at.
    pub stage: StageId,
    /// The kind, one of the names in [`crate::event`].
    pub kind: String,
    /// How many.
    pub events: i64,
}

impl JobStore {
    /// Jobs grouped by the stage they are at and their state there; combinations with no job
    /// are left out. Unlike [`JobStore::stage_counts`], a done job counts only at the stage it
    /// finished at.
    ///
    /// # Errors
    /// Database errors, or a row with an unknown stage or state.
    pub fn state_counts(&self) -> Result<Vec<StateCount>, TrackerError> {
        let rows: Vec<(String, String, i64)> = self.pools.read(|conn| {
            Ok(jobs::table
                .group_by((jobs::stage, jobs::state))
                .select((jobs::stage, jobs::state, count_star()))
                .order((jobs::stage, jobs::state))
                .load(conn)?)
        })?;
        rows.into_iter()
            .map(|(stage, state, jobs)| {
                let state = JobState::parse(&state)
                    .ok_or_else(|| TrackerError::InvalidJobs(format!("unknown job state {state}")))?;
                Ok(StateCount { stage: stage.parse()?, state, jobs })
            })
            .collect()
    }

    /// Events of the job history grouped by stage and kind; combinations that never happened
    /// are left out.
    ///
    /// # Errors
    /// Database errors, or a row with an unknown stage.
    pub fn event_counts(&self) -> Result<Vec<EventCount>, TrackerError> {
        let rows: Vec<(String, String, i64)> = self.pools.read(|conn| {
            Ok(job_events::table
                .group_by((job_events::stage, job_events::kind))
                .select((job_events::stage, job_events::kind, count_star()))
                .order((job_events::stage, job_events::kind))
                .load(conn)?)
        })?;
        rows.into_iter()
            .map(|(stage, kind, events)| Ok(EventCount { stage: stage.parse()?, kind, events }))
            .collect()
    }

    /// Registered workers per stage; stages without workers are left out.
    ///
    /// # Errors
    /// Database errors, or a row with an unknown stage.
    pub fn worker_counts(&self) -> Result<Vec<(StageId, i64)>, TrackerError> {
        let rows: Vec<(String, i64)> = self.pools.read(|conn| {
            Ok(workers::table
                .group_by(workers::stage)
                .select((workers::stage, count_star()))
                .order(workers::stage)
                .load(conn)?)
        })?;
        rows.into_iter().map(|(stage, n)| Ok((stage.parse()?, n))).collect()
    }
}
