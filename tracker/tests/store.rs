//! The store test-suite, run once on SQLite and once on the local PostgreSQL server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cascade_tracker::testing::TestDatabase;
use cascade_tracker::{
    event, Appended, EventCount, JobId, JobState, JobStore, ManualClock, StageId, StateCount, StoreConfig, TrackerError,
    WorkerToken,
};

const START_MS: i64 = 1_700_000_000_000;

struct Fixture {
    store: JobStore,
    clock: ManualClock,
    db: TestDatabase,
}

fn config(stages: usize) -> StoreConfig {
    let names = ["CPU", "GPU", "CLIP", "D", "E"];
    let mut stage_names: [Option<String>; 5] = Default::default();
    for (slot, name) in stage_names.iter_mut().zip(names).take(stages) {
        *slot = Some(name.to_owned());
    }
    StoreConfig {
        project: "Test Project".to_owned(),
        stage_names,
        idle_timeout: Duration::from_secs(600),
        flag_threshold: 3,
        max_attempts: [5; 5],
    }
}

fn fixture(db: TestDatabase, stages: usize) -> Fixture {
    let clock = ManualClock::new(START_MS);
    let store = JobStore::open(db.url(), config(stages), Arc::new(clock.clone()), 16).unwrap();
    Fixture { store, clock, db }
}

fn load(store: &JobStore, n: usize) {
    let items: Vec<String> = (1..=n).map(|i| format!("job-{i}")).collect();
    assert_eq!(store.load_jobs(&items, false).unwrap(), n);
}

