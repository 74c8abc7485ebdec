//! Sequential behaviour of every queue against `VecDeque` (one thread, heap queues).

use std::collections::VecDeque;

use proptest::prelude::*;
use shmkit::queue::{bytes, mpmc, spsc, TryPopError, TryPushError};

#[derive(Debug, Clone)]
enum Op {
    Push(u32),
    Pop,
    PushSlice(Vec<u32>),
    PopSlice(usize),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            3 => any::<u32>().prop_map(Op::Push),
            3 => Just(Op::Pop),
            1 => prop::collection::vec(any::<u32>(), 0..12).prop_map(Op::PushSlice),
            1 => (0usize..12).prop_map(Op::PopSlice),
        ],
        0..200,
    )
}

/// Run `ops` against a fresh queue of `cap` slots (`$make(cap)` gives the queue) and a
/// `VecDeque`, checking every result; `$extra(tx, rx, model)` adds per-step checks.
macro_rules! check_against_vecdeque {
    ($make:expr, $cap:expr, $ops:expr, $extra:expr) => {{
        let cap: usize = $cap;
        let q = $make(cap as u64);
        let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
        let mut model = VecDeque::new();
        for op in $ops {
            match op {
                Op::Push(v) => {
                    let r = tx.try_push(v);
                    if model.len() < cap {
                        prop_assert_eq!(r, Ok(()));
                        model.push_back(v);
                    } else {
                        prop_assert_eq!(r, Err(TryPushError::Full(v)));
                    }
                }
                Op::Pop => prop_assert_eq!(rx.try_pop().ok(), model.pop_front()),
                Op::PushSlice(items) => {
                    let room = cap - model.len();
                    match tx.try_push_slice(&items) {
                        Ok(n) => {
                            prop_assert_eq!(n, items.len().min(room));
                            model.extend(&items[..n]);
                        }
                        Err(e) => {
                            prop_assert!(room == 0 && !items.is_empty());
                            prop_assert_eq!(e, TryPushError::Full(()));
                        }
                    }
                }
                Op::PopSlice(k) => {
                    let mut out = vec![0; k];
                    match rx.try_pop_slice(&mut out) {
                        Ok(n) => {
                            prop_assert_eq!(n, k.min(model.len()));
                            let want: Vec<u32> = model.drain(..n).collect();
                            prop_assert_eq!(&out[..n], &want[..]);
                        }
                        Err(e) => {
                            prop_assert!(model.is_empty() && k > 0);
                            prop_assert_eq!(e, TryPopError::Empty);
                        }
                    }
                }
            }
            prop_assert_eq!(q.len() as usize, model.len());
            $extra(&tx, &rx, &model)?;
        }
    }};
}

proptest! {
    #[test]
    fn spsc_matches_vecdeque(cap_log in 1u32..5, ops in ops()) {
        let cap = 1usize << cap_log;
        check_against_vecdeque!(
            spsc::Queue::<u32>::with_capacity,
            cap,
            ops,
            |tx: &spsc::Producer<u32>, rx: &spsc::Consumer<u32>, model: &VecDeque<u32>| {
                prop_assert_eq!(tx.is_full(), model.len() == cap);
                prop_assert_eq!(rx.is_empty(), model.is_empty());
                Ok::<(), TestCaseError>(())
            }
        );
    }

    /// The in-place guards interleaved with the copying calls: a reserve dropped without a
    /// commit publishes nothing, a peek dropped without a release leaves the element.
    #[test]
    fn spsc_guards_match_vecdeque(cap_log in 1u32..5, ops in ops()) {
        let cap = 1usize << cap_log;
        let q = spsc::Queue::<u32>::with_capacity(cap as u64);
        let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
        let mut model = VecDeque::new();
        for op in ops {
            match op {
                Op::Push(_) | Op::PushSlice(_) if model.len() == cap => {
                    prop_assert!(matches!(tx.try_reserve(), Err(TryPushError::Full(()))));
                }
                Op::Push(v) => {
                    let mut w = tx.try_reserve().unwrap();
                    *w = v;
                    // One in three is dropped without a commit.
                    if v % 3 != 0 {
                        w.commit();
                        model.push_back(v);
                    }
                }
                Op::PushSlice(items) => {
                    for v in items.into_iter().take(cap - model.len()) {
                        tx.try_push(v).unwrap();
                        model.push_back(v);
                    }
                }
                Op::Pop | Op::PopSlice(_) => match rx.try_peek() {
                    Ok(r) => {
                        let v = *r;
                        prop_assert_eq!(Some(v), model.front().copied());
                        if v % 2 == 0 {
                            r.release();
                        } else {
                            // `r` dropped without a release: still there.
                            prop_assert_eq!(rx.try_pop(), Ok(v));
                        }
                        model.pop_front();
                    }
                    Err(e) => {
                        prop_assert!(model.is_empty());
                        prop_assert_eq!(e, TryPopError::Empty);
                    }
                },
            }
            prop_assert_eq!(q.len() as usize, model.len());
        }
    }

    #[test]
    fn mpmc_matches_vecdeque(cap_log in 1u32..5, ops in ops()) {
        check_against_vecdeque!(
            mpmc::Queue::<u32>::with_capacity,
            1usize << cap_log,
            ops,
            |_: &mpmc::Producer<u32>, _: &mpmc::Consumer<u32>, _: &VecDeque<u32>| {
                Ok::<(), TestCaseError>(())
            }
        );
    }

    #[test]
    fn bytes_ring_matches_vecdeque(cap_log in 6u32..10, ops in prop::collection::vec(
        prop_oneof![prop::collection::vec(any::<u8>(), 0..300).prop_map(Some), Just(None)], 0..200)) {
        let cap = 1u64 << cap_log;
        let ring = bytes::Ring::with_capacity(cap);
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        let max = bytes::max_message(cap) as usize;
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        for op in ops {
            match op {
                Some(msg) => match tx.try_push(&msg) {
                    Ok(()) => model.push_back(msg),
                    Err(shmkit::queue::BytesPushError::TooLarge { .. }) => prop_assert!(msg.len() > max),
                    Err(shmkit::queue::BytesPushError::Full) => {
                        // Full only if the record (and a possible wrap) cannot fit: the ring
                        // must hold something.
                        prop_assert!(msg.len() <= max && !model.is_empty());
                    }
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                },
                None => prop_assert_eq!(rx.try_pop().ok(), model.pop_front()),
            }
        }
        while let Some(m) = model.pop_front() {
            prop_assert_eq!(rx.try_pop(), Ok(m));
        }
        prop_assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
    }
}
