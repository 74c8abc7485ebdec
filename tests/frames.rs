//! Frame channel across processes: many subscribers at different speeds, killed subscribers,
//! a publisher killed mid-write, read-only frame data.

mod common;

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::{kill9, report, spawn_child, unique_name, wait_exit, wait_ok, Cleanup, Lines};
use shmkit::frames::{FramesOptions, Policy, RecvError, TryLoanError};

/// The user header of every test frame: sequence, payload length, payload checksum.
type Hdr = [u64; 3];

fn opts() -> FramesOptions<Hdr> {
    FramesOptions::new()
}

/// The payload of frame `seq`: `len` pseudo-random bytes derived from `seq`.
fn fill(buf: &mut [u8], seq: u64) {
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

fn checksum(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Length of frame `seq` (varies, within `max`).
fn len_of(seq: u64, max: usize) -> usize {
    64 + (seq.wrapping_mul(2_654_435_761) as usize % (max - 64))
}

/// Publish frame `seq` into a loaned slot (payload, header with its checksum).
fn publish(p: &mut shmkit::frames::Publisher<Hdr>, max: usize) -> u64 {
    let seq = p.next_seq();
    let len = len_of(seq, max);
    let mut loan = p.loan_timeout(Duration::from_secs(30)).expect("loan");
    let buf = &mut loan.as_mut_slice()[..len];
    fill(buf, seq);
    let sum = checksum(buf);
    let got = loan.publish(len, &[seq, len as u64, sum]).unwrap();
    assert_eq!(got, seq);
    seq
}

fn check(f: &shmkit::frames::Frame<Hdr>) {
    let [seq, len, sum] = *f.header();
    assert_eq!(seq, f.seq(), "header sequence");
    assert_eq!(len as usize, f.len(), "header length");
    assert_eq!(checksum(f.bytes()), sum, "checksum of frame {seq}");
}

#[test]
fn child_main() {
    common::child_entry(|role, args| match role {
        // Receive until the publisher is gone, holding up to `hold` frames for a random
        // while and re-checking each before releasing it. Reports "ready", then
        // "done <received> <lost> <last>".
        "subscriber" => {
            let name = &args[0];
            let hold: usize = args[1].parse().unwrap();
            let pause_us: u64 = args[2].parse().unwrap();
            let mut s = opts().subscriber(name).expect("subscribe");
            report("ready");
            let mut held: VecDeque<shmkit::frames::Frame<Hdr>> = VecDeque::new();
            let (mut received, mut last) = (0u64, 0u64);
            let mut rng = std::process::id() as u64 | 1;
            loop {
                match s.recv_timeout(Duration::from_secs(60)) {
                    Ok(f) => {
                        assert!(f.seq() > last, "sequence went from {last} to {}", f.seq());
                        last = f.seq();
                        check(&f);
                        received += 1;
                        held.push_back(f);
                    }
                    Err(RecvError::Disconnected) => break,
                    Err(e) => panic!("recv: {e}"),
                }
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                while held.len() > hold || (!held.is_empty() && rng % 3 == 0) {
                    let f = held.pop_front().unwrap();
                    check(&f); // never overwritten while held
                    drop(f);
                    rng >>= 1;
                }
                if pause_us > 0 {
                    std::thread::sleep(Duration::from_micros(rng % (2 * pause_us + 1)));
                }
            }
            for f in held {
                check(&f);
            }
            report(&format!("done {received} {} {last}", s.lost()));
        }
        // Attach two subscribers (two records with this process's one token), report
        // "ready", wait to be killed.
        "two-subscribers" => {
            let a = opts().subscriber(&args[0]).expect("subscribe");
            let b = opts().subscriber(&args[0]).expect("subscribe again");
            report("ready");
            std::thread::sleep(Duration::from_secs(600));
            drop((a, b));
        }
        // Receive `n` frames, hold them all, report "held", wait to be killed.
        "holder" => {
            let mut s = opts().subscriber(&args[0]).expect("subscribe");
            let n: usize = args[1].parse().unwrap();
            report("ready");
            let frames: Vec<_> = (0..n)
                .map(|_| s.recv_timeout(Duration::from_secs(30)).expect("recv"))
                .collect();
            report("held");
            std::thread::sleep(Duration::from_secs(600));
            drop(frames);
        }
        // Attach as publisher, publish 5 frames, then loan a slot, write half of a frame
        // into it, report "mid-write" and wait to be killed.
        "half-writer" => {
            let mut p = opts().publisher(&args[0]).expect("publisher");
            for _ in 0..5 {
                publish(&mut p, 4096);
            }
            let mut loan = p.try_loan().expect("loan");
            loan.as_mut_slice()[..2048].fill(0xEE);
            report("mid-write");
            std::thread::sleep(Duration::from_secs(600));
            drop(loan);
        }
        // Attach as publisher, publish `n` frames, detach.
        "publish-n" => {
            let mut p = opts().publisher(&args[0]).expect("publisher");
            for _ in 0..args[1].parse::<u64>().unwrap() {
                publish(&mut p, 256);
            }
        }
        // Attach as publisher and publish frames as fast as the policy lets it, until
        // killed (the late joiners' tests).
        "publisher-forever" => {
            let mut p = opts().publisher(&args[0]).expect("publisher");
            report("ready");
            loop {
                publish(&mut p, 256);
            }
        }
        // Receive one frame and write into its (read-only) bytes: must die of SIGSEGV.
        "scribbler" => {
            let mut s = opts().subscriber(&args[0]).expect("subscribe");
            report("ready");
            let f = s.recv_timeout(Duration::from_secs(30)).expect("recv");
            report("writing");
            // SAFETY: deliberately wrong: the test checks that this store faults (the page is
            // PROT_READ), killing this process before it returns.
            unsafe { f.as_ptr().cast_mut().write_volatile(1) };
            report("wrote");
        }
        // The hostile-writer test's processes (`hostile_writer_vs_frames`).
        "hv-publisher" | "hv-subscriber" | "hv-inspector" => hostile::victim(role, args),
        "hv-writer" => hostile::writer(args),
        other => panic!("unknown role {other}"),
    });
}

#[test]
fn eight_subscribers_ten_thousand_frames() {
    let name = unique_name("frames8");
    let _c = Cleanup::new(&[&name]);
    const MAX: usize = 4096;
    const FRAMES: u64 = 10_000;
    let mut p = opts()
        .slots(16)
        .max_bytes(MAX as u64)
        .create(&name)
        .unwrap();
    // Different speeds and holding habits.
    let mut kids: Vec<_> = (0..8u64)
        .map(|i| {
            let hold = (i % 4).to_string();
            let pause = (i * i * 10).to_string();
            spawn_child("subscriber", &[&name, &hold, &pause])
        })
        .collect();
    let mut lines: Vec<Lines> = kids.iter_mut().map(Lines::of).collect();
    for l in &mut lines {
        l.expect("ready");
    }
    for _ in 0..FRAMES {
        publish(&mut p, MAX);
    }
    drop(p); // subscribers drain what is left, then see Disconnected
    for (k, l) in kids.iter_mut().zip(&mut lines) {
        let done = l.next_line().expect("done line");
        wait_ok(k, Duration::from_secs(120));
        let v: Vec<u64> = done
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap())
            .collect();
        let (received, lost, last) = (v[0], v[1], v[2]);
        assert!(received > 0);
        assert_eq!(last, FRAMES, "every subscriber ends with the last frame");
        assert_eq!(
            received + lost,
            FRAMES,
            "received + lost covers every frame"
        );
    }
}

#[test]
fn block_policy_is_lossless() {
    let name = unique_name("framesblk");
    let _c = Cleanup::new(&[&name]);
    let mut p = opts()
        .slots(3)
        .max_bytes(1024)
        .policy(Policy::Block)
        .create(&name)
        .unwrap();
    let mut kids: Vec<_> = (0..2)
        .map(|i| spawn_child("subscriber", &[&name, "1", &(i * 50).to_string()]))
        .collect();
    let mut lines: Vec<Lines> = kids.iter_mut().map(Lines::of).collect();
    for l in &mut lines {
        l.expect("ready");
    }
    for _ in 0..2000 {
        publish(&mut p, 1024);
    }
    drop(p);
    for (k, l) in kids.iter_mut().zip(&mut lines) {
        let done = l.next_line().expect("done line");
        wait_ok(k, Duration::from_secs(120));
        assert_eq!(done, "done 2000 0 2000");
    }
}

#[test]
fn killed_subscriber_pins_are_reclaimed_100_times() {
    let name = unique_name("frameskill");
    let _c = Cleanup::new(&[&name]);
    const K: u64 = 4;
    let mut p = opts()
        .slots(K)
        .max_bytes(256)
        .policy(Policy::Block)
        .create(&name)
        .unwrap();
    for round in 0..100 {
        let mut kid = spawn_child("holder", &[&name, &(K - 1).to_string()]);
        let mut l = Lines::of(&mut kid);
        l.expect("ready");
        for _ in 0..K - 1 {
            publish(&mut p, 256);
        }
        l.expect("held");
        let st = shmkit::frames::stat(&name).unwrap();
        let held = st
            .slot_states
            .iter()
            .filter(|s| !s.held_by.is_empty())
            .count();
        assert_eq!(
            held as u64,
            K - 1,
            "round {round}: the holder pins its frames"
        );
        kill9(&mut kid);
        // Block policy: the dead holder's pins and cursor would block every slot but one.
        // Each loan must succeed at once (reclaim happens inside try_loan).
        for _ in 0..K {
            let seq = p.next_seq();
            let loan = match p.try_loan() {
                Ok(l) => l,
                Err(TryLoanError::Full) => panic!("round {round}: a slot did not come back"),
                Err(e) => panic!("{e}"),
            };
            loan.publish(8, &[seq, 8, 0]).unwrap();
        }
        let st = shmkit::frames::stat(&name).unwrap();
        assert!(
            st.subscribers.is_empty(),
            "round {round}: the dead record is freed"
        );
        assert!(st.slot_states.iter().all(|s| s.held_by.is_empty()));
    }
}

/// A process that dies holding two subscribers leaves its token in two records; reclaiming
/// them frees both (SPEC §8.4: the owner word is CASed token → 0), not only the first, so
/// `stat` no longer lists a dead subscriber and both records can be attached again.
#[test]
fn a_dead_process_s_every_subscriber_record_is_freed() {
    let name = unique_name("framesdead2");
    let _c = Cleanup::new(&[&name]);
    let mut p = opts()
        .slots(2)
        .max_bytes(64)
        .subscribers(2)
        .policy(Policy::Block)
        .create(&name)
        .unwrap();
    let mut kid = spawn_child("two-subscribers", &[&name]);
    Lines::of(&mut kid).expect("ready");
    assert_eq!(shmkit::frames::stat(&name).unwrap().subscribers.len(), 2);
    kill9(&mut kid);
    for _ in 0..2 {
        let seq = p.next_seq();
        p.try_loan().unwrap().publish(8, &[seq, 8, 0]).unwrap();
    }
    // Block policy: both slots hold frames the dead records have not received, so this
    // loan reclaims them.
    let seq = p.next_seq();
    let loan = p.try_loan().expect("the dead records are reclaimed");
    loan.publish(8, &[seq, 8, 0]).unwrap();
    let st = shmkit::frames::stat(&name).unwrap();
    assert!(st.subscribers.is_empty(), "{:?}", st.subscribers);
    // Both records are free: two subscribers attach again.
    let (a, b) = (opts().subscriber(&name), opts().subscriber(&name));
    assert!(a.is_ok() && b.is_ok(), "{:?} {:?}", a.err(), b.err());
}

#[test]
fn publisher_killed_mid_write_then_new_publisher() {
    let name = unique_name("frameshalf");
    let _c = Cleanup::new(&[&name]);
    drop(opts().slots(8).max_bytes(4096).create(&name).unwrap());
    let mut sub = opts().subscriber(&name).unwrap();
    let mut kid = spawn_child("half-writer", &[&name]);
    Lines::of(&mut kid).expect("mid-write");
    let st = shmkit::frames::stat(&name).unwrap();
    assert_eq!(
        st.slot_states
            .iter()
            .filter(|s| s.state == "writing")
            .count(),
        1
    );
    kill9(&mut kid);
    // The five published frames are received; the half-written one never is.
    for want in 1..=5 {
        let f = sub.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(f.seq(), want);
        check(&f);
    }
    assert_eq!(
        sub.recv_timeout(Duration::from_secs(30)).unwrap_err(),
        RecvError::Disconnected
    );
    // Published frames stay readable.
    assert_eq!(sub.newest().unwrap().seq(), 5);
    // A new publisher takes over: the half-written slot is emptied, numbering continues.
    let mut p = opts().publisher(&name).unwrap();
    let st = shmkit::frames::stat(&name).unwrap();
    assert_eq!(
        st.slot_states
            .iter()
            .filter(|s| s.state == "writing")
            .count(),
        0
    );
    assert_eq!(p.next_seq(), 6);
    publish(&mut p, 4096);
    let f = sub.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(f.seq(), 6);
    check(&f);
    assert_eq!(sub.lost(), 0);
}

#[test]
fn subscriber_cannot_write_frame_data() {
    let name = unique_name("framesro");
    let _c = Cleanup::new(&[&name]);
    let mut p = opts().slots(2).max_bytes(4096).create(&name).unwrap();
    let mut kid = spawn_child("scribbler", &[&name]);
    let mut l = Lines::of(&mut kid);
    l.expect("ready");
    publish(&mut p, 4096);
    l.expect("writing");
    let st = wait_exit(&mut kid, Duration::from_secs(30));
    assert_eq!(st.signal(), Some(libc_sigsegv()), "the write faults: {st}");
    assert_ne!(l.next_line().as_deref(), Some("wrote"));
}

fn libc_sigsegv() -> i32 {
    11
}

/// Late joiners under the block policy, while a publisher process publishes as fast as it
/// may: a joiner asking for `h` frames of history (0 to more than the slots) gets consecutive
/// frames from its first on and counts none lost (a frame of its window that was gone before
/// its cursor took effect is skipped, not lost). Before the attach fix, a history longer than
/// the frames left in the slots, or a previous owner's cursor left in the record, made
/// `lost` count frames the joiner never could have had.
#[test]
fn block_policy_late_joiners_count_nothing_lost() {
    let name = unique_name("framesjoin");
    let _c = Cleanup::new(&[&name]);
    create_block4(&name);
    let mut kid = KillOnDrop(spawn_child("publisher-forever", &[&name]));
    let mut lines = Lines::of(&mut kid.0);
    lines.expect("ready");
    for round in 0..300u64 {
        let h = round % 7; // 0..=6, against 4 slots
        let mut s = opts().history(h).subscriber(&name).unwrap();
        let first = s.recv_timeout(Duration::from_secs(30)).expect("recv");
        check(&first);
        let mut last = first.seq();
        drop(first);
        for _ in 0..5 {
            let f = s.recv_timeout(Duration::from_secs(30)).expect("recv");
            check(&f);
            assert_eq!(f.seq(), last + 1, "round {round}, history {h}");
            last = f.seq();
        }
        assert_eq!(s.lost(), 0, "round {round}, history {h}");
    }
}

/// Under Block, frames can be missing from the middle of a late joiner's window: another
/// subscriber still holds an old frame while the publisher reuses newer, received ones. A
/// frame gone before the joiner attached is not counted lost, even between frames it
/// receives.
#[test]
fn block_policy_late_joiner_skips_holes_without_loss() {
    let name = unique_name("framesholes");
    let _c = Cleanup::new(&[&name]);
    create_block4(&name);
    let mut a = opts().subscriber(&name).unwrap();
    wait_ok(
        &mut spawn_child("publish-n", &[&name, "3"]),
        Duration::from_secs(60),
    );
    // A keeps frame 1 and receives 2 and 3.
    let one = a.try_recv().unwrap();
    let seqs: Vec<u64> = (0..2).map(|_| a.try_recv().unwrap().seq()).collect();
    assert_eq!((one.seq(), seqs), (1, vec![2, 3]));
    // Frames 4 and 5: 4 into the empty slot, 5 into frame 2's (the oldest slot not held).
    wait_ok(
        &mut spawn_child("publish-n", &[&name, "2"]),
        Duration::from_secs(60),
    );
    // B asks for all five: 1, 3, 4 and 5 are there, 2 was gone before it attached.
    let mut b = opts().history(5).subscriber(&name).unwrap();
    let got: Vec<u64> = (0..4).map(|_| b.try_recv().unwrap().seq()).collect();
    assert_eq!((got, b.lost()), (vec![1, 3, 4, 5], 0));
    drop(one);
}

/// Create channel `name`: 4 slots of 256 bytes, block policy, no publisher left attached.
fn create_block4(name: &str) {
    drop(
        opts()
            .slots(4)
            .max_bytes(256)
            .policy(Policy::Block)
            .create(name)
            .unwrap(),
    );
}

/// A child process killed (and reaped) when the test ends, also by a failed assertion.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill9(&mut self.0);
    }
}