macro_rules! store_suite {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            fn fx(stages: usize) -> Fixture {
                fixture(TestDatabase::$backend(), stages)
            }

            #[test]
            fn output_becomes_next_stage_input_and_last_output_is_kept() {
                let f = fx(3);
                load(&f.store, 1);
                let a = f.store.register_worker("alice", StageId::A, None).unwrap();
                let b = f.store.register_worker("bob", StageId::B, None).unwrap();
                let c = f.store.register_worker("alice", StageId::C, None).unwrap();
                assert_eq!(a.project, "Test Project");
                assert_eq!(b.stage_name, "GPU");

                let job = f.store.claim(&a.token).unwrap();
                assert_eq!((job.number.0, job.data.as_str(), job.stage), (1, "job-1", StageId::A));
                assert!(matches!(f.store.claim(&b.token), Err(TrackerError::NoJobAvailable)));
                let done = f.store.complete(&a.token, None, "<!json!>{\"x\": 1}").unwrap();
                assert_eq!(done.next_stage, Some(StageId::B));

                let job = f.store.claim(&b.token).unwrap();
                assert_eq!(job.data, "<!json!>{\"x\": 1}");
                f.store.complete(&b.token, None, "to c").unwrap();
                let job = f.store.claim(&c.token).unwrap();
                assert_eq!(job.data, "to c");
                assert_eq!(f.store.complete(&c.token, None, "final").unwrap().next_stage, None);

                let detail = f.store.job(1).unwrap();
                assert_eq!(detail.summary.state, JobState::Done);
                assert_eq!(detail.result.as_deref(), Some("final"));
                assert_eq!(detail.data[0].as_deref(), Some("job-1"));
                assert_eq!(detail.data[1].as_deref(), Some("<!json!>{\"x\": 1}"));
                assert_eq!(detail.data[2].as_deref(), Some("to c"));
                let kinds: Vec<_> = detail.events.iter().map(|e| e.kind.as_str()).collect();
                assert_eq!(kinds, ["claim", "complete", "claim", "complete", "claim", "complete"]);

                let board = f.store.leaderboard(0, 10).unwrap();
                assert_eq!(board.items[0].nickname, "alice");
                assert_eq!(board.items[0].jobs_completed, 2);
                assert_eq!(board.items[1].jobs_completed, 1);
                let counts = f.store.stage_counts().unwrap();
                assert_eq!(counts[0].done, 1);
                assert_eq!(counts[2].done, 1);
                assert_eq!(counts[2].open + counts[2].leased, 0);
            }

            #[test]
            fn completion_at_last_enabled_stage_closes_the_job() {
                let f = fx(1);
                load(&f.store, 2);
                assert!(matches!(
                    f.store.register_worker("x", StageId::B, None),
                    Err(TrackerError::DisabledStage(StageId::B))
                ));
                let a = f.store.register_worker("x", StageId::A, None).unwrap();
                f.store.claim(&a.token).unwrap();
                assert_eq!(f.store.complete(&a.token, None, "out").unwrap().next_stage, None);
                assert_eq!(f.store.job_count(StageId::A).unwrap(), 1);
                assert_eq!(f.store.job_count(StageId::B).unwrap(), 0);
                let eta = f.store.eta().unwrap();
                assert_eq!((eta.total, eta.done, eta.remaining), (2, 1, 1));
                assert!(eta.seconds_left.is_some());
            }

            #[test]
            fn fenced_calls_reject_duplicates_and_change_nothing() {
                let f = fx(2);
                load(&f.store, 2);
                let a = f.store.register_worker("x", StageId::A, None).unwrap();
                assert!(matches!(f.store.complete(&a.token, None, "x"), Err(TrackerError::NoJobHeld)));
                assert!(matches!(f.store.flag_invalid(&a.token, None, None), Err(TrackerError::NoJobHeld)));
                assert!(matches!(f.store.complete(&WorkerToken::new("nope"), None, "x"), Err(TrackerError::UnknownWorker)));
                assert!(matches!(f.store.claim(&WorkerToken::new("nope")), Err(TrackerError::UnknownWorker)));
                assert!(matches!(f.store.update_progress(&WorkerToken::new("nope"), "x"), Err(TrackerError::UnknownWorker)));
                assert!(!f.store.validate_worker(&WorkerToken::new("nope")).unwrap());
                assert!(f.store.validate_worker(&a.token).unwrap());

                f.store.claim(&a.token).unwrap();
                f.store.complete(&a.token, None, "once").unwrap();
                let before = f.store.job(1).unwrap();
                assert!(matches!(f.store.complete(&a.token, None, "twice"), Err(TrackerError::NoJobHeld)));
                let after = f.store.job(1).unwrap();
                assert_eq!(before.data, after.data);
                assert_eq!(before.events.len(), after.events.len());
                assert_eq!(f.store.leaderboard(0, 10).unwrap().items[0].jobs_completed, 1);
            }

            #[test]
            fn claim_job_takes_exactly_that_job_when_it_is_claimable() {
                let f = fx(2);
                load(&f.store, 3);
                let a = f.store.register_worker("a", StageId::A, None).unwrap();
                let other = f.store.register_worker("o", StageId::A, None).unwrap();
                assert_eq!(f.store.claim_job(&a.token, JobId(2)).unwrap().number.0, 2);
                assert!(matches!(f.store.claim_job(&other.token, JobId(2)), Err(TrackerError::NoJobAvailable)));
                assert!(matches!(f.store.claim_job(&other.token, JobId(99)), Err(TrackerError::NoJobAvailable)));
                f.store.complete(&a.token, None, "b-input").unwrap();
                // Job 2 is now at stage b: a stage-a worker cannot take it by number.
                assert!(matches!(f.store.claim_job(&other.token, JobId(2)), Err(TrackerError::NoJobAvailable)));
                let b = f.store.register_worker("b", StageId::B, None).unwrap();
                let claimed = f.store.claim_job(&b.token, JobId(2)).unwrap();
                assert_eq!((claimed.number.0, claimed.data.as_str()), (2, "b-input"));
            }

            #[test]
            fn complete_and_claim_completes_then_leases_the_next_job() {
                let f = fx(2);
                load(&f.store, 4);
                let a = f.store.register_worker("a", StageId::A, None).unwrap();
                let other = f.store.register_worker("o", StageId::A, None).unwrap();
                assert_eq!(f.store.claim(&a.token).unwrap().number.0, 1);
                assert_eq!(f.store.claim(&other.token).unwrap().number.0, 2);
                // Job 2 is leased by another worker: the next claimable job is 3.
                let (done, next) = f.store.complete_and_claim(&a.token, None, "out-1").unwrap();
                assert_eq!((done.number.0, done.next_stage), (1, Some(StageId::B)));
                let next = next.unwrap();
                assert_eq!((next.number.0, next.data.as_str(), next.attempt), (3, "job-3", 1));
                let (done, next) = f.store.complete_and_claim(&a.token, None, "out-3").unwrap();
                assert_eq!(done.number.0, 3);
                assert_eq!(next.unwrap().number.0, 4);
                // The completion stands even when nothing is left to claim.
                let (done, next) = f.store.complete_and_claim(&a.token, None, "out-4").unwrap();
                assert_eq!(done.number.0, 4);
                assert!(next.is_none());
                // Fenced like `complete`: a worker holding nothing changes nothing, claims nothing.
                f.store.release(&other.token, None).unwrap();
                assert!(matches!(f.store.complete_and_claim(&a.token, None, "stale"), Err(TrackerError::NoJobHeld)));
                assert_eq!(f.store.claim(&other.token).unwrap().number.0, 2);
                let b = f.store.register_worker("b", StageId::B, None).unwrap();
                let inputs: Vec<String> = (0..3).map(|_| {
                    let job = f.store.claim(&b.token).unwrap();
                    f.store.complete(&b.token, None, "final").unwrap();
                    job.data
                }).collect();
                assert_eq!(inputs, ["out-1", "out-3", "out-4"]);
                assert_eq!(f.store.leaderboard(0, 10).unwrap().items.iter().find(|e| e.nickname == "a").unwrap().jobs_completed, 3);
                let a_view = f.store.job(3).unwrap();
                let kinds: Vec<&str> = a_view.events.iter().map(|e| e.kind.as_str()).collect();
                assert_eq!(kinds, [event::CLAIM, event::COMPLETE, event::CLAIM, event::COMPLETE]);
            }

            #[test]
            fn retry_later_hides_the_job_until_due_and_keeps_attempts() {
                let f = fx(1);
                load(&f.store, 1);
                let w = f.store.register_worker("w", StageId::A, None).unwrap();
                assert_eq!(f.store.claim(&w.token).unwrap().attempt, 1);
                f.store.retry_later(&w.token, None, START_MS + 5_000, "network down").unwrap();
                assert!(matches!(f.store.retry_later(&w.token, None, START_MS, "again"), Err(TrackerError::NoJobHeld)));
                assert_eq!(f.store.job(1).unwrap().summary.state, JobState::Open);
                assert!(matches!(f.store.claim(&w.token), Err(TrackerError::NoJobAvailable)));
                assert!(matches!(f.store.claim_job(&w.token, JobId(1)), Err(TrackerError::NoJobAvailable)));
                f.clock.advance(Duration::from_secs(5));
                let again = f.store.claim(&w.token).unwrap();
                assert_eq!((again.number.0, again.attempt), (1, 2));
                let kinds: Vec<String> = f.store.job(1).unwrap().events.iter().map(|e| e.kind.clone()).collect();
                assert_eq!(kinds, ["claim", "retry", "claim"]);
            }

            #[test]
            fn fail_closes_the_job_with_its_reason_and_is_fenced() {
                let f = fx(2);
                load(&f.store, 2);
                let w = f.store.register_worker("w", StageId::A, None).unwrap();
                let job = f.store.claim(&w.token).unwrap();
                f.store.fail(&w.token, None, "unsupported format").unwrap();
                assert!(matches!(f.store.fail(&w.token, None, "twice"), Err(TrackerError::NoJobHeld)));
                let detail = f.store.job(job.number.0).unwrap();
                assert_eq!(detail.summary.state, JobState::Failed);
                assert_eq!(detail.summary.error.as_deref(), Some("unsupported format"));
                assert_eq!(detail.events.last().unwrap().detail.as_deref(), Some("unsupported format"));
                let counts = f.store.stage_counts().unwrap();
                assert_eq!((counts[0].failed, counts[0].open), (1, 1));
                // The failed job is never handed out again.
                let next = f.store.claim(&w.token).unwrap();
                assert_ne!(next.number.0, job.number.0);
                f.store.complete(&w.token, None, "x").unwrap();
                assert!(matches!(f.store.claim(&w.token), Err(TrackerError::NoJobAvailable)));
            }

            #[test]
            fn expired_lease_is_reclaimed_and_the_stale_worker_is_fenced_out() {
                let f = fx(2);
                load(&f.store, 1);
                let slow = f.store.register_worker("slow", StageId::A, Some(Duration::from_secs(30))).unwrap();
                let fast = f.store.register_worker("fast", StageId::A, None).unwrap();
                let first = f.store.claim(&slow.token).unwrap();
                assert!(matches!(f.store.claim(&fast.token), Err(TrackerError::NoJobAvailable)));
                f.clock.advance(Duration::from_secs(20));
                f.store.heartbeat(&slow.token).unwrap();
                f.clock.advance(Duration::from_secs(20));
                assert!(matches!(f.store.claim(&fast.token), Err(TrackerError::NoJobAvailable)));
                f.clock.advance(Duration::from_secs(31));
                assert_eq!(f.store.job_count(StageId::A).unwrap(), 1);
                let second = f.store.claim(&fast.token).unwrap();
                assert_eq!(second.number.0, first.number.0);
                assert!(second.lease > first.lease);
                assert_eq!(second.attempt, 2);
                assert!(matches!(f.store.complete(&slow.token, None, "late"), Err(TrackerError::LeaseLost { job: JobId(1) })));
                f.store.complete(&fast.token, None, "on time").unwrap();
                assert_eq!(f.store.job(1).unwrap().data[1].as_deref(), Some("on time"));
            }

            #[test]
            fn a_job_whose_attempts_are_used_up_is_failed_at_the_claim_not_handed_out() {
                let f = fx(1);
                load(&f.store, 2);
                // Each worker claims the first job and goes silent: its lease expires.
                for attempt in 1..=5 {
                    let crashing = f.store.register_worker("crashing", StageId::A, Some(Duration::from_secs(10))).unwrap();
                    let job = f.store.claim_job(&crashing.token, JobId(1)).unwrap();
                    assert_eq!(job.attempt, attempt);
                    f.clock.advance(Duration::from_secs(11));
                }
                let next = f.store.register_worker("next", StageId::A, None).unwrap();
                assert_eq!(f.store.claim(&next.token).unwrap().number, JobId(2), "open jobs come first");
                f.store.complete(&next.token, None, "x").unwrap();
                // The claim finds job 1 with its attempts used up (max-attempts is 5 by default):
                // it fails it instead of handing it out, and has nothing else to give.
                assert!(matches!(f.store.claim(&next.token), Err(TrackerError::NoJobAvailable)));
                let failed = f.store.job(1).unwrap();
                assert_eq!(failed.summary.state, JobState::Failed);
                assert_eq!(failed.summary.error.as_deref(), Some("gave up after 5 attempts; last: lease expired"));
                assert_eq!(failed.events.last().map(|e| e.kind.as_str()), Some(event::FAIL));
                assert_eq!(f.store.jobs(None, Some(JobState::Failed), 0, 10).unwrap().total, 1);
                assert!(matches!(f.store.claim_job(&next.token, JobId(1)), Err(TrackerError::NoJobAvailable)));
            }

            #[test]
            fn the_attempt_limit_counts_retries_and_each_stage_has_its_own() {
                let clock = ManualClock::new(START_MS);
                let config = StoreConfig { max_attempts: [2, 5, 5, 5, 5], ..config(2) };
                let db = TestDatabase::$backend();
                let store = JobStore::open(db.url(), config, Arc::new(clock.clone()), 4).unwrap();
                load(&store, 1);
                let w = store.register_worker("w", StageId::A, None).unwrap();
                for _ in 0..2 {
                    store.claim(&w.token).unwrap();
                    store.retry_later(&w.token, None, START_MS, "busy").unwrap();
                }
                assert!(matches!(store.claim(&w.token), Err(TrackerError::NoJobAvailable)));
                let failed = store.job(1).unwrap();
                assert_eq!(failed.summary.error.as_deref(), Some("gave up after 2 attempts; last: retried: busy"));
            }

            #[test]
            fn an_outcome_sent_again_after_its_answer_was_lost_does_not_touch_the_next_lease() {
                let f = fx(2);
                load(&f.store, 2);
                let w = f.store.register_worker("w", StageId::A, None).unwrap();
                let first = f.store.claim(&w.token).unwrap();
                let (_, next) = f.store.complete_and_claim(&w.token, Some(first.held()), "out-1").unwrap();
                let next = next.unwrap();
                assert_eq!(next.number, JobId(2));
                // The answer never reached the worker, which sends the same completion again.
                let again = f.store.complete_and_claim(&w.token, Some(first.held()), "out-1");
                assert!(matches!(again, Err(TrackerError::LeaseLost { job: JobId(1) })), "{again:?}");
                for outcome in [
                    f.store.retry_later(&w.token, Some(first.held()), START_MS, "x").err(),
                    f.store.fail(&w.token, Some(first.held()), "x").err(),
                    f.store.release(&w.token, Some(first.held())).err(),
                    f.store.flag_invalid(&w.token, Some(first.held()), None).err(),
                ] {
                    assert!(matches!(outcome, Some(TrackerError::LeaseLost { job: JobId(1) })), "{outcome:?}");
                }
                f.store.complete(&w.token, Some(next.held()), "out-2").unwrap();
                assert_eq!(f.store.job(2).unwrap().data[1].as_deref(), Some("out-2"));
                assert_eq!(f.store.job(1).unwrap().data[1].as_deref(), Some("out-1"));
            }

            #[test]
            fn a_released_lease_does_not_use_up_an_attempt_but_an_abandoned_one_does() {
                let f = fx(1);
                load(&f.store, 1);
                let w = f.store.register_worker("w", StageId::A, None).unwrap();
                for _ in 0..10 {
                    assert_eq!(f.store.claim(&w.token).unwrap().attempt, 1);
                    f.store.release(&w.token, None).unwrap();
                }
                assert_eq!(f.store.claim(&w.token).unwrap().attempt, 1);
                // Asking for a new job while holding one abandons it: that attempt counts.
                assert_eq!(f.store.claim(&w.token).unwrap().attempt, 2);
            }

            #[test]
            fn appending_adds_only_new_inputs_after_the_last_job_and_twice_is_a_no_op() {
                let f = fx(2);
                load(&f.store, 3);
                let w = f.store.register_worker("w", StageId::A, None).unwrap();
                let claimed = f.store.claim(&w.token).unwrap();
                let items: Vec<String> = ["job-2", "new-1", "new-2", "new-1", "job-3", "new-3"].map(String::from).to_vec();
                let appended = f.store.append_jobs(&items).unwrap();
                assert_eq!(appended, Appended { added: 3, skipped: 3 });
                assert_eq!(f.store.append_jobs(&items).unwrap(), Appended { added: 0, skipped: 6 });
                let inputs: Vec<_> = (1..=6).map(|n| f.store.job(n).unwrap().data[0].clone().unwrap()).collect();
                assert_eq!(inputs, ["job-1", "job-2", "job-3", "new-1", "new-2", "new-3"]);
                assert_eq!(f.store.jobs(None, None, 0, 1).unwrap().total, 6);
                // The running lease is untouched, and the new jobs are claimable.
                f.store.complete(&w.token, Some(claimed.held()), "out").unwrap();
                let numbers: Vec<i64> = (0..5).map(|_| {
                    let job = f.store.claim(&w.token).unwrap();
                    f.store.complete(&w.token, Some(job.held()), "out").unwrap();
                    job.number.0
                }).collect();
                assert_eq!(numbers, [2, 3, 4, 5, 6]);
                // Appending to an empty project starts at job 1.
                let empty = fx(1);
                assert_eq!(empty.store.append_jobs(&["only".to_owned()]).unwrap(), Appended { added: 1, skipped: 0 });
                assert_eq!(empty.store.job(1).unwrap().data[0].as_deref(), Some("only"));
            }

            #[test]
            fn sweep_removes_silent_workers_and_reopens_their_jobs() {
                let f = fx(1);
                load(&f.store, 2);
                let silent = f.store.register_worker("s", StageId::A, None).unwrap();
                let chatty = f.store.register_worker("c", StageId::A, None).unwrap();
                f.store.claim(&silent.token).unwrap();
                f.store.claim(&chatty.token).unwrap();
                f.clock.advance(Duration::from_secs(400));
                f.store.update_progress(&chatty.token, "50%").unwrap();
                f.clock.advance(Duration::from_secs(201));
                let report = f.store.sweep().unwrap();
                assert!(report.ran);
                assert_eq!((report.workers_removed, report.leases_expired), (1, 1));
                assert!(!f.store.validate_worker(&silent.token).unwrap());
                assert!(f.store.validate_worker(&chatty.token).unwrap());
                assert_eq!(f.store.job_count(StageId::A).unwrap(), 1);
                assert!(matches!(f.store.complete(&silent.token, None, "x"), Err(TrackerError::UnknownWorker)));
                f.store.complete(&chatty.token, None, "x").unwrap();
                let workers = f.store.workers(None, 0, 10).unwrap();
                assert_eq!(workers.total, 1);
                assert_eq!(workers.items[0].progress, "Completed Job");
            }

            #[test]
            fn a_worker_polling_while_there_is_no_job_is_not_swept_as_silent() {
                let f = fx(1);
                let idle = f.store.register_worker("idle", StageId::A, None).unwrap();
                let silent = f.store.register_worker("silent", StageId::A, None).unwrap();
                for _ in 0..3 {
                    f.clock.advance(Duration::from_secs(250));
                    assert!(matches!(f.store.claim(&idle.token), Err(TrackerError::NoJobAvailable)));
                }
                let report = f.store.sweep().unwrap();
                assert_eq!(report.workers_removed, 1, "only the silent worker is swept");
                assert!(f.store.validate_worker(&idle.token).unwrap());
                assert!(!f.store.validate_worker(&silent.token).unwrap());
                load(&f.store, 1);
                assert_eq!(f.store.claim(&idle.token).unwrap().number.0, 1, "the poller gets work when it comes");
            }

            #[test]
            fn a_swept_worker_job_reopens_even_before_its_lease_runs_out() {
                let f = fx(1);
                load(&f.store, 1);
                let w = f.store.register_worker("w", StageId::A, None).unwrap();
                // Claimed within the heartbeat granularity: `last_seen` stays at registration, the
                // lease runs from the claim, a little later.
                f.clock.advance(Duration::from_millis(500));
                f.store.claim(&w.token).unwrap();
                f.clock.advance(Duration::from_millis(600_200));
                let report = f.store.sweep().unwrap();
                assert_eq!((report.workers_removed, report.leases_expired), (1, 1));
                assert_eq!(f.store.job_count(StageId::A).unwrap(), 1);
                let kinds: Vec<String> = f.store.job(1).unwrap().events.into_iter().map(|e| e.kind).collect();
                assert_eq!(kinds, [event::CLAIM, event::EXPIRE]);
            }

            #[test]
            fn bye_and_new_claims_reopen_the_held_job() {
                let f = fx(1);
                load(&f.store, 2);
                let w = f.store.register_worker("w", StageId::A, None).unwrap();
                assert_eq!(f.store.claim(&w.token).unwrap().number.0, 1);
                assert_eq!(f.store.claim(&w.token).unwrap().number.0, 1, "abandoned job 1 is open again");
                assert_eq!(f.store.job_count(StageId::A).unwrap(), 1);
                f.store.bye(&w.token).unwrap();
                assert_eq!(f.store.job_count(StageId::A).unwrap(), 2);
                assert!(!f.store.validate_worker(&w.token).unwrap());
                assert!(matches!(f.store.bye(&w.token), Err(TrackerError::UnknownWorker)));
                let v = f.store.register_worker("v", StageId::A, None).unwrap();
                f.store.claim(&v.token).unwrap();
                f.store.release(&v.token, None).unwrap();
                assert_eq!(f.store.job_count(StageId::A).unwrap(), 2);
                assert!(f.store.validate_worker(&v.token).unwrap());
            }

            #[test]
            fn flags_reopen_below_threshold_and_send_back_at_it() {
                let f = fx(2);
                load(&f.store, 1);
                let a = f.store.register_worker("a", StageId::A, None).unwrap();
                let b = f.store.register_worker("b", StageId::B, None).unwrap();
                f.store.claim(&a.token).unwrap();
                f.store.complete(&a.token, None, "shard-1").unwrap();
                for report in 1..=2 {
                    f.store.claim(&b.token).unwrap();
                    let outcome = f.store.flag_invalid(&b.token, None, Some("corrupt")).unwrap();
                    assert_eq!((outcome.reports, outcome.sent_back_to), (report, None));
                    assert_eq!(f.store.job_count(StageId::B).unwrap(), 1);
                }
                f.store.claim(&b.token).unwrap();
                let outcome = f.store.flag_invalid(&b.token, None, None).unwrap();
                assert_eq!((outcome.reports, outcome.sent_back_to), (3, Some(StageId::A)));
                assert_eq!(f.store.job_count(StageId::B).unwrap(), 0);
                let again = f.store.claim(&a.token).unwrap();
                assert_eq!(again.data, "job-1", "stage a input is intact");
                f.store.complete(&a.token, None, "shard-1 redone").unwrap();
                f.store.claim(&b.token).unwrap();
                let outcome = f.store.flag_invalid(&b.token, None, None).unwrap();
                assert_eq!(outcome.reports, 1, "the count restarts when the job moves");
                // Stage a flags only re-open the job at stage a.
                f.store.claim(&b.token).unwrap();
                f.store.complete(&b.token, None, "done").unwrap();
                load_more_and_flag_at_a(&f);
            }

            #[test]
            fn a_job_sent_back_threshold_times_fails_instead_of_looping() {
                let f = fx(2);
                load(&f.store, 1);
                let a = f.store.register_worker("a", StageId::A, None).unwrap();
                let b = f.store.register_worker("b", StageId::B, None).unwrap();
                for round in 1..=4 {
                    f.store.claim(&a.token).unwrap();
                    f.store.complete(&a.token, None, "bad shard").unwrap();
                    let mut last = None;
                    for _ in 0..3 {
                        f.store.claim(&b.token).unwrap();
                        last = Some(f.store.flag_invalid(&b.token, None, Some("unreadable")).unwrap());
                    }
                    let last = last.unwrap();
                    let state = f.store.job(1).unwrap().summary.state;
                    if round < 4 {
                        assert_eq!((last.sent_back_to, last.failed), (Some(StageId::A), false));
                        assert_eq!(state, JobState::Open, "round {round}: sent back to stage a");
                    } else {
                        assert_eq!((last.sent_back_to, last.failed), (None, true));
                        assert_eq!(state, JobState::Failed);
                    }
                }
                let detail = f.store.job(1).unwrap();
                assert!(detail.summary.error.as_deref().unwrap().contains("after 3 send-backs: unreadable"));
                assert!(matches!(f.store.claim(&a.token), Err(TrackerError::NoJobAvailable)));
            }

            fn load_more_and_flag_at_a(f: &Fixture) {
                f.store.load_jobs(&["x".to_owned()], true).unwrap();
                let a = f.store.register_worker("a", StageId::A, None).unwrap();
                for report in 1..=4 {
                    f.store.claim(&a.token).unwrap();
                    let outcome = f.store.flag_invalid(&a.token, None, None).unwrap();
                    assert_eq!((outcome.reports, outcome.sent_back_to), (report, None));
                }
                assert_eq!(f.store.job_count(StageId::A).unwrap(), 1);
            }

            #[test]
            fn loading_refuses_to_wipe_without_reset() {
                let f = fx(1);
                load(&f.store, 3);
                assert!(matches!(
                    f.store.load_jobs(&["x".to_owned()], false),
                    Err(TrackerError::NotEmpty { existing: 3 })
                ));
                assert_eq!(f.store.job_count(StageId::A).unwrap(), 3);
                let items: Vec<String> = (0..2500).map(|i| i.to_string()).collect();
                assert_eq!(f.store.load_jobs(&items, true).unwrap(), 2500);
                assert_eq!(f.store.job_count(StageId::A).unwrap(), 2500);
                assert_eq!(f.store.job(2500).unwrap().data[0].as_deref(), Some("2499"));
                assert!(matches!(f.store.job(2501), Err(TrackerError::NoSuchJob(2501))));
                let page = f.store.jobs(Some(StageId::A), Some(JobState::Open), 10, 5).unwrap();
                assert_eq!(page.total, 2500);
                assert_eq!(page.items.iter().map(|j| j.id).collect::<Vec<_>>(), [11, 12, 13, 14, 15]);
            }

            #[test]
            fn throughput_and_worker_lookup() {
                let f = fx(2);
                load(&f.store, 3);
                let a = f.store.register_worker("a", StageId::A, None).unwrap();
                for _ in 0..3 {
                    f.store.claim(&a.token).unwrap();
                    f.store.complete(&a.token, None, "x").unwrap();
                    f.clock.advance(Duration::from_secs(61));
                }
                let points = f.store.throughput(START_MS).unwrap();
                assert_eq!(points.len(), 3);
                assert!(points.iter().all(|p| p.stage == "a" && p.completed == 1));
                let found = f.store.worker_by_name(StageId::A, &a.display_name).unwrap().unwrap();
                assert_eq!(found.jobs_completed, 3);
                assert!(f.store.worker_by_name(StageId::B, &a.display_name).unwrap().is_none());
            }

            #[test]
            fn counters_and_problem_jobs_come_from_the_database() {
                let f = fx(2);
                load(&f.store, 4);
                assert!(f.store.event_counts().unwrap().is_empty());
                assert!(f.store.problem_jobs(0, 10).unwrap().items.is_empty());
                let a = f.store.register_worker("a", StageId::A, None).unwrap();
                let b = f.store.register_worker("b", StageId::B, None).unwrap();
                for _ in 0..2 {
                    f.store.claim(&a.token).unwrap();
                    f.store.complete(&a.token, None, "shard").unwrap();
                }
                f.store.claim(&b.token).unwrap();
                f.store.flag_invalid(&b.token, None, Some("truncated tar")).unwrap();
                f.store.claim(&b.token).unwrap();
                f.store.flag_invalid(&b.token, None, Some("bad header")).unwrap();
                f.clock.advance(Duration::from_secs(1));
                f.store.claim(&a.token).unwrap();
                f.db.execute("UPDATE jobs SET state = 'failed', error = 'decoder crashed', updated_at = 1 WHERE id = 4");

                let states = f.store.state_counts().unwrap();
                let state = |stage, state| StateCount { stage, state, jobs: 0 };
                assert_eq!(
                    states,
                    [
                        StateCount { jobs: 1, ..state(StageId::A, JobState::Failed) },
                        StateCount { jobs: 1, ..state(StageId::A, JobState::Leased) },
                        StateCount { jobs: 2, ..state(StageId::B, JobState::Open) },
                    ]
                );
                let events = |kind: &str| -> Vec<(StageId, i64)> {
                    f.store
                        .event_counts()
                        .unwrap()
                        .into_iter()
                        .filter(|c: &EventCount| c.kind == kind)
                        .map(|c| (c.stage, c.events))
                        .collect()
                };
                assert_eq!(events(event::CLAIM), [(StageId::A, 3), (StageId::B, 2)]);
                assert_eq!(events(event::COMPLETE), [(StageId::A, 2)]);
                assert_eq!(events(event::FLAG), [(StageId::B, 2)]);
                assert!(events(event::EXPIRE).is_empty());
                assert_eq!(f.store.worker_counts().unwrap(), [(StageId::A, 1), (StageId::B, 1)]);

                let problems = f.store.problem_jobs(0, 10).unwrap();
                assert_eq!(problems.total, 2);
                let shown: Vec<_> =
                    problems.items.iter().map(|p| (p.summary.id, p.summary.state, p.reason.as_deref())).collect();
                // The flagged job changed last; the latest report's reason is shown.
                assert_eq!(shown, [(1, JobState::Open, Some("bad header")), (4, JobState::Failed, Some("decoder crashed"))]);
                assert_eq!(problems.items[0].summary.flags, 2);
                let second = f.store.problem_jobs(1, 10).unwrap();
                assert_eq!((second.total, second.items.len(), second.items[0].summary.id), (2, 1, 4));
            }

            #[test]
            fn concurrent_workers_never_share_a_lease_and_finish_every_job_once() {
                const JOBS: usize = 10_000;
                const WORKERS: usize = 64;
                let f = fx(1);
                load(&f.store, JOBS);
                let claims: Arc<Mutex<HashMap<i64, usize>>> = Arc::default();
                let threads: Vec<_> = (0..WORKERS)
                    .map(|i| {
                        let store = f.store.clone();
                        let claims = Arc::clone(&claims);
                        std::thread::spawn(move || {
                            let w = store.register_worker(&format!("w{i}"), StageId::A, None).unwrap();
                            let mut done = 0;
                            loop {
                                match store.claim(&w.token) {
                                    Ok(job) => {
                                        *claims.lock().unwrap().entry(job.number.0).or_default() += 1;
                                        store.complete(&w.token, None, &format!("out-{}", job.number.0)).unwrap();
                                        done += 1;
                                    }
                                    Err(TrackerError::NoJobAvailable) => return done,
                                    Err(e) => panic!("claim failed: {e}"),
                                }
                            }
                        })
                    })
                    .collect();
                let completed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
                assert_eq!(completed, JOBS);
                let claims = claims.lock().unwrap();
                assert_eq!(claims.len(), JOBS);
                assert!(claims.values().all(|&n| n == 1), "a job was handed out twice");
                let counts = f.store.stage_counts().unwrap();
                assert_eq!(counts[0].done, JOBS as i64);
                let board: i64 = f.store.leaderboard(0, 100).unwrap().items.iter().map(|e| e.jobs_completed).sum();
                assert_eq!(board, JOBS as i64);
                assert_eq!(f.store.job(777).unwrap().result.as_deref(), Some("out-777"));
            }
        }
    };
}

