//! The lease protocol between workers and the tracker, written once.
//!
//! - The identities a lease is made of: [`JobId`], [`LeaseEpoch`] (the fencing token of one
//!   lease) and [`WorkerToken`] (a worker's credential).
//! - What the tracker answers: [`Registration`], [`ClaimedJob`], [`Completion`],
//!   [`FlagOutcome`].
//! - The bodies and queries of the HTTP worker API: the `distcompute-client` 1.0.0 endpoints
//!   under `/api/*` (byte-compatible with that library) and Cascade's `/v1/lease/*`
//!   extensions. The server deserializes these very types and the Rust client serializes them.
//! - [`Leases`]: the operations of a worker's life (register, claim, complete-and-claim, flag,
//!   retry later, fail, release, heartbeat, bye). The store implements it against the database
//!   and the HTTP client against a tracker, so one worker runtime serves local pools and remote
//!   workers alike.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::stage::StageId;

/// A job's number: its identity in every stage, on the wire and in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        whole_number(deserializer).map(Self)
    }
}

/// Reads a JSON integer, also when written with a zero fraction (`7.0`), as JSON Schema's
/// `integer` allows and some JSON encoders write it.
///
/// # Errors
/// A fraction, a number outside `i64`, or anything but a number.
pub fn whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    struct Whole;
    impl Visitor<'_> for Whole {
        type Value = i64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer")
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<i64, E> {
            Ok(value)
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<i64, E> {
            i64::try_from(value).map_err(|_| E::invalid_value(Unexpected::Unsigned(value), &self))
        }

        fn visit_f64<E: de::Error>(self, value: f64) -> Result<i64, E> {
            // Past 2^53 a float no longer tells neighbouring integers apart.
            const LIMIT: f64 = 9_007_199_254_740_992.0;
            if value.fract() == 0.0 && (-LIMIT..=LIMIT).contains(&value) {
                Ok(value as i64)
            } else {
                Err(E::invalid_value(Unexpected::Float(value), &self))
            }
        }
    }
    deserializer.deserialize_any(Whole)
}

/// [`whole_number`] for a list of numbers.
///
/// # Errors
/// Anything but a list of whole numbers.
pub fn whole_numbers<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<i64>, D::Error> {
    Ok(Vec::<JobId>::deserialize(deserializer)?.into_iter().map(|number| number.0).collect())
}

/// [`whole_number`] for a count that cannot be negative.
///
/// # Errors
/// Anything but a whole number from 0 up.
pub fn whole_count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let value = whole_number(deserializer)?;
    u64::try_from(value).map_err(|_| de::Error::invalid_value(Unexpected::Signed(value), &"a count from 0 up"))
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The fencing token of one lease: it grows with every claim of the job, so an outcome sent
/// under an older lease is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
#[serde(transparent)]
pub struct LeaseEpoch(pub i64);

impl<'de> Deserialize<'de> for LeaseEpoch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        whole_number(deserializer).map(Self)
    }
}

/// A worker's credential, given at registration and sent with every later call. Never shown
/// in listings or logs, and never stored: the database keeps its SHA-256 digest
/// ([`stored_key`](Self::stored_key)), so a copy of the database cannot act as a worker.
#[derive(Clone, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct WorkerToken {
    text: String,
    /// The digest the database keeps, computed on first use.
    stored: OnceLock<String>,
}

impl WorkerToken {
    /// The token `text`, as a worker sent it.
    pub fn new(text: impl Into<String>) -> Self {
        Self { text: text.into(), stored: OnceLock::new() }
    }

    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What the database keeps instead of the token: its SHA-256 digest in lowercase hex
    /// (64 characters).
    pub fn stored_key(&self) -> &str {
        self.stored.get_or_init(|| stored_key_of(&self.text))
    }
}