/// Under reuse-oldest, a late joiner's `lost` counts exactly the frames overwritten after it
/// attached, not those gone before (history longer than the slots), with the publisher in
/// another process.
#[test]
fn reuse_oldest_late_joiner_lost_is_exact() {
    let name = unique_name("framesjoinr");
    let _c = Cleanup::new(&[&name]);
    drop(opts().slots(4).max_bytes(256).create(&name).unwrap());
    // A publisher process publishes 10 frames (into 4 slots) and exits.
    let mut kid = spawn_child("publish-n", &[&name, "10"]);
    wait_ok(&mut kid, Duration::from_secs(60));
    // Asking for 8 frames of history: 7..=10 are left; 3..=6 were gone before it attached.
    let mut s = opts().history(8).subscriber(&name).unwrap();
    let f = s.try_recv().unwrap();
    assert_eq!((f.seq(), s.lost()), (7, 0));
    drop(f);
    // Six more frames while it waits: 11..=16 in 4 slots overwrite 8..=12, so it next
    // receives 13 and has lost exactly 8..=12 (5 frames).
    let mut kid = spawn_child("publish-n", &[&name, "6"]);
    wait_ok(&mut kid, Duration::from_secs(60));
    let f = s.try_recv().unwrap();
    assert_eq!((f.seq(), s.lost()), (13, 5));
    drop(f);
    let seqs: Vec<u64> = (0..3).map(|_| s.try_recv().unwrap().seq()).collect();
    assert_eq!((seqs, s.lost()), (vec![14, 15, 16], 5));
}