store_suite!(sqlite);
store_suite!(postgres);

/// Updates of the `workers` table as PostgreSQL counts them.
#[derive(diesel::QueryableByName)]
struct WorkerUpdates {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    updates: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    hot: i64,
}

#[test]
fn on_postgres_heartbeats_are_hot_updates_that_write_no_index_entry() {
    use diesel::{Connection, RunQueryDsl};

    const BEATS: i64 = 20;
    let f = fixture(TestDatabase::postgres(), 1);
    let worker = f.store.register_worker("beating", StageId::A, None).unwrap();
    for _ in 0..BEATS {
        f.clock.advance(Duration::from_secs(2));
        f.store.heartbeat(&worker.token).unwrap();
    }
    let cascade_tracker::DatabaseUrl::Postgres(url) = f.db.url() else { unreachable!("a PostgreSQL database") };
    let mut conn = diesel::PgConnection::establish(url).unwrap();
    // The store's connections report their statistics within seconds of going idle.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let counted = loop {
        let counted: WorkerUpdates = diesel::sql_query(
            "SELECT n_tup_upd AS updates, n_tup_hot_upd AS hot FROM pg_stat_user_tables WHERE relname = 'workers'",
        )
        .get_result(&mut conn)
        .unwrap();
        if counted.updates >= BEATS || std::time::Instant::now() > deadline {
            break counted;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(counted.updates, BEATS, "one update per recorded heartbeat");
    assert_eq!(counted.hot, counted.updates, "every heartbeat was a HOT update");
}
