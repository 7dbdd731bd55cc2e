//! Push delivery against a real HTTP receiver on 127.0.0.1: order, retries
//! with backoff, redelivery after a crash, dead letter with replay and
//! skip, redirects, leases shared by two deliverers, the background loop.
//! The clock is injected: no test sleeps for a backoff.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use scimgate_changes::memory::MemoryPositions;
use scimgate_changes::sign::{jwks, verify_eddsa};
use scimgate_changes::{ChangeSource, Op, Position, PositionStore, State, StepOutcome};

const T0: i64 = 1_700_000_000_000;

/// First deliveries in arrival order must be 1, 2, 3, … (redeliveries of
/// an already-delivered seq are allowed, skipping ahead is not).
fn assert_in_order_without_gaps(txns: &[u64], newest: u64) {
    let mut high = 0;
    for &t in txns {
        assert!(t <= high + 1, "{t} arrived before {} in {txns:?}", high + 1);
        high = high.max(t);
    }
    assert_eq!(high, newest, "{txns:?}");
}

#[test]
fn delivers_in_seq_order_with_the_right_headers_and_claims() {
    let rx = Receiver::start();
    let (log, store) = memory();
    let clock = ManualClock::at(T0);
    for (id, op) in [
        ("a", Op::Create),
        ("b", Op::Create),
        ("a", Op::Patch),
        ("b", Op::Delete),
    ] {
        log.append(change(id, op));
    }
    let d = deliverer(subscriber(&rx.url), "n1", &log, store.clone(), &clock);
    assert_eq!(
        d.step(T0),
        StepOutcome::Delivered {
            count: 4,
            acked: 4,
            more: false
        }
    );
    let reqs = rx.requests();
    assert_eq!(rx.txns(), [1, 2, 3, 4]);
    let set = jwks(&[key().verifying_key()]);
    for (i, r) in reqs.iter().enumerate() {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/events");
        assert_eq!(r.header("content-type"), Some("application/secevent+jwt"));
        assert_eq!(r.header("accept"), Some("application/json"));
        let claims = verify_eddsa(&r.body, &set).unwrap();
        assert_eq!(claims["jti"], format!("inst-{}", i + 1));
        assert_eq!(claims["aud"], "https://rx.example.test");
        assert_eq!(claims["iat"], T0 / 1000);
    }
    let last = verify_eddsa(&reqs[3].body, &set).unwrap();
    assert_eq!(last["sub_id"]["uri"], "/Users/b");
    assert!(last["events"]["urn:ietf:params:scim:event:prov:delete"].is_object());
    let status = d.status().unwrap();
    assert_eq!((status.acked, status.newest, status.lag), (4, 4, 0));
    assert_eq!(d.step(T0), StepOutcome::Idle);
    assert_eq!(rx.requests().len(), 4);
}

#[test]
fn batches_report_more_and_continue() {
    let rx = Receiver::start();
    let (log, store) = memory();
    let clock = ManualClock::at(T0);
    for i in 0..5 {
        log.append(change(&format!("u{i}"), Op::Create));
    }
    let mut sub = subscriber(&rx.url);
    sub.batch_size = 2;
    let d = deliverer(sub, "n1", &log, store, &clock);
    assert_eq!(
        d.step(T0),
        StepOutcome::Delivered {
            count: 2,
            acked: 2,
            more: true
        }
    );
    assert_eq!(
        d.step(T0),
        StepOutcome::Delivered {
            count: 2,
            acked: 4,
            more: true
        }
    );
    assert_eq!(
        d.step(T0),
        StepOutcome::Delivered {
            count: 1,
            acked: 5,
            more: false
        }
    );
    assert_eq!(rx.txns(), [1, 2, 3, 4, 5]);
}