/// Guards of the same frames taken and dropped on four threads at once (`newest` on a shared
/// subscriber) while a publisher process publishes: the process-local pin counts and the
/// slots' pin bits stay together, so no held frame is ever overwritten (its checksum holds
/// until dropped) and every slot is free once the guards are gone.
#[test]
fn guards_of_one_frame_on_many_threads() {
    let name = unique_name("framesthr");
    let _c = Cleanup::new(&[&name]);
    drop(opts().slots(4).max_bytes(256).create(&name).unwrap());
    let mut kid = KillOnDrop(spawn_child("publisher-forever", &[&name]));
    Lines::of(&mut kid.0).expect("ready");
    let s = opts().subscriber(&name).unwrap();
    std::thread::scope(|sc| {
        for _ in 0..4 {
            sc.spawn(|| {
                let mut held = VecDeque::new();
                for k in 0..20_000u32 {
                    if let Some(f) = s.newest() {
                        check(&f);
                        held.push_back(f);
                    }
                    while held.len() > (k % 3) as usize {
                        let f = held.pop_front().unwrap();
                        check(&f); // not overwritten while held
                    }
                }
            });
        }
    });
    drop(kid);
    let st = shmkit::frames::stat(&name).unwrap();
    assert!(st.slot_states.iter().all(|s| s.held_by.is_empty()));
}

