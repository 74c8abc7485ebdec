//! Two-process ping-pong, busy-poll, 8-byte messages: shmkit's SPSC queue and bytes ring
//! beside iceoryx2's publish-subscribe (ipc service), with the floor (one atomic ping-pong in a shared page),
//! all in one run. The peer is this binary re-executed, so no state is fork-shared; the parent
//! is pinned to CPU 0 and the peer to CPU 1.
//!
//! ```text
//! cd benches/compare && cargo run --release -- [--iters N]
//! ```

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use iceoryx2::prelude::*;
use shmkit::queue::{bytes, spsc};
use shmkit::Segment;

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

fn iox_services(
    name: &str,
) -> Result<
    (
        Node<ipc::Service>,
        [iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, u64, ()>; 2],
    ),
    Box<dyn std::error::Error>,
> {
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let mk = |dir: &str| -> Result<_, Box<dyn std::error::Error>> {
        Ok(node
            .service_builder(&ServiceName::new(&format!("{name}/{dir}"))?)
            .publish_subscribe::<u64>()
            .history_size(0)
            .subscriber_max_buffer_size(1)
            .enable_safe_overflow(true)
            .open_or_create()?)
    };
    let a2b = mk("a2b")?;
    let b2a = mk("b2a")?;
    Ok((node, [a2b, b2a]))
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
                while tx.try_send(&buf).is_err() {
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
        _ => {}
    }
    let iters: u64 = match args.iter().position(|a| a == "--iters") {
        Some(i) => args[i + 1].parse()?,
        None => 100_000,
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
    report("shmkit_spsc", v, Some(floor));

    // shmkit bytes ring, 8-byte messages.
    let a2b = bytes::Ring::create(&format!("{tag}-ra2b"), 4096)?;
    let b2a = bytes::Ring::create(&format!("{tag}-rb2a"), 4096)?;
    a2b.set_unlink_on_drop(true);
    b2a.set_unlink_on_drop(true);
    let (mut tx, mut rx) = (a2b.producer()?, b2a.consumer()?);
    let (mut c, _o) = spawn("peer-shmkit-bytes", &tag, total);
    let v = timed(warm, iters, |i| {
        while tx.try_send(&i.to_le_bytes()).is_err() {
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
    report("iceoryx2", v, Some(floor));
    drop((publ, sub, a2b, b2a, _node));
    // iceoryx2 keeps a small global management file in /dev/shm after its last node is gone;
    // remove the ones this run created, so the run leaves nothing behind.
    for f in iox_files() {
        if !iox_before.contains(&f) {
            let _ = std::fs::remove_file(format!("/dev/shm/{f}"));
        }
    }
    Ok(())
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