/// The SHA-256 digest of `token` in lowercase hex: how the database keeps a worker token.
pub(crate) fn stored_key_of(token: &str) -> String {
    use sha2::Digest;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = sha2::Sha256::digest(token.as_bytes());
    let mut key = String::with_capacity(2 * digest.len());
    for byte in digest {
        key.push(char::from(HEX[usize::from(byte >> 4)]));
        key.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    key
}

impl PartialEq for WorkerToken {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for WorkerToken {}

impl std::hash::Hash for WorkerToken {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl From<String> for WorkerToken {
    fn from(text: String) -> Self {
        Self::new(text)
    }
}

impl From<WorkerToken> for String {
    fn from(token: WorkerToken) -> Self {
        token.text
    }
}

impl utoipa::PartialSchema for WorkerToken {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("A worker's credential, as `/api/new` gave it."))
            .into()
    }
}

impl ToSchema for WorkerToken {}

impl fmt::Debug for WorkerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WorkerToken(…)")
    }
}

/// What a new worker is told (also the answer of `GET /api/new`, field for field).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Registration {
    /// The worker's credential; sent with every later request.
    pub token: WorkerToken,
    /// Human-readable name, unique among current workers.
    pub display_name: String,
    /// The project name.
    pub project: String,
    /// The display name of the worker's stage.
    pub stage_name: String,
}

/// A job handed to a worker (the answer of `POST /v1/lease/claim`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClaimedJob {
    /// The job.
    pub number: JobId,
    /// The stage the job is at (the worker's stage).
    pub stage: StageId,
    /// The job's input at this stage.
    pub data: String,
    /// The fencing token of this lease.
    pub lease: LeaseEpoch,
    /// How many times the job was claimed at this stage, this claim included (a lease given
    /// back with `release` does not count).
    pub attempt: u32,
}

impl ClaimedJob {
    /// The lease this claim gave, as outcome calls name it.
    pub fn held(&self) -> HeldLease {
        HeldLease { number: self.number, lease: self.lease }
    }
}

/// The lease a worker holds on one job, named by the calls that end it: a call sent again
/// after its answer was lost (a completion that also claimed the next job, say) then finds a
/// different lease and changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HeldLease {
    /// The job.
    pub number: JobId,
    /// The lease's fencing token.
    pub lease: LeaseEpoch,
}

/// Where a completed job went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Completion {
    /// The job.
    pub number: JobId,
    /// The stage whose input the output became, or `None` when the job is now done.
    pub next_stage: Option<StageId>,
}

/// What a report of invalid input did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FlagOutcome {
    /// The job.
    pub number: JobId,
    /// Reports for this (job, stage) so far, this one included.
    pub reports: i32,
    /// The stage the job was sent back to, when the threshold was reached.
    pub sent_back_to: Option<StageId>,
    /// Whether the job failed instead: it had already been sent back `flag_threshold` times.
    pub failed: bool,
}

/// Query of `GET /api/new`.
#[derive(Debug, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NewWorkerQuery {
    /// Owner's nickname (leaderboard key), at most 128 characters.
    pub nickname: String,
    /// Stage letter.
    #[param(value_type = StageId)]
    pub stage: String,
}

/// Query of `GET /api/jobCount`.
#[derive(Debug, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StageQuery {
    /// Stage letter.
    #[param(value_type = StageId)]
    pub stage: String,
}

/// Body of the calls that take only a token: `/api/newJob`, `/api/validateWorker`,
/// `/api/bye`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenBody {
    /// The worker's token.
    pub token: WorkerToken,
}

/// Answer of `POST /api/newJob`: exactly the two fields distcompute workers read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewJobAnswer {
    /// The job's input at this stage (opaque text; `<!json!>`-prefixed for JSON).
    pub data: String,
    /// The job number.
    pub number: JobId,
}

/// Body of `POST /api/updateProgress`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProgressBody {
    /// The worker's token.
    pub token: WorkerToken,
    /// Free-form progress text.
    pub progress: String,
}

/// Body of `POST /api/flagInvalidData`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FlagBody {
    /// The worker's token.
    pub token: WorkerToken,
    /// Why the input is invalid (a Cascade extension; the Python client sends none). Shown on
    /// the dashboard and in the job's history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The job whose input is invalid (a Cascade extension): only that lease is given up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<JobId>,
    /// That job's lease (with `number`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseEpoch>,
}

/// Body of `POST /api/completeJob`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CompleteBody {
    /// The worker's token.
    pub token: WorkerToken,
    /// The job's output: the next stage's input, or the final result.
    pub data: String,
}