#[test]
fn history_latest_and_types() {
    let name = unique_name("frameshist");
    let _c = Cleanup::new(&[&name]);
    let mut p = opts().slots(8).max_bytes(512).create(&name).unwrap();
    for _ in 0..6 {
        publish(&mut p, 512);
    }
    // A late joiner asking for 3 frames of history gets 4, 5, 6.
    let mut s = opts().history(3).subscriber(&name).unwrap();
    let seqs: Vec<u64> = (0..3).map(|_| s.try_recv().unwrap().seq()).collect();
    assert_eq!(seqs, [4, 5, 6]);
    assert!(s.try_recv().is_err());
    // latest skips, counting the skipped frames as lost.
    for _ in 0..4 {
        publish(&mut p, 512);
    }
    let f = s.try_latest().unwrap();
    assert_eq!((f.seq(), s.lost()), (10, 3));
    check(&f);
    // Two guards of one frame: the slot stays pinned until both drop.
    let g = s.newest().unwrap();
    assert_eq!(g.slot(), f.slot());
    drop(f);
    let st = shmkit::frames::stat(&name).unwrap();
    assert_eq!(
        st.slot_states[g.slot() as usize].held_by,
        [std::process::id()]
    );
    drop(g);
    let st = shmkit::frames::stat(&name).unwrap();
    assert!(st.slot_states.iter().all(|s| s.held_by.is_empty()));
    // Another header type is refused, naming both, and saying that it is the frames' user
    // header (the message called the channel a queue of "elements": audit).
    let e = FramesOptions::<[u64; 2]>::new()
        .subscriber(&name)
        .unwrap_err();
    assert!(
        matches!(
            e,
            shmkit::frames::AttachError::Segment(shmkit::Error::TypeMismatch {
                of: "a user header",
                ..
            })
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("[u64; 3]")
            && msg.contains("[u64; 2]")
            && msg.contains("user header")
            && !msg.contains("queue"),
        "{msg}"
    );
    // The saved copy is the newest frame.
    let c = shmkit::frames::copy_latest(&name).unwrap().unwrap();
    assert_eq!(c.seq, 10);
    assert_eq!(
        checksum(&c.data),
        u64::from_le_bytes(c.header[16..24].try_into().unwrap())
    );
}

#[test]
fn frames_of_256_mib_are_accepted() {
    let name = unique_name("framesbig");
    let _c = Cleanup::new(&[&name]);
    let mut p = FramesOptions::<u64>::new()
        .slots(1)
        .max_bytes(256 << 20)
        .create(&name)
        .unwrap();
    let mut s = FramesOptions::<u64>::new().subscriber(&name).unwrap();
    let mut loan = p.try_loan().unwrap();
    let buf = loan.as_mut_slice();
    assert_eq!(buf.len(), 256 << 20);
    buf[(256 << 20) - 1] = 7;
    loan.publish(256 << 20, &1).unwrap();
    let f = s.try_recv().unwrap();
    assert_eq!(f.bytes()[(256 << 20) - 1], 7);
}

#[test]
fn sixteen_subscribers_then_no_free_record() {
    let name = unique_name("frames16");
    let _c = Cleanup::new(&[&name]);
    let mut p = opts().slots(4).max_bytes(256).create(&name).unwrap();
    let mut subs: Vec<_> = (0..16).map(|_| opts().subscriber(&name).unwrap()).collect();
    match opts().subscriber(&name) {
        Err(shmkit::frames::AttachError::NoFreeSubscriberSlot { slots: 16 }) => {}
        other => panic!("a 17th subscriber: {other:?}"),
    }
    let seq = publish(&mut p, 256);
    // Every subscriber holds the frame at once; the publisher still has 3 free slots.
    let held: Vec<_> = subs.iter_mut().map(|s| s.try_recv().unwrap()).collect();
    assert!(held.iter().all(|f| f.seq() == seq));
    held.iter().for_each(check);
    let st = shmkit::frames::stat(&name).unwrap();
    assert_eq!(st.slot_states[held[0].slot() as usize].held_by.len(), 16);
    drop(held);
    drop(subs.pop());
    opts().subscriber(&name).unwrap(); // a record is free again
}

#[test]
fn publish_too_large_is_an_error_and_empties_the_slot() {
    let name = unique_name("frames-big");
    let _c = Cleanup::new(&[&name]);
    let mut p = FramesOptions::<u64>::new()
        .slots(1)
        .max_bytes(16)
        .create(&name)
        .unwrap();
    let mut s = FramesOptions::<u64>::new().subscriber(&name).unwrap();
    let e = p.try_loan().unwrap().publish(17, &1).unwrap_err();
    assert!(
        matches!(
            e,
            shmkit::Error::TooLarge {
                requested: 17,
                max: 16,
                ..
            }
        ),
        "{e}"
    );
    assert!(s.try_recv().is_err());
    // The slot came back: the one slot can be loaned again and published.
    assert_eq!(p.try_loan().unwrap().publish(16, &2).unwrap(), 1);
    assert_eq!(*s.try_recv().unwrap().header(), 2);
}

#[test]
fn untyped_header_round_trip_and_checks() {
    let name = unique_name("frames-untyped");
    let _c = Cleanup::new(&[&name]);
    let raw = || FramesOptions::<[u8; 0]>::new();
    assert!(raw().header_type("", 8, 8).is_err());
    assert!(raw().header_type("X", 2048, 8).is_err());
    assert!(raw().header_type("X", 12, 8).is_err());
    let mut p = raw()
        .header_type("Pair", 16, 8)
        .unwrap()
        .create(&name)
        .unwrap();
    // A Rust type with the same name and layout attaches to it, and reads what bytes wrote.
    #[derive(Clone, Copy, zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable)]
    #[repr(C)]
    struct Pair {
        a: u64,
        b: u64,
    }
    shmkit::shm_type!(Pair);
    let mut typed = FramesOptions::<Pair>::new().subscriber(&name).unwrap();
    let mut any = raw().any_header().subscriber(&name).unwrap();
    assert_eq!(
        any.header_type(),
        shmkit::frames::HeaderType {
            name: "Pair".into(),
            size: 16,
            align: 8
        }
    );
    // Another runtime type is refused.
    let e = raw()
        .header_type("Pair", 8, 8)
        .unwrap()
        .subscriber(&name)
        .unwrap_err();
    assert!(e.to_string().contains("Pair"), "{e}");
    let too_long = p.try_loan().unwrap().publish_header_bytes(0, &[0; 17]);
    assert!(matches!(too_long, Err(shmkit::Error::TooLarge { .. })));
    let mut l = p.try_loan().unwrap();
    l.as_mut_slice()[..3].copy_from_slice(b"abc");
    l.publish_header_bytes(3, &5u64.to_le_bytes()).unwrap();
    let f = any.try_recv().unwrap();
    let mut want = 5u64.to_le_bytes().to_vec();
    want.extend([0; 8]);
    assert_eq!((f.bytes(), f.header_bytes()), (&b"abc"[..], want));
    let t = typed.try_recv().unwrap();
    assert_eq!((t.header().a, t.header().b), (5, 0));
}

/// A publisher that dies between storing a frame's `seq` and moving `head` (the doorbell
/// subscribers poll) leaves `head` one behind: subscribers still receive that frame once the
/// publisher is gone, and a new publisher moves `head` and continues after it. (The death is
/// simulated by writing `head` back, at its SPEC offset, after a clean detach.)
#[test]
fn head_left_behind_by_a_dead_publisher() {
    use std::os::unix::fs::FileExt;
    let name = unique_name("frameshead");
    let _c = Cleanup::new(&[&name]);
    let mut p = FramesOptions::<u64>::new()
        .slots(4)
        .max_bytes(64)
        .create(&name)
        .unwrap();
    let mut s = FramesOptions::<u64>::new().subscriber(&name).unwrap();
    for h in 1..=2 {
        p.try_loan().unwrap().publish(8, &h).unwrap();
    }
    drop(p);
    // Object offset of `head`: the 128-byte segment header, then control offset 256.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    f.write_all_at(&1u64.to_le_bytes(), 128 + 256).unwrap();
    assert_eq!(shmkit::frames::stat(&name).unwrap().last_seq, 1);
    assert_eq!(*s.try_recv().unwrap().header(), 1);
    // Frame 2 is in its slot although `head` says 1: found once the publisher is gone.
    assert_eq!(*s.try_recv().unwrap().header(), 2);
    assert!(s.try_recv().is_err());
    let mut p = FramesOptions::<u64>::new().publisher(&name).unwrap();
    assert_eq!(p.next_seq(), 3);
    assert_eq!(shmkit::frames::stat(&name).unwrap().last_seq, 2);
    p.try_loan().unwrap().publish(8, &3).unwrap();
    let f3 = s.try_recv().unwrap();
    assert_eq!((f3.seq(), *f3.header(), s.lost()), (3, 3, 0));
}

/// A channel of 4 slots holding frames 1..=4 (headers `u64`), its publisher, the object
/// offset of slot 0's sequence word, and the object mapped raw: what a hostile process writes.
fn four_frames_and_raw(name: &str) -> (shmkit::frames::Publisher<u64>, u64, shmkit::Segment) {
    let mut p = FramesOptions::<u64>::new()
        .slots(4)
        .max_bytes(64)
        .create(name)
        .unwrap();
    publish_u64(&mut p, 1..=4);
    let meta = shmkit::frames::stat(name).unwrap().layout.meta_offset;
    let raw = shmkit::Segment::options().raw(true).open(name).unwrap();
    (p, meta, raw)
}

fn publish_u64(p: &mut shmkit::frames::Publisher<u64>, frames: std::ops::RangeInclusive<u64>) {
    for h in frames {
        p.try_loan().unwrap().publish(8, &h).unwrap();
    }
}

/// A frame's guard reports the frame its receive moved the cursor to. Guards of one pin share
/// what the first copied out of the slot's metadata; if a hostile process rewrites the
/// sequence word of a slot this subscriber holds, to the number it waits for next, the pin
/// check passes (the word says so) but the copy is of the frame held: that guard is refused
/// (the receive finds nothing), never handed out reporting the old frame's number, which
/// would make sequence numbers go back.
#[test]
fn a_forged_sequence_word_under_a_held_pin_is_not_received_as_the_old_frame() {
    use std::sync::atomic::Ordering::SeqCst;
    let name = unique_name("framesforgedheld");
    let _c = Cleanup::new(&[&name]);
    let (_p, meta, raw) = four_frames_and_raw(&name);
    let mut s = FramesOptions::<u64>::new()
        .history(4)
        .subscriber(&name)
        .unwrap();
    let first = s.try_recv().unwrap();
    assert_eq!((first.seq(), first.slot(), *first.header()), (1, 0, 1));
    for n in 2..=4 {
        assert_eq!(s.try_recv().unwrap().seq(), n);
    }
    // Slot 0 (pinned by `first`) now claims to hold frame 5, and `head` says 5 is published.
    let (seq0, head) = (
        raw.atomic_u64(meta).unwrap(),
        raw.atomic_u64(128 + 256).unwrap(),
    );
    let was = (seq0.swap(5, SeqCst), head.swap(5, SeqCst));
    let got = s.try_recv().map(|f| (f.seq(), *f.header()));
    seq0.store(was.0, SeqCst);
    head.store(was.1, SeqCst);
    assert!(
        !matches!(got, Ok((seq, _)) if seq <= 4),
        "a guard reported frame {got:?} after frame 4"
    );
    assert_eq!((first.seq(), *first.header(), first.len()), (1, 1, 8));
}

/// A late joiner's attach window (`SPEC.md` §8.3, "Attaching") ignores a sequence word far
/// ahead of `head` (forged: no frame is ever more than one ahead of it), which would otherwise
/// stand as the window's `top` for ever and hide every loss below it.
#[test]
fn a_forged_sequence_word_at_attach_does_not_hide_losses() {
    use std::sync::atomic::Ordering::SeqCst;
    let name = unique_name("framesforged");
    let _c = Cleanup::new(&[&name]);
    let (mut p, meta, raw) = four_frames_and_raw(&name);
    let seq0 = raw.atomic_u64(meta).unwrap();
    let was = seq0.swap(1 << 62, SeqCst);
    let mut s = FramesOptions::<u64>::new().subscriber(&name).unwrap();
    seq0.store(was, SeqCst);
    // Frames 5..=10 in 4 slots: 7..=10 remain; 5 and 6 were overwritten after the attach.
    publish_u64(&mut p, 5..=10);
    let f = s.try_recv().unwrap();
    assert_eq!((f.seq(), s.lost()), (7, 2));
}

/// As above, with `head` forged too while the window is taken (so the forged sequence word
/// looks plausible): the first receive that finds `head` back below the window's `top` drops
/// the window, and every later loss counts.
#[test]
fn a_forged_head_at_attach_does_not_hide_losses() {
    use std::sync::atomic::Ordering::SeqCst;
    let name = unique_name("framesforgedh");
    let _c = Cleanup::new(&[&name]);
    let (mut p, meta, raw) = four_frames_and_raw(&name);
    // `head`: the 128-byte segment header, then control offset 256.
    let (seq0, head) = (
        raw.atomic_u64(meta).unwrap(),
        raw.atomic_u64(128 + 256).unwrap(),
    );
    let was = (seq0.swap((1 << 62) - 5, SeqCst), head.swap(1 << 62, SeqCst));
    // All the history there is (the window starts after 0 whatever `head` says).
    let mut s = FramesOptions::<u64>::new()
        .history(u64::MAX)
        .subscriber(&name)
        .unwrap();
    seq0.store(was.0, SeqCst);
    head.store(was.1, SeqCst);
    assert_eq!((s.try_recv().unwrap().seq(), s.lost()), (1, 0));
    // Frames 5..=10 in 4 slots: 7..=10 remain; 2..=4 (there at attach) and 5, 6 are lost.
    publish_u64(&mut p, 5..=10);
    let f = s.try_recv().unwrap();
    assert_eq!((f.seq(), s.lost()), (7, 5));
}

/// A hostile process rewrites the channel's words while it is in use (`SPEC.md` §8.1: wrong
/// frames, wrong statistics or errors, never an access outside the mapping, a panic, or a
/// wait past the deadline). A publisher process, a subscriber receiving in
/// order (`recv*`), a subscriber skipping to the newest (`latest*`, `newest`), both holding
/// frames for a while and reading every accessor, and an inspector (`frames::stat`,
/// `copy_latest`, and the `shmkit` binary's `frames stat --json`, `info` and `frames save`)
/// run while a fifth process maps the object raw and writes random and plausible values over
/// the control block, the slot metadata and the subscriber records: huge and small sequence
/// words, `CLAIMED` bits, a huge `head`, lengths beyond `max_bytes`, pin words with every bit
/// set, owner words of dead and of other live processes, cursors, the wait queues' words,
/// now and then the geometry, and now and then everything put back as it was.
///
/// Every call must return (an error is fine) within its timeout plus [`hostile::HANG_MARGIN`]
/// (a watchdog thread in each process aborts it otherwise: a hang detector, not a performance
/// bound), nothing may panic, every process must exit normally (an access outside the mapping
/// would kill it with SIGSEGV or SIGBUS), `bytes()` is never longer than `max_bytes`, and the
/// frames one subscriber handle receives have increasing sequence numbers. Run once per
/// policy, with a geometry of one and of two pin words. Scale and seed as `tests/torture.rs`:
/// the writer runs `100 + 40 × SHMKIT_TORTURE_ROUNDS` ms (default 40 rounds) per policy;
/// `SHMKIT_TORTURE_SEED` replays the random choices (the timing is not replayable).
#[test]
fn hostile_writer_vs_frames() {
    hostile::run(Policy::ReuseOldest, 4, 16);
    hostile::run(Policy::Block, 3, 70);
}

/// Block policy: `latest()` moves the cursor past older frames, which frees their slots (they
/// were held by the cursor alone, never pinned), but nothing woke a publisher parked in
/// `loan()`: it found the slot only at the end of its 20 ms liveness slice. The test watches
/// the `released` wait queue's words (payload offset 384: `seq`, then `sleepers`, SPEC §8.1)
/// instead of a clock: once the publisher sleeps there, `latest()` must bump `seq`. (From
/// the frames review.)
#[test]
fn block_latest_wakes_a_publisher_parked_in_loan() {
    let name = unique_name("frames-latest-wake");
    let _c = Cleanup::new(&[&name]);
    let mut p = FramesOptions::<u64>::new()
        .slots(2)
        .max_bytes(64)
        .policy(Policy::Block)
        .create(&name)
        .unwrap();
    let mut s = FramesOptions::<u64>::new().subscriber(&name).unwrap();
    p.try_loan().unwrap().publish(8, &1).unwrap();
    p.try_loan().unwrap().publish(8, &2).unwrap(); // both slots held by the cursor
    let raw = shmkit::Segment::options().raw(true).open(&name).unwrap();
    // SAFETY: the wait queue's two words, accessed by every process as u32 atomics.
    let (seq, sleepers) = unsafe {
        (
            raw.atomic_u32(128 + 384).unwrap(),
            raw.atomic_u32(128 + 388).unwrap(),
        )
    };
    std::thread::scope(|sc| {
        let h = sc.spawn(|| {
            let l = p.loan_timeout(Duration::from_secs(60)).expect("a slot");
            l.publish(8, &3).unwrap();
        });
        // Until the publisher has announced itself as a sleeper (a condition, not a time).
        let mut n = 0;
        while sleepers.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            n += 1;
            assert!(n < 30_000, "the publisher never parked");
            std::thread::sleep(Duration::from_millis(1));
        }
        let before = seq.load(std::sync::atomic::Ordering::SeqCst);
        let f = s.try_latest().expect("frame 2"); // frees frame 1's slot
        assert_eq!(f.seq(), 2);
        assert_ne!(
            seq.load(std::sync::atomic::Ordering::SeqCst),
            before,
            "latest() freed a slot without waking the parked publisher"
        );
        drop(f);
        h.join().unwrap();
    });
}

