//! Operator actions on the store (requeue, cancel, pause, resume, add, the action log), run
//! once on SQLite and once on the local PostgreSQL server.

use std::sync::Arc;
use std::time::Duration;

use cascade_tracker::testing::TestDatabase;
use cascade_tracker::{
    event, Appended, JobId, JobSelection, JobState, JobStore, ManualClock, StageId, StoreConfig, TrackerError,
};

const START_MS: i64 = 1_700_000_000_000;

fn open(db: &TestDatabase, max_attempts: u32) -> (JobStore, ManualClock) {
    let clock = ManualClock::new(START_MS);
    let config = StoreConfig {
        project: "Operators".to_owned(),
        stage_names: [Some("A".to_owned()), Some("B".to_owned()), None, None, None],
        idle_timeout: Duration::from_secs(600),
        flag_threshold: 3,
        max_attempts: [max_attempts; 5],
    };
    (JobStore::open(db.url(), config, Arc::new(clock.clone()), 8).unwrap(), clock)
}

fn load(store: &JobStore, n: usize) {
    let items: Vec<String> = (1..=n).map(|i| format!("job-{i}")).collect();
    store.load_jobs(&items, false).unwrap();
}

fn state(store: &JobStore, number: i64) -> JobState {
    store.job(number).unwrap().summary.state
}

fn kinds(store: &JobStore, number: i64) -> Vec<String> {
    store.job(number).unwrap().events.into_iter().map(|e| e.kind).collect()
}