#[test]
fn a_receiver_down_for_a_while_gets_everything_in_order_when_back() {
    let rx = Receiver::start();
    let (log, store) = memory();
    let clock = ManualClock::at(T0);
    log.append(change("a", Op::Create));
    log.append(change("a", Op::Patch));
    // Down: errors, a dropped connection, a timeout.
    rx.script([
        Reply::Status(503, "maintenance"),
        Reply::Close,
        Reply::Status(500, ""),
        Reply::Slow(Duration::from_secs(3)),
    ]);
    let mut sub = subscriber(&rx.url);
    sub.request_timeout = Duration::from_millis(300);
    let ceiling = |n| sub.backoff.ceiling(n).as_millis() as i64;
    let ceilings: Vec<i64> = (1..=4).map(ceiling).collect();
    let d = deliverer(sub, "n1", &log, store, &clock);
    let mut now = T0;
    for (attempt, ceiling) in (1..=4).zip(ceilings) {
        match d.step(now) {
            StepOutcome::Retry {
                delivered,
                seq,
                attempts,
                retry_at_ms,
                error,
            } => {
                assert_eq!((delivered, seq, attempts), (0, 1, attempt), "{error}");
                assert!(retry_at_ms > now && retry_at_ms <= now + ceiling.max(1));
                // Not due yet: nothing is sent.
                if retry_at_ms > now + 1 {
                    let before = rx.requests().len();
                    assert_eq!(
                        d.step(now + 1),
                        StepOutcome::Waiting {
                            until_ms: retry_at_ms
                        }
                    );
                    assert_eq!(rx.requests().len(), before);
                }
                if attempt == 1 {
                    assert_eq!(error, "HTTP 503: maintenance");
                }
                now = retry_at_ms;
            }
            other => panic!("attempt {attempt}: {other:?}"),
        }
        // Changes keep arriving while the receiver is down.
        log.append(change("b", Op::Create));
    }
    assert_eq!(d.status().unwrap().lag, 6);
    assert!(matches!(
        d.step(now),
        StepOutcome::Delivered {
            count: 6,
            acked: 6,
            ..
        }
    ));
    let txns = rx.txns();
    // Head-of-line: only seq 1 was tried while it failed.
    assert_eq!(&txns[..4], [1, 1, 1, 1]);
    assert_eq!(&txns[4..], [1, 2, 3, 4, 5, 6]);
    assert_in_order_without_gaps(&txns, 6);
    assert_eq!(d.status().unwrap().lag, 0);
    assert_eq!(d.status().unwrap().attempts, 0);
}

/// A store that fails the `fail_at`-th save, as a crash right after the
/// POST and before the position is written would.
struct CrashOnSave {
    inner: Arc<MemoryPositions>,
    saves: std::sync::atomic::AtomicUsize,
    fail_at: usize,
}

impl PositionStore for CrashOnSave {
    fn load(&self, s: &str) -> Result<Position, String> {
        self.inner.load(s)
    }
    fn save(&self, s: &str, pos: &Position) -> Result<bool, String> {
        let n = self.saves.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if n == self.fail_at {
            return Err("crashed".into());
        }
        self.inner.save(s, pos)
    }
    fn try_lease(&self, s: &str, node: &str, ttl: Duration, now: i64) -> Result<bool, String> {
        self.inner.try_lease(s, node, ttl, now)
    }
    fn release(&self, s: &str, node: &str) -> Result<(), String> {
        self.inner.release(s, node)
    }
}

#[test]
fn a_crash_between_post_and_save_redelivers_in_order() {
    let rx = Receiver::start();
    let (log, store) = memory();
    let clock = ManualClock::at(T0);
    for id in ["a", "b", "c"] {
        log.append(change(id, Op::Create));
    }
    let crashing = Arc::new(CrashOnSave {
        inner: store.clone(),
        saves: Default::default(),
        fail_at: 2,
    });
    let d = deliverer(subscriber(&rx.url), "n1", &log, crashing, &clock);
    assert_eq!(d.step(T0), StepOutcome::StoreError("crashed".into()));
    assert_eq!(rx.txns(), [1, 2]);
    assert_eq!(store.load("rx").unwrap().acked, 1);
    drop(d);
    // The "crashed" node never released its lease: the restarted one (same
    // node name) takes it over at once.
    let restarted = deliverer(subscriber(&rx.url), "n1", &log, store.clone(), &clock);
    assert_eq!(
        restarted.step(T0),
        StepOutcome::Delivered {
            count: 2,
            acked: 3,
            more: false
        }
    );
    let txns = rx.txns();
    assert_eq!(txns, [1, 2, 2, 3]);
    assert_in_order_without_gaps(&txns, 3);
}