/// `Publisher::set_unlink_on_drop` took effect only while no other `Arc` of the channel lived
/// (`Arc::get_mut`): with a `Mapping` alive, the request was dropped silently. (From the
/// frames review.)
#[test]
fn set_unlink_on_drop_works_while_a_mapping_lives() {
    let name = unique_name("frames-unlink-mapping");
    let _c = Cleanup::new(&[&name]);
    let path = format!("/dev/shm/{name}");
    let mut p = FramesOptions::<u64>::new()
        .slots(1)
        .max_bytes(64)
        .create(&name)
        .unwrap();
    let keep = p.mapping();
    p.set_unlink_on_drop(true);
    drop(p);
    assert!(
        std::path::Path::new(&path).exists(),
        "unlinked while a mapping lives"
    );
    drop(keep);
    assert!(
        !std::path::Path::new(&path).exists(),
        "set_unlink_on_drop(true) was ignored"
    );
    // And the reverse: asked at creation, cancelled later.
    let mut p = FramesOptions::<u64>::new()
        .slots(1)
        .max_bytes(64)
        .unlink_on_drop(true)
        .create(&name)
        .unwrap();
    let keep = p.mapping();
    p.set_unlink_on_drop(false);
    drop((p, keep));
    assert!(
        std::path::Path::new(&path).exists(),
        "set_unlink_on_drop(false) was ignored"
    );
}

mod hostile {
    use std::collections::VecDeque;
    use std::os::unix::process::ExitStatusExt;
    use std::path::Path;
    use std::process::Command;
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use super::common::chaos::{rounds, scribble, seed_for, Rng, Snapshot};
    use super::common::{report, spawn_child, unique_name, wait_exit, Cleanup, Lines};
    use super::{checksum, fill, opts, Hdr, KillOnDrop};
    use shmkit::frames::{
        self, Frame, Loan, LoanError, Policy, Publisher, RecvError, Subscriber, TryLoanError,
        TryRecvError,
    };
    use shmkit::Segment;

    /// How much longer than its timeout a call may take before it counts as a hang: a hang
    /// detector, not a speed assertion, so generous enough that a process descheduled on 2
    /// oversubscribed cores (other tests, other users) never trips it.
    pub(super) const HANG_MARGIN: Duration = Duration::from_secs(60);
    /// The channel's `max_bytes` (not a multiple of the page: the stride is larger).
    const MAX: u64 = 5000;
    /// The `shmkit` binary's commands get this long (each starts a process).
    const CLI_TIMEOUT: Duration = Duration::from_secs(60);
    /// A victim that is never told to stop gives up after this long.
    const HARD_STOP: Duration = Duration::from_secs(300);
    /// `pin::CLAIMED`: bit 63 of a sequence word.
    const CLAIMED: u64 = 1 << 63;

    /// One run: a channel of `slots` slots and `subscribers` records under `policy`, four
    /// victim processes, one hostile writer.
    pub(super) fn run(policy: Policy, slots: u64, subscribers: u64) {
        let dur = Duration::from_millis(100 + 40 * rounds());
        let seed = seed_for(&format!(
            "hostile_writer_vs_frames ({policy}, {slots} slots, {subscribers} records)"
        ));
        eprintln!("writer runs {dur:?}");
        let mut rng = Rng::new(seed);
        let name = unique_name("frameshostile");
        let (stop, save) = (format!("/tmp/{name}.stop"), format!("/tmp/{name}.save"));
        let _files = RemoveFiles(vec![stop.clone(), save.clone()]);
        let cleanup = Cleanup::new(&[&name]);
        drop(
            opts()
                .slots(slots)
                .max_bytes(MAX)
                .subscribers(subscribers)
                .policy(policy)
                .create(&name)
                .unwrap(),
        );
        let roles = [
            ("hv-publisher", "-"),
            ("hv-subscriber", "next"),
            ("hv-subscriber", "latest"),
            ("hv-inspector", "-"),
        ];
        let mut victims: Vec<(String, KillOnDrop, Lines)> = Vec::new();
        for (role, mode) in roles {
            let s = rng.next().to_string();
            let mut kid = spawn_child(role, &[&name, &stop, &s, mode, &save]);
            let mut lines = Lines::of(&mut kid);
            lines.expect("ready");
            victims.push((format!("{role} {mode}"), KillOnDrop(kid), lines));
        }
        let mut writer = KillOnDrop(spawn_child(
            "hv-writer",
            &[
                &name,
                &dur.as_millis().to_string(),
                &rng.next().to_string(),
                &slots.to_string(),
                &subscribers.to_string(),
            ],
        ));
        let st = wait_exit(&mut writer.0, Duration::from_secs(180));
        assert!(st.success(), "the hostile writer failed: {st}");
        // Let the victims run on the wreckage a little longer, then stop them.
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(&stop, b"stop").unwrap();
        let (mut errors, mut wrong) = (0u64, 0u64);
        for (what, mut kid, mut lines) in victims {
            let done = lines.next_line();
            let st = wait_exit(&mut kid.0, Duration::from_secs(180));
            assert!(
                st.success(),
                "{what} did not exit normally: {st} (signal {:?}; seed {seed})",
                st.signal()
            );
            let done = done.unwrap_or_else(|| panic!("{what} reported nothing"));
            let v: Vec<u64> = done
                .split_whitespace()
                .skip(1)
                .map(|x| x.parse().unwrap())
                .collect();
            eprintln!(
                "  {what}: {} calls, {} errors, {} wrong inspections",
                v[0], v[1], v[2]
            );
            assert!(v[0] > 0, "{what} made no calls");
            errors += v[1];
            wrong += v[2];
        }
        assert!(
            errors + wrong > 0,
            "the hostile writer changed nothing the victims noticed"
        );
        drop(cleanup);
        assert!(
            !Path::new(&format!("/dev/shm/{name}")).exists(),
            "{name} left in /dev/shm"
        );
    }