macro_rules! operator_suite {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            #[test]
            fn a_paused_stage_hands_out_nothing_until_resumed() {
                let db = TestDatabase::$backend();
                let (store, _clock) = open(&db, 5);
                load(&store, 3);
                let a = store.register_worker("a", StageId::A, None).unwrap();
                let held = store.claim(&a.token).unwrap();
                assert!(store.pause_stage(StageId::A, "ops").unwrap());
                assert!(!store.pause_stage(StageId::A, "ops").unwrap(), "pausing twice changes nothing");
                assert!(store.is_paused(StageId::A).unwrap());
                assert!(!store.is_paused(StageId::B).unwrap());
                assert_eq!(store.job_count(StageId::A).unwrap(), 0, "workers see no jobs");
                assert!(matches!(store.claim(&a.token), Err(TrackerError::NoJobAvailable)));
                // Not even by number (the refused claims leave job 1 held by `a`).
                assert!(matches!(store.claim_job(&a.token, held.number), Err(TrackerError::NoJobAvailable)));
                // Another stage is unaffected.
                let b = store.register_worker("b", StageId::B, None).unwrap();
                assert!(matches!(store.claim(&b.token), Err(TrackerError::NoJobAvailable)));
                let paused = store.paused_stages().unwrap();
                assert_eq!(paused.len(), 1);
                assert_eq!((paused[0].stage, paused[0].paused_by.as_str()), (StageId::A, "ops"));
                assert!(store.resume_stage(StageId::A, "ops").unwrap());
                assert!(!store.resume_stage(StageId::A, "ops").unwrap());
                assert_eq!(store.job_count(StageId::A).unwrap(), 2, "jobs 2 and 3; job 1 is still held");
                assert_eq!(store.claim(&a.token).unwrap().number, JobId(1));
                let log: Vec<String> = store.admin_actions(10).unwrap().into_iter().map(|a| a.action).collect();
                assert_eq!(log, ["resume", "pause"], "newest first, no-ops left out");
            }

            #[test]
            fn a_lease_held_when_its_stage_is_paused_can_still_complete() {
                let db = TestDatabase::$backend();
                let (store, _clock) = open(&db, 5);
                load(&store, 2);
                let a = store.register_worker("a", StageId::A, None).unwrap();
                let job = store.claim(&a.token).unwrap();
                store.pause_stage(StageId::A, "ops").unwrap();
                store.complete(&a.token, Some(job.held()), "out").unwrap();
                assert_eq!(state(&store, 1), JobState::Open, "now open at stage b");
                assert_eq!(store.job(1).unwrap().summary.stage, StageId::B);
            }

            #[test]
            fn requeue_reopens_failed_jobs_with_attempts_cleared() {
                let db = TestDatabase::$backend();
                let (store, clock) = open(&db, 1);
                load(&store, 4);
                let a = store.register_worker("a", StageId::A, None).unwrap();
                // Job 1 fails outright, job 2 runs out of attempts (its lease expires).
                let one = store.claim(&a.token).unwrap();
                store.fail(&a.token, Some(one.held()), "broken").unwrap();
                store.claim(&a.token).unwrap();
                store.bye(&a.token).unwrap();
                clock.advance(Duration::from_secs(1));
                let a = store.register_worker("a", StageId::A, None).unwrap();
                assert_eq!(store.claim(&a.token).unwrap().number, JobId(3), "job 2 has no attempts left");
                assert_eq!((state(&store, 1), state(&store, 2)), (JobState::Failed, JobState::Failed));

                let only_two = JobSelection { stage: None, numbers: vec![2, 3] };
                assert_eq!(store.requeue_failed(&only_two, "ops").unwrap(), 1, "job 3 is not failed");
                let two = store.job(2).unwrap();
                assert_eq!((two.summary.state, two.summary.attempts, two.summary.error), (JobState::Open, 0, None));
                assert_eq!(kinds(&store, 2).last().map(String::as_str), Some(event::REQUEUE));
                assert_eq!(state(&store, 1), JobState::Failed);
                let at_b = JobSelection { stage: Some(StageId::B), numbers: vec![] };
                assert_eq!(store.requeue_failed(&at_b, "ops").unwrap(), 0);
                assert_eq!(store.requeue_failed(&JobSelection::default(), "ops").unwrap(), 1);
                assert_eq!(state(&store, 1), JobState::Open);
                // A requeued job is claimable again, with a fresh attempt count.
                let b = store.register_worker("b", StageId::A, None).unwrap();
                let again = store.claim(&b.token).unwrap();
                assert_eq!((again.number, again.attempt), (JobId(1), 1));
                let log = store.admin_actions(10).unwrap();
                assert_eq!(log[0].detail, "all jobs: 1 jobs");
                assert_eq!(log[2].detail, "jobs 2, 3: 1 jobs");
            }

            #[test]
            fn cancel_fails_unfinished_jobs_and_voids_the_holders_lease() {
                let db = TestDatabase::$backend();
                let (store, _clock) = open(&db, 5);
                load(&store, 4);
                let a = store.register_worker("a", StageId::A, None).unwrap();
                let done = store.claim(&a.token).unwrap();
                store.complete(&a.token, Some(done.held()), "out").unwrap();
                let held = store.claim(&a.token).unwrap();
                assert_eq!(held.number, JobId(2));
                let selection = JobSelection { stage: Some(StageId::A), numbers: vec![] };
                assert_eq!(store.cancel_jobs(&selection, "ops").unwrap(), 3, "jobs 2-4; job 1 is at stage b");
                let two = store.job(2).unwrap();
                assert_eq!(two.summary.state, JobState::Failed);
                assert_eq!(two.summary.error.as_deref(), Some("cancelled by ops"));
                assert_eq!(kinds(&store, 2).last().map(String::as_str), Some(event::CANCEL));
                assert!(matches!(
                    store.complete(&a.token, Some(held.held()), "late"),
                    Err(TrackerError::LeaseLost { .. })
                ));
                assert_eq!(store.job(2).unwrap().result, None);
                assert!(matches!(store.claim(&a.token), Err(TrackerError::NoJobAvailable)));
                // Requeue undoes a cancel.
                let two_only = JobSelection { stage: None, numbers: vec![2] };
                assert_eq!(store.requeue_failed(&two_only, "ops").unwrap(), 1);
                let again = store.claim(&a.token).unwrap();
                assert_eq!(again.number, JobId(2));
                assert!(again.lease.0 > held.lease.0, "a new lease, not the cancelled one");
                store.complete(&a.token, Some(again.held()), "out").unwrap();
            }

            #[test]
            fn added_jobs_are_logged_and_a_reset_clears_pauses_and_the_log() {
                let db = TestDatabase::$backend();
                let (store, _clock) = open(&db, 5);
                load(&store, 2);
                let items: Vec<String> = ["job-2", "new"].map(String::from).to_vec();
                assert_eq!(store.add_jobs(&items, "ops").unwrap(), Appended { added: 1, skipped: 1 });
                store.pause_stage(StageId::B, "ops").unwrap();
                let log = store.admin_actions(10).unwrap();
                assert_eq!(log.len(), 2);
                assert_eq!((log[1].action.as_str(), log[1].detail.as_str()), ("add", "1 jobs added, 1 skipped"));
                assert_eq!(log[1].at, START_MS);
                store.load_jobs(&["fresh".to_owned()], true).unwrap();
                assert!(store.admin_actions(10).unwrap().is_empty());
                assert!(store.paused_stages().unwrap().is_empty());
            }
        }
    };
}

operator_suite!(sqlite);
operator_suite!(postgres);