#[test]
fn dead_letter_after_max_attempts_then_replay_and_skip() {
    let rx = Receiver::start();
    let (log, store) = memory();
    let clock = ManualClock::at(T0);
    log.append(change("a", Op::Create));
    log.append(change("b", Op::Create));
    let long_body: &'static str =
        Box::leak(format!("{}SECRET-TAIL", "e".repeat(300)).into_boxed_str());
    rx.script([Reply::Status(500, "boom"), Reply::Status(500, long_body)]);
    let mut sub = subscriber(&rx.url);
    sub.max_attempts = 2;
    let d = deliverer(sub, "n1", &log, store.clone(), &clock);
    let StepOutcome::Retry { retry_at_ms, .. } = d.step(T0) else {
        panic!()
    };
    let StepOutcome::DeadLettered { seq, error } = d.step(retry_at_ms) else {
        panic!()
    };
    assert_eq!(seq, 1);
    assert!(error.starts_with("HTTP 500: eee"), "{error}");
    assert!(
        !error.contains("SECRET-TAIL") && error.len() < 260,
        "{error}"
    );
    let status = d.status().unwrap();
    assert_eq!((status.acked, status.lag, status.attempts), (0, 2, 2));
    assert!(matches!(status.state, State::DeadLettered { seq: 1, .. }));
    // Dead-lettered: nothing more is sent, however late it gets.
    assert!(matches!(
        d.step(T0 + 86_400_000),
        StepOutcome::DeadLettered { seq: 1, .. }
    ));
    assert_eq!(rx.requests().len(), 2);

    // Replay from 1: delivered (the receiver answers 202 again).
    d.replay(1).unwrap();
    assert_eq!(d.status().unwrap().state, State::Active);
    assert_eq!(
        d.step(T0),
        StepOutcome::Delivered {
            count: 2,
            acked: 2,
            more: false
        }
    );
    // Replay from 2 again: only 2 comes again.
    d.replay(2).unwrap();
    assert_eq!(
        d.step(T0),
        StepOutcome::Delivered {
            count: 1,
            acked: 2,
            more: false
        }
    );
    assert_eq!(rx.txns(), [1, 1, 1, 2, 2]);

    // Dead letter at 3, skip it: 4 follows, 3 is never delivered again.
    log.append(change("c", Op::Create));
    log.append(change("d", Op::Create));
    // A healthy head is not skipped.
    assert_eq!(d.skip().unwrap(), None);
    assert_eq!(d.status().unwrap().acked, 2);
    rx.script([Reply::Status(500, ""), Reply::Status(500, "")]);
    let StepOutcome::Retry { retry_at_ms, .. } = d.step(T0) else {
        panic!()
    };
    assert!(matches!(
        d.step(retry_at_ms),
        StepOutcome::DeadLettered { seq: 3, .. }
    ));
    assert_eq!(d.skip().unwrap(), Some(3));
    assert_eq!(
        d.step(retry_at_ms),
        StepOutcome::Delivered {
            count: 1,
            acked: 4,
            more: false
        }
    );
    assert_eq!(rx.txns(), [1, 1, 1, 2, 2, 3, 3, 4]);
    assert_eq!(d.skip().unwrap(), None);
    assert_eq!(d.status().unwrap().lag, 0);
}

#[test]
fn a_redirect_is_not_followed() {
    let rx = Receiver::start();
    let elsewhere = Receiver::start();
    let (log, store) = memory();
    let clock = ManualClock::at(T0);
    log.append(change("a", Op::Create));
    rx.script([Reply::Redirect(elsewhere.url.clone())]);
    let d = deliverer(subscriber(&rx.url), "n1", &log, store, &clock);
    let StepOutcome::Retry {
        error, retry_at_ms, ..
    } = d.step(T0)
    else {
        panic!()
    };
    assert!(
        error.contains("302") && error.contains("not followed"),
        "{error}"
    );
    assert!(elsewhere.requests().is_empty());
    // The next attempt goes to the configured url again, and succeeds.
    assert!(matches!(
        d.step(retry_at_ms),
        StepOutcome::Delivered { count: 1, .. }
    ));
    assert_eq!(rx.txns(), [1, 1]);
    assert!(elsewhere.requests().is_empty());
}

