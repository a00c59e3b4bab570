//! Checks a finished job's history (its events, oldest first) against the lease protocol.
//!
//! The history does not store lease epochs, but it determines them: a job's `lease_token` goes
//! up by one with each claim (and each cancel, which this pipeline never sees), and every event
//! that ends a lease — a completion, an expiry, a release — is written in the transaction that
//! ends it, while that transaction holds the job's row. So replaying the events in order gives
//! the lease current at each event: the last claim's, until an event ends it. A completion is
//! accepted from a current lease only if it comes from the worker named by the last claim with
//! no expiry or release since; anything else is a completion from a stale lease.

use cascade_tracker::{JobDetail, JobState, StageId};

/// What the histories of the checked jobs add up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Jobs checked.
    pub jobs: usize,
    /// Leases taken.
    pub claims: usize,
    /// Stages completed.
    pub completions: usize,
    /// Leases that ran out (or whose worker was swept) and were re-opened.
    pub expiries: usize,
    /// Leases given back by their worker (a claim retried after its answer was lost gives the
    /// first one back).
    pub releases: usize,
    /// Claims beyond the first of a job at a stage: the stage ran again (or was about to)
    /// because an earlier lease ended without a completion.
    pub duplicates: usize,
}

impl Tally {
    /// Adds `other` to this tally.
    pub fn add(&mut self, other: &Tally) {
        self.jobs += other.jobs;
        self.claims += other.claims;
        self.completions += other.completions;
        self.expiries += other.expiries;
        self.releases += other.releases;
        self.duplicates += other.duplicates;
    }
}

/// Checks job `number` of a pipeline of `stages` (in order): its input was `input`, it is done
/// with `input` followed by each stage's `suffix`, and its history is a valid lease history in
/// which every stage was completed exactly once, by the holder of the lease current at the
/// time. Returns the job's tally, or what is wrong.
///
/// # Errors
/// A description of the first violation found.
pub fn check_job(number: i64, job: &JobDetail, stages: &[(StageId, &str)], input: &str) -> Result<Tally, String> {
    let fail = |what: String| Err(format!("job {number}: {what}; history: {:?}", job.events));
    if job.data[0].as_deref() != Some(input) {
        return fail(format!("input {:?}, expected {input:?}", job.data[0]));
    }
    let expected: String = std::iter::once(input).chain(stages.iter().map(|(_, suffix)| *suffix)).collect();
    if job.summary.state != JobState::Done || job.result.as_deref() != Some(expected.as_str()) {
        return fail(format!("{:?} with result {:?}, expected done with {expected:?}", job.summary.state, job.result));
    }
    let mut tally = Tally { jobs: 1, ..Tally::default() };
    // The stage the job is at, and the worker holding its current lease.
    let mut at = 0;
    let mut holder: Option<&str> = None;
    let mut claims_here = 0;
    for (index, event) in job.events.iter().enumerate() {
        let Some(&(stage, _)) = stages.get(at) else {
            return fail(format!("event {index} ({}) after the last stage", event.kind));
        };
        if event.stage != stage {
            return fail(format!("event {index} ({}) at stage {}, while the job was at {stage}", event.kind, event.stage));
        }
        let worker = event.worker.as_deref();
        match event.kind.as_str() {
            "claim" => {
                if holder.is_some() {
                    return fail(format!("event {index}: claimed by {worker:?} while {holder:?} held a lease"));
                }
                holder = Some(worker.unwrap_or_default());
                tally.claims += 1;
                claims_here += 1;
            }
            "complete" => {
                if holder.is_none() || holder != worker {
                    return fail(format!("event {index}: completion by {worker:?} accepted from a stale lease (current holder {holder:?})"));
                }
                holder = None;
                tally.completions += 1;
                tally.duplicates += claims_here - 1;
                claims_here = 0;
                at += 1;
            }
            "expire" | "release" => {
                if holder.is_none() {
                    return fail(format!("event {index}: {} of no lease", event.kind));
                }
                if event.kind == "release" && worker != holder {
                    return fail(format!("event {index}: released by {worker:?}, held by {holder:?}"));
                }
                holder = None;
                if event.kind == "expire" {
                    tally.expiries += 1;
                } else {
                    tally.releases += 1;
                }
            }
            other => return fail(format!("event {index}: unexpected {other}")),
        }
    }
    if at != stages.len() {
        return fail(format!("completed {at} of {} stages", stages.len()));
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use cascade_tracker::{JobEvent, JobSummary};

    use super::*;

    const STAGES: [(StageId, &str); 2] = [(StageId::A, "|a"), (StageId::B, "|b")];

    fn job(events: &[(&str, StageId, Option<&str>)]) -> JobDetail {
        JobDetail {
            summary: JobSummary {
                id: 1,
                stage: StageId::B,
                state: JobState::Done,
                attempts: 1,
                flags: 0,
                updated_at: 0,
                error: None,
            },
            data: [Some("x".into()), Some("x|a".into()), None, None, None],
            result: Some("x|a|b".into()),
            leased_to: None,
            lease_expires_at: None,
            completed_at: Some(0),
            events: events
                .iter()
                .map(|&(kind, stage, worker)| JobEvent {
                    kind: kind.into(),
                    stage,
                    worker: worker.map(str::to_owned),
                    at: 0,
                    detail: None,
                })
                .collect(),
        }
    }

    use StageId::{A, B};

    #[test]
    fn a_history_redone_after_an_expiry_and_a_release_passes() {
        let history = job(&[
            ("claim", A, Some("w1")),
            ("expire", A, None),
            ("claim", A, Some("w2")),
            ("complete", A, Some("w2")),
            ("claim", B, Some("w3")),
            ("release", B, Some("w3")),
            ("claim", B, Some("w3")),
            ("complete", B, Some("w3")),
        ]);
        let tally = check_job(1, &history, &STAGES, "x").unwrap();
        assert_eq!(tally, Tally { jobs: 1, claims: 4, completions: 2, expiries: 1, releases: 1, duplicates: 2 });
    }

    #[test]
    fn a_completion_from_an_expired_lease_is_caught() {
        // w1's lease expired and w2 holds the job: w1's late completion must have been refused.
        let stale = job(&[
            ("claim", A, Some("w1")),
            ("expire", A, None),
            ("claim", A, Some("w2")),
            ("complete", A, Some("w1")),
            ("claim", B, Some("w3")),
            ("complete", B, Some("w3")),
        ]);
        let error = check_job(1, &stale, &STAGES, "x").unwrap_err();
        assert!(error.contains("stale lease"), "{error}");
        // Expired and not claimed again: no lease is current at all.
        let orphan = job(&[("claim", A, Some("w1")), ("expire", A, None), ("complete", A, Some("w1"))]);
        assert!(check_job(1, &orphan, &STAGES, "x").unwrap_err().contains("stale lease"));
    }

    #[test]
    fn a_skipped_stage_a_wrong_result_or_a_double_claim_is_caught() {
        let skipped = job(&[("claim", A, Some("w1")), ("complete", A, Some("w1"))]);
        assert!(check_job(1, &skipped, &STAGES, "x").unwrap_err().contains("completed 1 of 2"));
        let mut wrong = job(&[]);
        wrong.result = Some("x|b|a".into());
        assert!(check_job(1, &wrong, &STAGES, "x").unwrap_err().contains("expected done"));
        let double = job(&[("claim", A, Some("w1")), ("claim", A, Some("w2"))]);
        assert!(check_job(1, &double, &STAGES, "x").unwrap_err().contains("while"));
        let lost = job(&[]);
        assert!(check_job(1, &lost, &STAGES, "y").unwrap_err().contains("input"));
    }
}
