//! The store as the [`Leases`] of local workers: each call is the store operation of the same
//! name, with the store's errors told apart the way a worker must act on them.

use std::time::Duration;

use super::JobStore;
use crate::error::TrackerError;
use crate::protocol::{ClaimedJob, Completion, HeldLease, JobId, LeaseError, Leases, Registration, WorkerToken};
use crate::stage::StageId;

impl From<TrackerError> for LeaseError {
    fn from(error: TrackerError) -> Self {
        match error {
            TrackerError::UnknownWorker => Self::UnknownWorker,
            TrackerError::NoJobHeld | TrackerError::LeaseLost { .. } => Self::LeaseLost,
            refused if refused.is_refusal() => Self::Refused(refused.to_string()),
            failed => Self::Unavailable(failed.to_string()),
        }
    }
}

impl Leases for JobStore {
    fn register(&self, nickname: &str, stage: StageId, lease_ttl: Option<Duration>) -> Result<Registration, LeaseError> {
        Ok(self.register_worker(nickname, stage, lease_ttl)?)
    }

    fn claim(&self, worker: &WorkerToken, only: Option<JobId>) -> Result<Option<ClaimedJob>, LeaseError> {
        let claimed = match only {
            Some(job) => self.claim_job(worker, job),
            None => JobStore::claim(self, worker),
        };
        match claimed {
            Ok(job) => Ok(Some(job)),
            Err(TrackerError::NoJobAvailable) => Ok(None),
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
        if claim_next {
            Ok(self.complete_and_claim(worker, Some(held), output)?)
        } else {
            Ok((JobStore::complete(self, worker, Some(held), output)?, None))
        }
    }

    fn flag(&self, worker: &WorkerToken, held: HeldLease, reason: &str) -> Result<(), LeaseError> {
        Ok(self.flag_invalid(worker, Some(held), Some(reason)).map(drop)?)
    }

    fn retry_later(&self, worker: &WorkerToken, held: HeldLease, after: Duration, reason: &str) -> Result<(), LeaseError> {
        let due = self.now_ms().saturating_add(i64::try_from(after.as_millis()).unwrap_or(i64::MAX));
        Ok(JobStore::retry_later(self, worker, Some(held), due, reason)?)
    }

    fn fail(&self, worker: &WorkerToken, held: HeldLease, error: &str) -> Result<(), LeaseError> {
        Ok(JobStore::fail(self, worker, Some(held), error)?)
    }

    fn release(&self, worker: &WorkerToken, held: HeldLease) -> Result<(), LeaseError> {
        Ok(JobStore::release(self, worker, Some(held))?)
    }

    fn heartbeat(&self, worker: &WorkerToken, progress: Option<&str>) -> Result<(), LeaseError> {
        match progress {
            Some(text) => Ok(self.update_progress(worker, text)?),
            None => Ok(JobStore::heartbeat(self, worker)?),
        }
    }

    fn bye(&self, worker: &WorkerToken) -> Result<(), LeaseError> {
        Ok(JobStore::bye(self, worker)?)
    }
}