#[test]
fn two_deliverers_sharing_a_store_deliver_each_event_once() {
    let rx = Receiver::start();
    let (log, store) = memory();
    let clock = ManualClock::at(T0);
    for i in 0..30 {
        log.append(change(&format!("u{i}"), Op::Create));
    }
    let mut sub = subscriber(&rx.url);
    sub.batch_size = 3;
    let a = Arc::new(deliverer(
        sub.clone(),
        "node-a",
        &log,
        store.clone(),
        &clock,
    ));
    let b = Arc::new(deliverer(sub, "node-b", &log, store.clone(), &clock));
    let threads: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|d| {
            std::thread::spawn(move || {
                let mut busy = 0;
                while d.status().unwrap().lag > 0 {
                    if d.step(T0) == StepOutcome::Busy {
                        busy += 1;
                        std::thread::yield_now();
                    }
                }
                busy
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let txns = rx.txns();
    assert_eq!(txns, (1..=30).collect::<Vec<u64>>());
}

#[test]
fn a_node_that_dies_holding_the_lease_hands_over_when_it_expires() {
    let rx = Receiver::start();
    let (log, store) = memory();
    let clock = ManualClock::at(T0);
    log.append(change("a", Op::Create));
    // node-dead took the lease and died.
    let ttl = Duration::from_secs(30);
    assert!(store.try_lease("rx", "node-dead", ttl, T0).unwrap());
    let d = deliverer(subscriber(&rx.url), "node-b", &log, store.clone(), &clock);
    assert_eq!(d.step(T0 + 1000), StepOutcome::Busy);
    assert!(rx.requests().is_empty());
    clock.set(T0 + 30_000);
    assert!(matches!(
        d.step(T0 + 30_000),
        StepOutcome::Delivered { count: 1, .. }
    ));
    assert_eq!(rx.txns(), [1]);
    // Released after the step.
    assert_eq!(store.lease_holder("rx"), None);
}

#[test]
fn an_operator_change_during_delivery_is_not_overwritten() {
    let rx = Receiver::start();
    let (log, store) = memory();
    let clock = ManualClock::at(T0);
    log.append(change("a", Op::Create));
    log.append(change("b", Op::Create));
    // The first POST is held while the operator skips ahead.
    let (held, release) = hold();
    rx.script([held]);
    let d = Arc::new(deliverer(
        subscriber(&rx.url),
        "n1",
        &log,
        store.clone(),
        &clock,
    ));
    let d2 = d.clone();
    let step = std::thread::spawn(move || d2.step(T0));
    rx.next_request().unwrap();
    let mut pos = store.load("rx").unwrap();
    pos.acked = 2;
    assert!(store.save("rx", &pos).unwrap());
    release.send(()).unwrap();
    assert_eq!(step.join().unwrap(), StepOutcome::Superseded);
    assert_eq!(store.load("rx").unwrap().acked, 2);
    assert_eq!(rx.txns(), [1]);
}

#[test]
fn the_background_loop_delivers_on_notify() {
    let rx = Receiver::start();
    let (log, store) = memory();
    // The loop reads the log once, idle, before anything is written.
    struct Signalling(
        Arc<scimgate_changes::memory::MemoryLog>,
        std::sync::mpsc::Sender<()>,
    );
    impl ChangeSource for Signalling {
        fn changes_after(
            &self,
            after: u64,
            limit: usize,
        ) -> Result<Vec<scimgate_changes::Change>, String> {
            let r = self.0.changes_after(after, limit);
            let _ = self.1.send(());
            r
        }
        fn newest_seq(&self) -> Result<u64, String> {
            self.0.newest_seq()
        }
    }
    let (tx, read) = std::sync::mpsc::channel();
    let source = Arc::new(Signalling(log.clone(), tx));
    let d = Arc::new(
        scimgate_changes::Deliverer::new(subscriber(&rx.url), issuer(), key(), "n1", source, store)
            .unwrap()
            // Far longer than the test: only notify() can wake it.
            .with_poll_interval(Duration::from_secs(3600)),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (d2, stop2) = (d.clone(), stop.clone());
    let (seen_tx, seen) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        d2.run_observed(&stop2, |o| {
            let _ = seen_tx.send(o.clone());
        })
    });
    read.recv_timeout(Duration::from_secs(20)).unwrap();
    log.append(change("a", Op::Create));
    log.append(change("b", Op::Create));
    d.notifier().notify();
    assert_eq!(txn_of(&rx.next_request().unwrap().body), 1);
    assert_eq!(txn_of(&rx.next_request().unwrap().body), 2);
    stop.store(true, std::sync::atomic::Ordering::Release);
    d.notifier().notify();
    handle.join().unwrap();
    assert_eq!(rx.txns(), [1, 2]);
    let outcomes: Vec<StepOutcome> = seen.try_iter().collect();
    assert_eq!(outcomes.first(), Some(&StepOutcome::Idle));
    assert!(outcomes.contains(&StepOutcome::Delivered {
        count: 2,
        acked: 2,
        more: false
    }));
}

#[test]
fn skip_passes_a_failing_head_before_it_is_dead_lettered() {
    let rx = Receiver::start();
    let (log, store) = memory();
    let clock = ManualClock::at(T0);
    log.append(change("poison", Op::Create));
    log.append(change("fine", Op::Create));
    rx.script([Reply::Status(400, "bad")]);
    let d = deliverer(subscriber(&rx.url), "n1", &log, store, &clock);
    assert!(matches!(d.step(T0), StepOutcome::Retry { seq: 1, .. }));
    assert_eq!(d.skip().unwrap(), Some(1));
    // The pending backoff is cleared with it: 2 goes at once.
    assert_eq!(
        d.step(T0),
        StepOutcome::Delivered {
            count: 1,
            acked: 2,
            more: false
        }
    );
    assert_eq!(rx.txns(), [1, 2]);
}