/// Body of `POST /v1/lease/claim`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClaimBody {
    /// The worker's token.
    pub token: WorkerToken,
    /// Only this job (when it is claimable at the worker's stage); any job when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<JobId>,
}

/// Body of `POST /v1/lease/complete`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LeaseCompleteBody {
    /// The worker's token.
    pub token: WorkerToken,
    /// The job completed.
    pub number: JobId,
    /// Its lease.
    pub lease: LeaseEpoch,
    /// The job's output: the next stage's input, or the final result.
    pub data: String,
    /// Also claim the worker's next job in the same transaction.
    #[serde(default)]
    pub claim_next: bool,
}

/// Body of `POST /v1/lease/release`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReleaseBody {
    /// The worker's token.
    pub token: WorkerToken,
    /// The job given back (optional): only that lease is given back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<JobId>,
    /// That job's lease (with `number`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseEpoch>,
}

/// The lease an outcome body names, when it names a whole one.
pub fn named_lease(number: Option<JobId>, lease: Option<LeaseEpoch>) -> Option<HeldLease> {
    Some(HeldLease { number: number?, lease: lease? })
}

/// Answer of `POST /v1/lease/complete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CompleteAnswer {
    /// Where the completed job went.
    pub completion: Completion,
    /// The next job, when one was asked for and one was claimable.
    pub next: Option<ClaimedJob>,
}

/// Body of `POST /v1/lease/retry`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RetryBody {
    /// The worker's token.
    pub token: WorkerToken,
    /// The job given back (optional): only that lease is given back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<JobId>,
    /// That job's lease (with `number`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseEpoch>,
    /// Delay before the job may be handed out again, in milliseconds (at most one day).
    #[serde(deserialize_with = "whole_count")]
    pub retry_after_ms: u64,
    /// What went wrong.
    pub reason: String,
}

/// Body of `POST /v1/lease/fail`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FailBody {
    /// The worker's token.
    pub token: WorkerToken,
    /// The job failed (optional): only that lease is ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<JobId>,
    /// That job's lease (with `number`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseEpoch>,
    /// Why the job can never succeed.
    pub error: String,
}

/// Why a [`Leases`] call did not do what it asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// The tracker does not know the worker (it left, or was swept after going silent):
    /// register again.
    #[error("the tracker does not know this worker")]
    UnknownWorker,
    /// The worker holds no job, or its lease was lost (completed, flagged or re-claimed
    /// elsewhere after it expired): nothing was changed.
    #[error("the lease is no longer held")]
    LeaseLost,
    /// The tracker refused the call for good (a disabled stage, a malformed request).
    #[error("refused: {0}")]
    Refused(String),
    /// The tracker or its database could not be reached or failed; the same call may succeed
    /// later. A finished job's outcome is kept and sent again.
    #[error("tracker unavailable: {0}")]
    Unavailable(String),
}

/// The operations of a worker's life, against the database (the store) or over HTTP (the
/// client). Every call that ends a lease names it ([`HeldLease`]) and acts only while the
/// worker still holds exactly that lease: a stale, duplicate or repeated call changes nothing.
pub trait Leases: Send + Sync {
    /// Registers a worker for `stage`. `lease_ttl` is how long its leases last without a
    /// heartbeat (capped at the idle timeout; `None` means the idle timeout; a remote tracker
    /// always uses its idle timeout).
    ///
    /// # Errors
    /// [`LeaseError::Refused`] for a disabled stage; [`LeaseError::Unavailable`].
    fn register(&self, nickname: &str, stage: StageId, lease_ttl: Option<Duration>) -> Result<Registration, LeaseError>;

    /// Claims a job of the worker's stage (job `only`, or the lowest numbered claimable one);
    /// `None` when there is none. A job the worker still holds is given back first. A job whose
    /// attempts at the stage reached the stage's limit is failed instead of handed out.
    ///
    /// # Errors
    /// [`LeaseError::UnknownWorker`]; [`LeaseError::Unavailable`].
    fn claim(&self, worker: &WorkerToken, only: Option<JobId>) -> Result<Option<ClaimedJob>, LeaseError>;

