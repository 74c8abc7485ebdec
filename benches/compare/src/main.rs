//! Two-process ping-pong, busy-poll, 8-byte messages: shmkit's SPSC queue and bytes ring
//! beside iceoryx2's publish-subscribe (ipc service), with the floor (one atomic ping-pong in a shared page),
//! all in one run. Then the zero-copy case, 8 MiB frames: shmkit's frame channel beside
//! iceoryx2's publish-subscribe of `[u8]` slices, in the shape of `shmkit bench frames`'s
//! `frames_<bytes>` rows (publish to receive, both ways: each side loans its next buffer before
//! the frame it answers exists, the parent writes its frame's first and last byte before the
//! timer, the peer reads the first and last byte of what it receives and writes them into its
//! reply's, and a received frame is released after the reply / after the timer). The peer is
//! this binary re-executed, so no state is fork-shared; the parent is pinned to CPU 0 and the
//! peer to CPU 1.
//!
//! ```text
//! cd benches/compare && cargo run --release -- [--iters N] [--frame-iters N]
//! ```

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use iceoryx2::prelude::*;
use shmkit::frames::{FramesOptions, TryRecvError};
use shmkit::queue::{bytes, spsc};
use shmkit::Segment;

/// The frame size of the zero-copy rows (the size of `shmkit bench frames`'s 8 MiB goal).
const FRAME_BYTES: usize = 8 << 20;