    /// Removes files (the stop flag, the saved frame) when dropped, also on failure.
    struct RemoveFiles(Vec<String>);

    impl Drop for RemoveFiles {
        fn drop(&mut self) {
            for f in &self.0 {
                let _ = std::fs::remove_file(f);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // The victims.

    /// What a victim did: calls made, calls that returned an error, inspections of a frame
    /// (on receipt and on release) whose contents did not match its header (wrong data:
    /// allowed under a hostile writer, which clears pin bits and frees records, so the
    /// publisher overwrites held frames).
    #[derive(Default)]
    struct Tally {
        calls: u64,
        errors: u64,
        wrong: u64,
    }

    /// The call in progress (its start, monotonic ns, and its limit: 0 when none), for the
    /// watchdog.
    static CALL_START: AtomicU64 = AtomicU64::new(0);
    static CALL_LIMIT: AtomicU64 = AtomicU64::new(0);
    static CALL_WHAT: Mutex<&str> = Mutex::new("");

    /// A call bounded by `timeout` (zero: a call that must not wait), watched from
    /// [`Call::begin`] to [`Call::end`].
    struct Call {
        what: &'static str,
        limit: Duration,
        t0: Instant,
    }

    impl Call {
        fn begin(what: &'static str, timeout: Duration) -> Call {
            let limit = timeout + HANG_MARGIN;
            *CALL_WHAT.lock().unwrap() = what;
            CALL_START.store(frames::monotonic_ns(), SeqCst);
            CALL_LIMIT.store(limit.as_nanos() as u64, SeqCst);
            Call {
                what,
                limit,
                t0: Instant::now(),
            }
        }

        fn end(self, t: &mut Tally) {
            CALL_LIMIT.store(0, SeqCst);
            let took = self.t0.elapsed();
            assert!(
                took <= self.limit,
                "{} took {took:?}, more than its timeout + {HANG_MARGIN:?}: a hang",
                self.what
            );
            t.calls += 1;
        }
    }

    /// Abort the process (the test sees it die of SIGABRT) when a call is still running past
    /// its limit: a hang shows within seconds, not at the test's final timeout.
    fn watchdog() {
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_millis(20));
            let limit = CALL_LIMIT.load(SeqCst);
            let start = CALL_START.load(SeqCst);
            if limit != 0 && frames::monotonic_ns().saturating_sub(start) > limit {
                eprintln!(
                    "VIOLATION (pid {}): {} is stuck past its timeout + {HANG_MARGIN:?}: a hang",
                    std::process::id(),
                    CALL_WHAT.lock().map(|w| *w).unwrap_or("?")
                );
                std::process::abort();
            }
        });
    }

    /// A victim process: `args` = name, stop file, seed, mode, save file. Reports "ready"
    /// once attached, then "done <calls> <errors> <wrong>" once told to stop.
    pub(super) fn victim(role: &str, args: &[String]) {
        let (name, stop) = (&args[0], Path::new(&args[1]));
        let mut rng = Rng::new(args[2].parse().unwrap());
        let hard = Instant::now() + HARD_STOP;
        let stopped = move || stop.exists() || Instant::now() > hard;
        watchdog();
        let mut t = Tally::default();
        match role {
            "hv-publisher" => publisher(name, &mut rng, &mut t, &stopped),
            "hv-subscriber" => subscriber(name, args[3] == "latest", &mut rng, &mut t, &stopped),
            _ => inspector(name, &args[4], &mut rng, &mut t, &stopped),
        }
        report(&format!("done {} {} {}", t.calls, t.errors, t.wrong));
    }

    /// Attach with `f` until it works (reporting "ready" the first time) or the victim is
    /// stopped.
    fn attach<T, E>(
        what: &'static str,
        rng: &mut Rng,
        t: &mut Tally,
        stopped: &dyn Fn() -> bool,
        mut f: impl FnMut(&mut Rng) -> Result<T, E>,
    ) -> Option<T> {
        static READY: std::sync::Once = std::sync::Once::new();
        while !stopped() {
            let c = Call::begin(what, Duration::ZERO);
            let r = f(rng);
            c.end(t);
            match r {
                Ok(x) => {
                    READY.call_once(|| report("ready"));
                    return Some(x);
                }
                Err(_) => {
                    t.errors += 1;
                    std::thread::sleep(rng.micros(2000));
                }
            }
        }
        None
    }

    fn publisher(name: &str, rng: &mut Rng, t: &mut Tally, stopped: &dyn Fn() -> bool) {
        let attach_pub = |rng: &mut Rng, t: &mut Tally| {
            attach("publisher attach", rng, t, stopped, |_| {
                opts().publisher(name)
            })
        };
        let Some(mut p): Option<Publisher<Hdr>> = attach_pub(rng, t) else {
            return;
        };
        while !stopped() {
            if rng.percent(1) {
                // Detach and take over again (`recovery::take_over` on hostile words).
                drop(p);
                match attach_pub(rng, t) {
                    Some(q) => p = q,
                    None => return,
                }
                continue;
            }
            let (seq, max) = (p.next_seq(), p.max_bytes());
            let wait = rng.micros(20_000);
            let op = rng.below(10);
            let timeout = if op < 3 { Duration::ZERO } else { wait };
            let c = Call::begin("loan", timeout);
            let r = match op {
                0..=2 => p.try_loan().map_err(|e| e == TryLoanError::Disconnected),
                3 => p
                    .loan_deadline(Instant::now() + wait)
                    .map_err(|e| e == LoanError::Disconnected),
                _ => p
                    .loan_timeout(wait)
                    .map_err(|e| e == LoanError::Disconnected),
            };
            c.end(t);
            let disconnected = match r.map(|loan| write_and_publish(loan, seq, max, rng, t)) {
                Ok(()) => false,
                Err(disconnected) => {
                    t.errors += 1;
                    disconnected
                }
            };
            if disconnected {
                // The publisher word was changed under us: attach again.
                drop(p);
                match attach_pub(rng, t) {
                    Some(q) => p = q,
                    None => return,
                }
            }
            if rng.percent(10) {
                std::thread::sleep(rng.micros(500));
            }
        }
    }

    /// Fill a loaned slot with frame `seq` and publish it (sometimes with a length beyond
    /// `max`, which must fail; sometimes not at all: the loan is dropped).
    fn write_and_publish(
        mut loan: Loan<'_, Hdr>,
        seq: u64,
        max: u64,
        rng: &mut Rng,
        t: &mut Tally,
    ) {
        let buf = loan.as_mut_slice();
        assert_eq!(buf.len() as u64, max, "a loan is max_bytes long");
        let len = if rng.percent(5) {
            max + 1 + rng.below(1 << 20)
        } else {
            rng.below(max + 1)
        };
        let n = len.min(max) as usize;
        fill(&mut buf[..n], seq);
        let sum = checksum(&buf[..n]);
        if rng.percent(3) {
            return; // dropped unpublished: the slot is emptied
        }
        let c = Call::begin("publish", Duration::ZERO);
        let r = loan.publish(len as usize, &[seq, len, sum]);
        c.end(t);
        assert!(
            len <= max || r.is_err(),
            "a frame of {len} bytes was published"
        );
        if r.is_err() {
            t.errors += 1;
        }
    }

