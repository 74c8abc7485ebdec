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
    // Another header type is refused, naming both.
    let e = FramesOptions::<[u64; 2]>::new()
        .subscriber(&name)
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("[u64; 3]") && msg.contains("[u64; 2]"),
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