/// Pin to one CPU (parent 0, peer 1), as `shmkit bench latency --pin` does.
fn pin(cpu: usize) {
    // SAFETY: sysconf has no preconditions; cpu_set_t is plain data (zeroed = empty), CPU_SET
    // writes inside it, sched_setaffinity reads it.
    unsafe {
        if libc::sysconf(libc::_SC_NPROCESSORS_ONLN) < 2 {
            return;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn spawn(role: &str, name: &str, total: u64) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([role, name, &total.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn peer");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "peer failed");
    (child, out)
}

fn ready() {
    println!("ready");
    std::io::stdout().flush().unwrap();
}

fn timed(warm: u64, iters: u64, mut rt: impl FnMut(u64)) -> Vec<u64> {
    for i in 0..warm {
        rt(i);
    }
    (warm..warm + iters)
        .map(|i| {
            let t = Instant::now();
            rt(i);
            t.elapsed().as_nanos() as u64
        })
        .collect()
}

fn report(name: &str, mut v: Vec<u64>, floor: Option<u64>) -> u64 {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    let (p50, p99, p999) = (at(0.5), at(0.99), at(0.999));
    let ratio = floor.map_or(String::new(), |f| {
        format!("{:.2}x floor_spin", p50 as f64 / f as f64)
    });
    println!(
        "{name:<14} {:>8} {p50:>8} {p99:>8} {p999:>9}  {ratio}",
        v.len()
    );
    p50
}

/// An iceoryx2 publish-subscribe service of `T` payloads.
type Factory<T> =
    iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, T, ()>;

/// A node and its two services (parent to peer, peer to parent).
type Services<T> = (Node<ipc::Service>, [Factory<T>; 2]);

/// The two `u64` services of the 8-byte rows, configured as iceoryx2's own publish-subscribe
/// benchmark configures its services: one publisher and one subscriber each, no history, a
/// subscriber buffer of one sample, safe overflow.
fn iox_services(name: &str) -> Result<Services<u64>, Box<dyn std::error::Error>> {
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let mk = |dir: &str| -> Result<_, Box<dyn std::error::Error>> {
        Ok(node
            .service_builder(&ServiceName::new(&format!("{name}/{dir}"))?)
            .publish_subscribe::<u64>()
            .max_publishers(1)
            .max_subscribers(1)
            .history_size(0)
            .subscriber_max_buffer_size(1)
            .enable_safe_overflow(true)
            .open_or_create()?)
    };
    let a2b = mk("a2b")?;
    let b2a = mk("b2a")?;
    Ok((node, [a2b, b2a]))
}

/// The two `[u8]` services of the zero-copy rows, configured as [`iox_services`].
fn iox_slice_services(name: &str) -> Result<Services<[u8]>, Box<dyn std::error::Error>> {
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let mk = |dir: &str| -> Result<_, Box<dyn std::error::Error>> {
        Ok(node
            .service_builder(&ServiceName::new(&format!("{name}/frames-{dir}"))?)
            .publish_subscribe::<[u8]>()
            .history_size(0)
            .subscriber_max_buffer_size(1)
            .enable_safe_overflow(true)
            .max_publishers(1)
            .max_subscribers(1)
            .open_or_create()?)
    };
    let a2b = mk("a2b")?;
    let b2a = mk("b2a")?;
    Ok((node, [a2b, b2a]))
}

/// An iceoryx2 publisher's next 8 MiB sample with `v` as its first and last byte.
///
/// Only those two bytes are written: the rest of the frame stands for what a camera's DMA left
/// there, as in `shmkit bench frames`. iceoryx2 hands out a slice sample only as uninitialized
/// memory; `assume_init` over the unwritten bytes is what iceoryx2's own publish-subscribe
/// benchmark does for its large payloads (it writes none of them). Nobody reads the unwritten
/// bytes: the receivers read the first and last byte only.
fn iox_frame(
    p: &iceoryx2::port::publisher::Publisher<ipc::Service, [u8], ()>,
    v: u8,
) -> Result<iceoryx2::sample_mut::SampleMut<ipc::Service, [u8], ()>, Box<dyn std::error::Error>> {
    let mut s = p.loan_slice_uninit(FRAME_BYTES)?;
    let b = s.payload_mut();
    b[0].write(v);
    b[FRAME_BYTES - 1].write(v);
    // SAFETY: see the function's docs: the bytes read (the first and the last) are written;
    // the others are shared memory iceoryx2 mapped, never read here.
    Ok(unsafe { s.assume_init() })
}

/// The first byte of a received frame, if its first and last bytes agree and it is
/// `FRAME_BYTES` long.
fn frame_byte(b: &[u8]) -> Option<u8> {
    (b.len() == FRAME_BYTES && b.first() == b.last()).then(|| b[0])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    set_log_level(LogLevel::Error);
    let args: Vec<String> = std::env::args().collect();
    pin(if args.get(1).is_some_and(|a| a.starts_with("peer-")) {
        1
    } else {
        0
    });
    match args.get(1).map(String::as_str) {
        Some("peer-floor") => {
            let seg = Segment::open(&args[2])?;
            let (ping, pong) = (seg.atomic_u64(0)?, seg.atomic_u64(128)?);
            ready();
            for i in 1..=args[3].parse::<u64>()? {
                while ping.load(Ordering::Acquire) != i {
                    std::hint::spin_loop();
                }
                pong.store(i, Ordering::Release);
            }
            return Ok(());
        }
        Some("peer-shmkit") => {
            let a2b = spsc::Queue::<u64>::open(&format!("{}-a2b", args[2]))?;
            let b2a = spsc::Queue::<u64>::open(&format!("{}-b2a", args[2]))?;
            let (mut rx, mut tx) = (a2b.consumer()?, b2a.producer()?);
            ready();
            for _ in 0..args[3].parse::<u64>()? {
                let v = loop {
                    if let Ok(v) = rx.try_pop() {
                        break v;
                    }
                    std::hint::spin_loop();
                };
                while tx.try_push(v).is_err() {
                    std::hint::spin_loop();
                }
            }
            return Ok(());
        }
        Some("peer-shmkit-bytes") => {
            let a2b = bytes::Ring::open(&format!("{}-ra2b", args[2]))?;
            let b2a = bytes::Ring::open(&format!("{}-rb2a", args[2]))?;
            let (mut rx, mut tx) = (a2b.consumer()?, b2a.producer()?);
            ready();
            let mut buf = [0u8; 8];
            for _ in 0..args[3].parse::<u64>()? {
                let m = loop {
                    if let Ok(m) = rx.try_peek() {
                        break m;
                    }
                    std::hint::spin_loop();
                };
                buf.copy_from_slice(&m[..8]);
                m.release();
                while tx.try_push(&buf).is_err() {
                    std::hint::spin_loop();
                }
            }
            return Ok(());
        }
        Some("peer-iceoryx2") => {
            let (_node, [a2b, b2a]) = iox_services(&args[2])?;
            let sub = a2b.subscriber_builder().create()?;
            let publ = b2a.publisher_builder().create()?;
            ready();
            for _ in 0..args[3].parse::<u64>()? {
                let v = loop {
                    if let Some(s) = sub.receive()? {
                        break *s;
                    }
                    std::hint::spin_loop();
                };
                publ.loan_uninit()?.write_payload(v).send()?;
            }
            return Ok(());
        }
        Some("peer-shmkit-frames") => {
            let o = FramesOptions::<u64>::new()
                .slots(4)
                .max_bytes(FRAME_BYTES as u64);
            let mut sa = o.subscriber(&format!("{}-fa", args[2]))?;
            let mut pb = o.publisher(&format!("{}-fb", args[2]))?;
            ready();
            for _ in 0..args[3].parse::<u64>()? {
                let mut l = pb.loan()?;
                let f = loop {
                    match sa.try_recv() {
                        Ok(f) => break f,
                        Err(TryRecvError::Empty) => std::hint::spin_loop(),
                        Err(e) => return Err(e.into()),
                    }
                };
                let v = frame_byte(f.bytes()).ok_or("a wrong frame")?;
                let b = l.as_mut_slice();
                b[0] = v;
                b[FRAME_BYTES - 1] = v;
                l.publish(FRAME_BYTES, &u64::from(v))?;
                drop(f);
            }
            return Ok(());
        }
        Some("peer-iceoryx2-frames") => {
            let (_node, [a2b, b2a]) = iox_slice_services(&args[2])?;
            let sub = a2b.subscriber_builder().create()?;
            let publ = b2a
                .publisher_builder()
                .initial_max_slice_len(FRAME_BYTES)
                .create()?;
            ready();
            for _ in 0..args[3].parse::<u64>()? {
                let mut l = publ.loan_slice_uninit(FRAME_BYTES)?;
                let s = loop {
                    if let Some(s) = sub.receive()? {
                        break s;
                    }
                    std::hint::spin_loop();
                };
                let v = frame_byte(s.payload()).ok_or("a wrong frame")?;
                let b = l.payload_mut();
                b[0].write(v);
                b[FRAME_BYTES - 1].write(v);
                // SAFETY: as in `iox_frame`.
                unsafe { l.assume_init() }.send()?;
                drop(s);
            }
            return Ok(());
        }
        _ => {}
    }
    let iters: u64 = match args.iter().position(|a| a == "--iters") {
        Some(i) => args[i + 1].parse()?,
        None => 100_000,
    };
    let frame_iters: u64 = match args.iter().position(|a| a == "--frame-iters") {
        Some(i) => args[i + 1].parse()?,
        None => 2_000,
    };
    let warm = iters / 10;
    let total = warm + iters;
    let tag = format!("shmkit-compare-{}", std::process::id());
    let iox_before = iox_files();
    println!(
        "{:<14} {:>8} {:>8} {:>8} {:>9}  (round trip, ns)",
        "name", "iters", "p50", "p99", "p99.9"
    );

    // Floor.
    let seg = Segment::options().unlink_on_drop(true).create(&tag, 4096)?;
    let (ping, pong) = (seg.atomic_u64(0)?, seg.atomic_u64(128)?);
    let (mut c, _o) = spawn("peer-floor", &tag, total);
    let v = timed(warm, iters, |i| {
        ping.store(i + 1, Ordering::Release);
        while pong.load(Ordering::Acquire) != i + 1 {
            std::hint::spin_loop();
        }
    });
    c.wait()?;
    let floor = report("floor_spin", v, None);

    // shmkit SPSC.
    let a2b = spsc::Queue::<u64>::create(&format!("{tag}-a2b"), 64)?;
    let b2a = spsc::Queue::<u64>::create(&format!("{tag}-b2a"), 64)?;
    a2b.set_unlink_on_drop(true);
    b2a.set_unlink_on_drop(true);
    let (mut tx, mut rx) = (a2b.producer()?, b2a.consumer()?);
    let (mut c, _o) = spawn("peer-shmkit", &tag, total);
    let v = timed(warm, iters, |i| {
        while tx.try_push(i).is_err() {
            std::hint::spin_loop();
        }
        loop {
            if rx.try_pop().is_ok() {
                break;
            }
            std::hint::spin_loop();
        }
    });
    c.wait()?;
    let shmkit_spsc = report("shmkit_spsc", v, Some(floor));

    // shmkit bytes ring, 8-byte messages.
    let a2b = bytes::Ring::create(&format!("{tag}-ra2b"), 4096)?;
    let b2a = bytes::Ring::create(&format!("{tag}-rb2a"), 4096)?;
    a2b.set_unlink_on_drop(true);
    b2a.set_unlink_on_drop(true);
    let (mut tx, mut rx) = (a2b.producer()?, b2a.consumer()?);
    let (mut c, _o) = spawn("peer-shmkit-bytes", &tag, total);
    let v = timed(warm, iters, |i| {
        while tx.try_push(&i.to_le_bytes()).is_err() {
            std::hint::spin_loop();
        }
        loop {
            if let Ok(m) = rx.try_peek() {
                std::hint::black_box(&m[..8]);
                m.release();
                break;
            }
            std::hint::spin_loop();
        }
    });
    c.wait()?;
    report("shmkit_bytes", v, Some(floor));

    // iceoryx2 publish-subscribe.
    let (_node, [a2b, b2a]) = iox_services(&tag)?;
    let publ = a2b.publisher_builder().create()?;
    let sub = b2a.subscriber_builder().create()?;
    let (mut c, _o) = spawn("peer-iceoryx2", &tag, total);
    // Let the peer's ports connect to ours before the first sample.
    std::thread::sleep(Duration::from_millis(100));
    let v = timed(warm, iters, |i| {
        publ.loan_uninit().unwrap().write_payload(i).send().unwrap();
        loop {
            if sub.receive().unwrap().is_some() {
                break;
            }
            std::hint::spin_loop();
        }
    });
    c.wait()?;
    let iox_u64 = report("iceoryx2", v, Some(floor));
    drop((publ, sub, a2b, b2a, _node));

    // Zero-copy, 8 MiB frames (module docs). Each returns its round trips.
    let (fwarm, ftotal) = (frame_iters / 10 + 16, frame_iters + frame_iters / 10 + 16);
    println!(
        "{:<14} {:>8} {:>8} {:>8} {:>9}  (8 MiB frames, publish to receive both ways)",
        "", "", "", "", ""
    );
    // shmkit frames.
    let o = FramesOptions::<u64>::new()
        .slots(4)
        .max_bytes(FRAME_BYTES as u64);
    let mut pa = o
        .clone()
        .unlink_on_drop(true)
        .create(&format!("{tag}-fa"))?;
    // Channel B's publisher is the peer's: its creator detaches at once (the channel stays,
    // and `Unlink` removes its name at the end, on error paths too).
    let fb = format!("{tag}-fb");
    drop(o.create(&fb)?);
    let _unlink_b = Unlink(&fb);
    let mut sb = o.subscriber(&fb)?;
    let (mut c, _o) = spawn("peer-shmkit-frames", &tag, ftotal);
    let mut v = Vec::with_capacity(frame_iters as usize);
    for i in 0..ftotal {
        let k = i as u8;
        let mut l = pa.loan()?;
        let b = l.as_mut_slice();
        b[0] = k;
        b[FRAME_BYTES - 1] = k;
        let t0 = Instant::now();
        l.publish(FRAME_BYTES, &u64::from(k))?;
        let f = loop {
            match sb.try_recv() {
                Ok(f) => break f,
                Err(TryRecvError::Empty) => std::hint::spin_loop(),
                Err(e) => return Err(e.into()),
            }
        };
        let ok = frame_byte(f.bytes()) == Some(k);
        let dt = t0.elapsed().as_nanos() as u64;
        drop(f);
        if !ok {
            return Err(format!("shmkit frames: round trip {i}: wrong reply").into());
        }
        if i >= fwarm {
            v.push(dt);
        }
    }
    c.wait()?;
    let shmkit_frames = report("shmkit_frames", v, Some(floor));

    // iceoryx2, [u8] slices.
    let (_node, [a2b, b2a]) = iox_slice_services(&tag)?;
    let publ = a2b
        .publisher_builder()
        .initial_max_slice_len(FRAME_BYTES)
        .create()?;
    let sub = b2a.subscriber_builder().create()?;
    let (mut c, _o) = spawn("peer-iceoryx2-frames", &tag, ftotal);
    std::thread::sleep(Duration::from_millis(100));
    let mut v = Vec::with_capacity(frame_iters as usize);
    for i in 0..ftotal {
        let k = i as u8;
        let l = iox_frame(&publ, k)?;
        let t0 = Instant::now();
        l.send()?;
        let s = loop {
            if let Some(s) = sub.receive()? {
                break s;
            }
            std::hint::spin_loop();
        };
        let ok = frame_byte(s.payload()) == Some(k);
        let dt = t0.elapsed().as_nanos() as u64;
        drop(s);
        if !ok {
            return Err(format!("iceoryx2 frames: round trip {i}: wrong reply").into());
        }
        if i >= fwarm {
            v.push(dt);
        }
    }
    c.wait()?;
    let iox_frames = report("iceoryx2_frames", v, Some(floor));
    drop((publ, sub, a2b, b2a, _node));
    println!(
        "iceoryx2 / shmkit, p50: 8-byte queue {:.2}x, 8 MiB frames {:.2}x",
        iox_u64 as f64 / shmkit_spsc as f64,
        iox_frames as f64 / shmkit_frames as f64
    );
    // iceoryx2 keeps a small global management file in /dev/shm after its last node is gone;
    // remove the ones this run created, so the run leaves nothing behind.
    for f in iox_files() {
        if !iox_before.contains(&f) {
            let _ = std::fs::remove_file(format!("/dev/shm/{f}"));
        }
    }
    Ok(())
}

/// Unlinks a name when dropped.
struct Unlink<'a>(&'a str);

impl Drop for Unlink<'_> {
    fn drop(&mut self) {
        let _ = Segment::unlink(self.0);
    }
}

/// iceoryx2's files in /dev/shm.
fn iox_files() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with("iox2_"))
                .collect()
        })
        .unwrap_or_default()
}