    /// Read everything a frame offers; count it wrong if its contents do not match its header.
    /// `max` is the receiving handle's `max_bytes` (its checked copy of the geometry: the
    /// creator's, unless the hostile writer had changed that word when it attached, to another
    /// value that fits the slot stride).
    fn inspect(f: &Frame<Hdr>, max: u64, t: &mut Tally) {
        let b = f.bytes();
        assert!(
            b.len() as u64 <= max && b.len() == f.len(),
            "frame {} exposes {} bytes (len {}), max_bytes {max}",
            f.seq(),
            b.len(),
            f.len()
        );
        let [seq, len, sum] = *f.header();
        assert_eq!(f.header_bytes().len(), std::mem::size_of::<Hdr>());
        let mut out = vec![0u8; b.len()];
        assert_eq!(f.copy_to(&mut out), b.len());
        std::hint::black_box((f.mono_ns(), f.real_ns(), f.slot(), f.is_empty()));
        if seq != f.seq() || len != f.len() as u64 || checksum(b) != sum {
            t.wrong += 1;
        }
    }

    fn subscriber(
        name: &str,
        latest: bool,
        rng: &mut Rng,
        t: &mut Tally,
        stopped: &dyn Fn() -> bool,
    ) {
        let attach_sub = |rng: &mut Rng, t: &mut Tally| {
            attach("subscriber attach", rng, t, stopped, |rng| {
                opts().history(rng.below(8)).subscriber(name)
            })
        };
        let Some(mut s): Option<Subscriber<Hdr>> = attach_sub(rng, t) else {
            return;
        };
        // Frames held, each until its time; some outlive the subscriber that received them.
        let mut held: VecDeque<(Frame<Hdr>, u64, Instant)> = VecDeque::new();
        let (mut last, mut failed) = (0u64, 0u32);
        while !stopped() {
            // A late joiner again (the attach window, on hostile words), now and then, and
            // after a run of failures (a forged huge sequence received, or `head` forged at
            // attach, leaves the cursor beyond every frame the publisher will publish).
            if rng.percent(1) || failed >= 8 {
                drop(s);
                match attach_sub(rng, t) {
                    Some(x) => s = x,
                    None => return,
                }
                (last, failed) = (0, 0);
                continue;
            }
            let wait = rng.micros(30_000);
            let op = rng.below(10);
            let timeout = if op == 0 || (latest && op == 2) {
                Duration::ZERO
            } else {
                wait
            };
            let c = Call::begin(if latest { "latest" } else { "recv" }, timeout);
            let mut moves = true;
            let r = match (latest, op) {
                (false, 0) => s.try_recv().map_err(|e| e == TryRecvError::Disconnected),
                (false, 1) => s
                    .recv_deadline(Instant::now() + wait)
                    .map_err(|e| e == RecvError::Disconnected),
                (false, _) => s
                    .recv_timeout(wait)
                    .map_err(|e| e == RecvError::Disconnected),
                (true, 0) => s.try_latest().map_err(|e| e == TryRecvError::Disconnected),
                (true, 1) => s
                    .latest_deadline(Instant::now() + wait)
                    .map_err(|e| e == RecvError::Disconnected),
                (true, 2) => {
                    moves = false;
                    s.newest().ok_or(false)
                }
                (true, _) => s
                    .latest_timeout(wait)
                    .map_err(|e| e == RecvError::Disconnected),
            };
            c.end(t);
            match r {
                Ok(f) => {
                    failed = 0;
                    if moves {
                        assert!(f.seq() > last, "sequence went from {last} to {}", f.seq());
                        assert_eq!(s.last_seq(), f.seq());
                        last = f.seq();
                    }
                    let max = s.max_bytes();
                    inspect(&f, max, t);
                    std::hint::black_box(s.lost());
                    held.push_back((f, max, Instant::now() + rng.micros(20_000)));
                }
                Err(disconnected) => {
                    t.errors += 1;
                    failed += 1;
                    if disconnected {
                        std::thread::sleep(rng.micros(1000));
                    }
                }
            }
            while held
                .front()
                .is_some_and(|(_, _, until)| held.len() > 6 || *until <= Instant::now())
            {
                let (f, max, _) = held.pop_front().unwrap();
                inspect(&f, max, t);
            }
        }
    }

    fn inspector(name: &str, save: &str, rng: &mut Rng, t: &mut Tally, stopped: &dyn Fn() -> bool) {
        report("ready");
        let exe = option_env!("CARGO_BIN_EXE_shmkit");
        let mut cli = 0u64;
        while !stopped() {
            match rng.below(8) {
                0..=2 => {
                    let c = Call::begin("frames::stat", Duration::ZERO);
                    let r = frames::stat(name);
                    c.end(t);
                    match r {
                        Ok(st) => {
                            assert_eq!(st.slot_states.len() as u64, st.slots);
                            for s in &st.subscribers {
                                assert!(s.holding.iter().all(|&i| i < st.slots));
                            }
                        }
                        Err(_) => t.errors += 1,
                    }
                }
                3..=5 => {
                    let c = Call::begin("frames::copy_latest", Duration::ZERO);
                    let r = frames::copy_latest(name);
                    c.end(t);
                    match r {
                        Ok(Some(f)) => {
                            // Its `max_bytes` is that of the geometry it read (see `inspect`):
                            // at most the slot stride, so within the object.
                            let size = std::fs::metadata(format!("/dev/shm/{name}"))
                                .map_or(u64::MAX, |m| m.len());
                            assert!(
                                f.data.len() as u64 <= size,
                                "a copy of {} bytes",
                                f.data.len()
                            );
                            assert_eq!(f.header.len(), std::mem::size_of::<Hdr>());
                        }
                        Ok(None) => {}
                        Err(_) => t.errors += 1,
                    }
                }
                6 if exe.is_some() => {
                    let args: Vec<&str> = match cli % 3 {
                        0 => vec!["frames", "stat", name, "--json"],
                        1 => vec!["info", name],
                        _ => vec!["frames", "save", name, save],
                    };
                    cli += 1;
                    let c = Call::begin("the shmkit binary", CLI_TIMEOUT);
                    let st = run_cli(exe.unwrap(), &args);
                    c.end(t);
                    assert!(
                        st.signal().is_none() && st.code() != Some(101),
                        "shmkit {args:?} crashed or panicked: {st}"
                    );
                    if !st.success() {
                        t.errors += 1;
                    }
                }
                _ => std::thread::sleep(rng.micros(2000)),
            }
        }
        eprintln!("  hv-inspector: {cli} runs of the shmkit binary ({exe:?})");
    }

    /// Run the `shmkit` binary, killing it after [`CLI_TIMEOUT`] (a hang).
    fn run_cli(exe: &str, args: &[&str]) -> std::process::ExitStatus {
        let mut kid = Command::new(exe)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run shmkit");
        wait_exit(&mut kid, CLI_TIMEOUT)
    }

    // -----------------------------------------------------------------------------------------
    // The hostile writer.

    /// What a word of the channel holds, for choosing plausible values.
    #[derive(Clone, Copy, PartialEq)]
    enum Word {
        Geometry,
        Owner,
        Head,
        Wait,
        Seq,
        Len,
        Stamp,
        Pin,
        Header,
        Cursor,
        Stat,
    }

