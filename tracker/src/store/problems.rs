//! Jobs that need a person's attention: failed ones, and ones whose input workers reported as
//! invalid, each with the reason given.

use std::collections::HashMap;

use diesel::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;

use super::jobs::SummaryRow;
use super::views::{JobState, JobSummary, Page};
use super::{event, JobStore};
use crate::db::schema::{job_events, jobs};
use crate::error::TrackerError;

/// A failed job, or one with invalid-input reports at its current stage.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProblemJob {
    /// Where the job is.
    pub summary: JobSummary,
    /// Why: the error of a failed job; otherwise the reason given with the latest report at
    /// its current stage (`None` when the worker gave none).
    pub reason: Option<String>,
}

impl JobStore {
    /// Failed and flagged jobs, most recently changed first.
    ///
    /// # Errors
    /// Database errors.
    pub fn problem_jobs(&self, offset: i64, limit: i64) -> Result<Page<ProblemJob>, TrackerError> {
        let offset = offset.max(0);
        self.pools.read_snapshot(|conn| {
            let needing_attention = || jobs::table.filter(jobs::state.eq(JobState::Failed.as_str()).or(jobs::flags.gt(0)));
            let total: i64 = needing_attention().count().get_result(conn)?;
            let rows: Vec<SummaryRow> = needing_attention()
                .select(SummaryRow::as_select())
                .order((jobs::updated_at.desc(), jobs::id))
                .offset(offset)
                .limit(limit.clamp(0, 1000))
                .load(conn)?;
            let summaries = rows.into_iter().map(SummaryRow::into_summary).collect::<Result<Vec<_>, _>>()?;
            let flagged: Vec<i64> =
                summaries.iter().filter(|s| s.state != JobState::Failed).map(|s| s.id).collect();
            // Oldest first, so the latest report of each (job, stage) wins.
            let reports: Vec<(i64, String, Option<String>)> = job_events::table
                .filter(job_events::job_id.eq_any(&flagged))
                .filter(job_events::kind.eq(event::FLAG))
                .order(job_events::id)
                .select((job_events::job_id, job_events::stage, job_events::detail))
                .load(conn)?;
            let latest: HashMap<(i64, String), Option<String>> =
                reports.into_iter().map(|(job, stage, detail)| ((job, stage), detail)).collect();
            let items = summaries
                .into_iter()
                .map(|summary| {
                    let reason = match summary.state {
                        JobState::Failed => summary.error.clone(),
                        _ => latest.get(&(summary.id, summary.stage.letter().to_owned())).cloned().flatten(),
                    };
                    ProblemJob { summary, reason }
                })
                .collect();
            Ok(Page { total, offset, items })
        })
    }
}