    /// Completes the held lease `held` with `output`; with `claim_next`, claims the worker's
    /// next job in the same step (`None` when nothing is claimable; the completion stands).
    ///
    /// # Errors
    /// [`LeaseError::LeaseLost`], [`LeaseError::UnknownWorker`], [`LeaseError::Unavailable`].
    fn complete(
        &self,
        worker: &WorkerToken,
        held: HeldLease,
        output: &str,
        claim_next: bool,
    ) -> Result<(Completion, Option<ClaimedJob>), LeaseError>;

    /// Reports the held job's input as invalid, saying why, and gives the job up.
    ///
    /// # Errors
    /// As [`complete`](Self::complete).
    fn flag(&self, worker: &WorkerToken, held: HeldLease, reason: &str) -> Result<(), LeaseError>;

    /// Gives the held job back after a transient failure, not to be handed out again for
    /// `after`. Its attempt stays counted.
    ///
    /// # Errors
    /// As [`complete`](Self::complete).
    fn retry_later(&self, worker: &WorkerToken, held: HeldLease, after: Duration, reason: &str) -> Result<(), LeaseError>;

    /// Marks the held job failed with `error`.
    ///
    /// # Errors
    /// As [`complete`](Self::complete).
    fn fail(&self, worker: &WorkerToken, held: HeldLease, error: &str) -> Result<(), LeaseError>;

    /// Gives the held job back at once, untouched (cancelled, or never started): the attempt
    /// does not count.
    ///
    /// # Errors
    /// As [`complete`](Self::complete).
    fn release(&self, worker: &WorkerToken, held: HeldLease) -> Result<(), LeaseError>;

    /// Extends the held lease, recording `progress` when given.
    ///
    /// # Errors
    /// [`LeaseError::UnknownWorker`]; [`LeaseError::Unavailable`].
    fn heartbeat(&self, worker: &WorkerToken, progress: Option<&str>) -> Result<(), LeaseError>;

    /// Leaves; a job still held is re-opened at once.
    ///
    /// # Errors
    /// [`LeaseError::UnknownWorker`]; [`LeaseError::Unavailable`].
    fn bye(&self, worker: &WorkerToken) -> Result<(), LeaseError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distcompute_answers_keep_their_exact_shape() {
        let answer = NewJobAnswer { data: "x".into(), number: JobId(7) };
        assert_eq!(serde_json::to_string(&answer).unwrap(), r#"{"data":"x","number":7}"#);
        let registration = Registration {
            token: WorkerToken::new("t"),
            display_name: "d".into(),
            project: "p".into(),
            stage_name: "s".into(),
        };
        assert_eq!(
            serde_json::to_string(&registration).unwrap(),
            r#"{"token":"t","display_name":"d","project":"p","stage_name":"s"}"#
        );
    }

    #[test]
    fn stored_keys_are_the_lowercase_hex_sha256_digest() {
        // `printf 'secret' | sha256sum`
        let expected = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
        assert_eq!(WorkerToken::new("secret").stored_key(), expected);
    }

    #[test]
    fn a_token_never_shows_in_debug_output() {
        assert!(!format!("{:?}", WorkerToken::new("secret")).contains("secret"));
    }

    #[test]
    fn numbers_are_whole_also_with_a_zero_fraction() {
        let number = |json: &str| serde_json::from_str::<JobId>(json).map(|id| id.0).map_err(|e| e.to_string());
        assert_eq!(number("7"), Ok(7));
        assert_eq!(number("-7.0"), Ok(-7));
        assert_eq!(number("1843623965974757.0"), Ok(1_843_623_965_974_757), "parsed exactly");
        assert!(number("7.5").is_err());
        assert!(number("1e300").is_err());
        assert!(number("18446744073709551615").is_err(), "past i64");
        assert!(number("\"7\"").is_err());
        let retry: Result<RetryBody, _> =
            serde_json::from_str(r#"{"token": "t", "retry_after_ms": -1, "reason": "r"}"#);
        assert!(retry.is_err(), "a negative delay is refused");
        let retry: RetryBody = serde_json::from_str(r#"{"token": "t", "retry_after_ms": 1000.0, "reason": "r"}"#).unwrap();
        assert_eq!(retry.retry_after_ms, 1000);
    }
}