    /// `args` = name, duration (ms), seed, slots, subscribers.
    pub(super) fn writer(args: &[String]) {
        let name = &args[0];
        let dur = Duration::from_millis(args[1].parse().unwrap());
        let mut rng = Rng::new(args[2].parse().unwrap());
        let slots: u64 = args[3].parse().unwrap();
        let subscribers: u64 = args[4].parse().unwrap();
        // Object offsets (the segment header is 128 bytes; never written).
        let l = frames::stat(name).expect("stat before the writes").layout;
        let seg = Segment::options()
            .raw(true)
            .open(name)
            .expect("open the object raw");
        const P: u64 = 128;
        let mut hot: Vec<(u64, Word)> = (0..17).map(|i| (P + 8 * i, Word::Geometry)).collect();
        hot.extend([
            (P + 192, Word::Owner),
            (P + 256, Word::Head),
            (P + 320, Word::Wait),
            (P + 384, Word::Wait),
        ]);
        let pin_words = subscribers.div_ceil(64);
        for i in 0..slots {
            let m = l.meta_offset + i * l.meta_stride;
            hot.extend([
                (m, Word::Seq),
                (m + 8, Word::Len),
                (m + 16, Word::Stamp),
                (m + 24, Word::Stamp),
            ]);
            hot.extend((0..pin_words).map(|w| (m + 32 + 8 * w, Word::Pin)));
            hot.extend((0..3).map(|w| (m + l.header_at + 8 * w, Word::Header)));
        }
        let records = l.meta_offset + slots * l.meta_stride;
        for r in 0..subscribers {
            let o = records + 64 * r;
            hot.extend([
                (o, Word::Owner),
                (o + 8, Word::Cursor),
                (o + 16, Word::Stat),
                (o + 24, Word::Stat),
            ]);
        }
        let (lo, hi) = (P, l.data_offset);
        assert!(hi as usize <= seg.len());
        let word = |off: u64| seg.atomic_u64(off).expect("word");
        let kind_at = |off: u64| {
            hot.iter()
                .find(|&&(o, _)| o == off)
                .map_or(Word::Stat, |&(_, k)| k)
        };
        let snapshot = Snapshot::take(&seg, lo, hi);
        let owners: Vec<u64> = hot
            .iter()
            .filter(|&&(_, k)| k == Word::Owner)
            .map(|&(o, _)| o)
            .collect();
        let seqs: Vec<u64> = hot
            .iter()
            .filter(|&&(_, k)| k == Word::Seq)
            .map(|&(o, _)| o)
            .collect();
        let deadline = Instant::now() + dur;
        let mut writes = 0u64;
        while Instant::now() < deadline {
            if snapshot.restore_now_and_then(&seg, &mut rng) {
                continue; // everything as it was at the start
            }
            let (off, kind) = if rng.percent(80) {
                hot[rng.below(hot.len() as u64) as usize]
            } else {
                let o = lo + 8 * rng.below((hi - lo) / 8);
                (o, kind_at(o))
            };
            if kind == Word::Geometry && !rng.percent(5) {
                continue; // rarely: every later attach fails until it is put back
            }
            let w = word(off);
            let cur = w.load(SeqCst);
            let head = word(P + 256).load(SeqCst);
            let k = rng.below(slots + 2);
            let v = match (kind, rng.below(8)) {
                (Word::Seq, 0) => cur ^ CLAIMED,
                (Word::Seq, 1) => head.wrapping_add(1 + k),
                (Word::Seq, 2) => CLAIMED | head.wrapping_add(1 + k),
                (Word::Seq, 3) => (1 << 62) + k,
                (Word::Seq, 4) => CLAIMED - 1 - k,
                (Word::Seq, 5) => word(seqs[rng.below(seqs.len() as u64) as usize]).load(SeqCst),
                (Word::Head, 0) => u64::MAX,
                (Word::Head, 1) => CLAIMED - 1,
                (Word::Head, 2) => cur.wrapping_add(1 << 40),
                (Word::Head, 3) => cur.wrapping_sub(k),
                (Word::Head, 4) => cur.wrapping_add(k),
                (Word::Len, 0) => MAX + 1 + rng.below(1 << 20),
                (Word::Len, 1) => u64::MAX,
                (Word::Len, 2) => rng.below(MAX + 1),
                (Word::Len, 3) => 1 << 40,
                (Word::Pin, 0 | 1) => u64::MAX,
                (Word::Pin, 2) => cur | 1 << rng.below(64),
                (Word::Pin, 3) => cur & !(1 << rng.below(64)),
                (Word::Owner, 0 | 1) => {
                    // Another process's token: the publisher's, a subscriber's (alive).
                    word(owners[rng.below(owners.len() as u64) as usize]).load(SeqCst)
                }
                // A token no process holds (61 random bits) or one beyond every token.
                (Word::Owner, 2) => (rng.next() >> 3) | 1,
                (Word::Owner, 3) => u64::MAX,
                (Word::Cursor, 0) => u64::MAX,
                (Word::Cursor, 1) => head.wrapping_sub(k),
                (Word::Cursor, 2) => head.wrapping_add(k),
                (Word::Cursor, 3) => CLAIMED,
                // The wait queues: `u32` seq (low half), `u32` sleepers (high half).
                (Word::Wait, 0) => cur | 0xffff_ffff_0000_0000,
                (Word::Wait, 1) => cur.wrapping_add(1),
                (Word::Wait, 2) => cur.wrapping_add(1 << 32),
                (Word::Wait, 3) => cur.wrapping_sub(1 << 32),
                (Word::Stamp | Word::Header | Word::Stat, 0) => u64::MAX,
                // Anything, or a small change of what is there.
                _ => scribble(&mut rng, cur, snapshot.at(off)),
            };
            w.store(v, SeqCst);
            writes += 1;
            if rng.percent(20) {
                std::thread::sleep(rng.micros(300));
            }
            if rng.below(1000) == 0 {
                // A quiet spell: the victims run on the wreckage for a while.
                std::thread::sleep(rng.micros(10_000));
            }
        }
        eprintln!("hostile writer (frames): {writes} writes");
    }
}

/// Issue 12 item 2 (audit: no test asserted it): when every slot is held by a reader, both
/// policies give `Full` from `try_loan` and `Timeout` from the timed forms; a slot freed by
/// a release is loaned again; under `ReuseOldest` a held frame is never the one reused, while
/// the other slots keep turning over.
#[test]
fn a_full_channel_follows_its_policy() {
    use shmkit::frames::LoanError;
    use std::time::Instant;
    for policy in [Policy::Block, Policy::ReuseOldest] {
        let name = unique_name("framesfull");
        let _c = Cleanup::new(&[&name]);
        let mut p = opts()
            .slots(3)
            .max_bytes(256)
            .policy(policy)
            .create(&name)
            .unwrap();
        let mut s = opts().subscriber(&name).unwrap();
        let mut held: Vec<_> = (0..3)
            .map(|_| {
                publish(&mut p, 256);
                s.try_recv().unwrap()
            })
            .collect();
        assert!(
            matches!(p.try_loan(), Err(TryLoanError::Full)),
            "{policy:?}"
        );
        assert!(matches!(
            p.loan_timeout(Duration::from_millis(30)),
            Err(LoanError::Timeout)
        ));
        assert!(matches!(
            p.loan_deadline(Instant::now() + Duration::from_millis(30)),
            Err(LoanError::Timeout)
        ));
        // A release frees its slot for the next loan.
        drop(held.remove(0));
        publish(&mut p, 256);
        held.push(s.try_recv().unwrap());
        assert!(
            matches!(p.try_loan(), Err(TryLoanError::Full)),
            "{policy:?}"
        );
        if policy == Policy::ReuseOldest {
            // One frame held: the other two slots turn over, the held frame stays intact.
            let keep = held.remove(0);
            drop(held);
            for _ in 0..10 {
                publish(&mut p, 256);
            }
            check(&keep);
            assert_eq!(keep.seq(), 2);
        }
    }
}

/// Issue 12 item 1 (audit: untested): huge pages and pre-faulting. A channel asked for huge
/// pages aligns its slots to 2 MiB; where the kernel's shmem THP setting refuses them the
/// handle works with normal pages and its notes say so. Frames cross either way.
#[test]
fn huge_pages_and_populate_align_slots_and_fall_back_with_a_note() {
    let name = unique_name("frameshuge");
    let _c = Cleanup::new(&[&name]);
    let mut p = opts()
        .slots(2)
        .max_bytes(1 << 20)
        .huge_pages(true)
        .populate(true)
        .create(&name)
        .unwrap();
    let layout = shmkit::frames::stat(&name).unwrap().layout;
    assert_eq!(layout.stride % (2 << 20), 0, "{layout:?}");
    assert_eq!(layout.data_offset % (2 << 20), 0, "{layout:?}");
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
        .unwrap_or_default();
    let refused = thp.is_empty() || thp.contains("[never]") || thp.contains("[deny]");
    if refused {
        assert!(
            p.notes().iter().any(|n| n.contains("huge pages")),
            "shmem THP is {thp:?}: notes {:?}",
            p.notes()
        );
    }
    let mut s = opts().populate(true).subscriber(&name).unwrap();
    publish(&mut p, 1 << 20);
    check(&s.try_recv().unwrap());
}

/// The frames handles' blocking calls have the queues' shape (`os::deadline::blocking_forms!`):
/// a timeout too large for `Instant` is no limit, a deadline already past polls once, and the
/// time running out is the one `Timeout` variant.
#[test]
fn blocking_forms_have_the_queues_shape() {
    let name = unique_name("framesforms");
    let _c = Cleanup::new(&[&name]);
    let mut p = opts().slots(2).max_bytes(256).create(&name).unwrap();
    let mut s = opts().subscriber(&name).unwrap();
    let now = std::time::Instant::now;
    assert!(matches!(s.recv_deadline(now()), Err(RecvError::Timeout)));
    assert!(matches!(
        s.latest_timeout(Duration::ZERO),
        Err(RecvError::Timeout)
    ));
    let seq = publish(&mut p, 256);
    assert_eq!(s.recv_timeout(Duration::MAX).unwrap().seq(), seq); // no limit, no panic
    let seq = publish(&mut p, 256);
    assert_eq!(s.latest_deadline(now()).unwrap().seq(), seq); // there: taken
    drop(p.loan_deadline(now()).unwrap()); // a free slot, even with no time left
    drop(p.loan_timeout(Duration::MAX).unwrap());
}
