//! A synthetic camera shares every frame with two consumer processes, without copying it.
//!
//! One command runs the whole demo (a producer and two consumers, each its own process):
//!
//! ```text
//! cargo run --release --example camera
//! cargo run --release --example camera -- --seconds 5 --fps 30 --size 1280x720
//! ```
//!
//! Or run the roles yourself, in separate terminals (start the producer first; it waits until
//! the given number of consumers has attached, then streams):
//!
//! ```text
//! terminal 1:  cargo run --release --example camera -- --role producer --wait-consumers 2
//! terminal 2:  cargo run --release --example camera -- --role consumer
//! terminal 3:  cargo run --release --example camera -- --role consumer --id 2
//! ```
//!
//! The producer creates the frame channel `shmkit-camera` (8 slots of one RGB frame each),
//! draws a moving pattern into a loaned slot in place, stores the frame's checksum in the
//! frame header and publishes it, at `--fps` for `--seconds`. Each consumer receives every
//! frame in place (a pinned, read-only slot), verifies its checksum, prints a progress line
//! every second, and at the end its frame rate, the publish-to-receive latency (p50, p99,
//! max), the frames it lost and the checksum errors. The producer removes the channel when it
//! exits; the consumers then see `Disconnected` and finish, leaving nothing in `/dev/shm`.
//! A channel of this name left by a killed run is replaced by the next producer; a consumer
//! that finds it first (its publisher dead, no frame in it for this run) opens the name again
//! until the new one is there.
//! `shmkit frames stat shmkit-camera` shows the channel while it runs.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use shmkit::frames::{monotonic_ns, FramesOptions, RecvError};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// The std print macros' lines, in one `write(2)` each: three processes share the terminal, and
/// the std macros write a formatted line in pieces that interleave with the others'.
macro_rules! say {
    (err, $($t:tt)*) => {{
        use std::io::Write as _;
        let _ = std::io::stderr().write_all(format!("{}\n", format_args!($($t)*)).as_bytes());
    }};
    (out, $($t:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(format!("{}\n", format_args!($($t)*)).as_bytes());
        let _ = out.flush();
    }};
}

/// The header every frame carries.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable)]
#[repr(C)]
struct FrameInfo {
    width: u32,
    height: u32,
    /// Bytes per row.
    stride: u32,
    /// 1: RGB, 8 bits per channel.
    format: u32,
    /// Frame number (0-based) the pattern was drawn for.
    index: u64,
    /// `checksum` of the payload.
    checksum: u64,
}
shmkit::shm_type!(FrameInfo);

struct Args {
    role: Option<String>,
    name: String,
    seconds: f64,
    fps: f64,
    width: u32,
    height: u32,
    wait_consumers: u64,
    id: u32,
}

const USAGE: &str = "usage: camera [--seconds N] [--fps N] [--size WxH] [--name NAME] \
                     [--role producer|consumer] [--wait-consumers N] [--id N]";

fn usage(msg: &str) -> ! {
    say!(err, "camera: {msg}\n{USAGE}");
    std::process::exit(2)
}

fn parse() -> Args {
    let mut a = Args {
        role: None,
        name: "shmkit-camera".into(),
        seconds: 10.0,
        fps: 60.0,
        width: 1920,
        height: 1080,
        wait_consumers: 0,
        id: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        let num = |s: String| -> f64 {
            s.parse()
                .ok()
                .filter(|v: &f64| *v > 0.0)
                .unwrap_or_else(|| usage(&format!("{flag}: {s:?} is not a positive number")))
        };
        match flag.as_str() {
            "--role" => a.role = Some(val()),
            "--name" => a.name = val(),
            // Bounded so that the frame count and period stay representable (a tiny or huge
            // value is a usage error, not a panic in `Duration`).
            "--seconds" => a.seconds = in_range(num(val()), 1e-3, 1e6, "--seconds"),
            "--fps" => a.fps = in_range(num(val()), 1e-3, 1e6, "--fps"),
            "--wait-consumers" => a.wait_consumers = num(val()) as u64,
            "--id" => a.id = num(val()) as u32,
            "--size" => {
                let v = val();
                let (w, h) = v
                    .split_once('x')
                    .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                    .filter(|&(w, h): &(u32, u32)| w > 0 && h > 0 && w <= 16384 && h <= 16384)
                    .unwrap_or_else(|| {
                        usage(&format!(
                            "--size: {v:?} is not WxH with W and H in 1..=16384"
                        ))
                    });
                (a.width, a.height) = (w, h);
            }
            "-h" | "--help" => {
                // Asked for: on standard output, and success.
                say!(
                    out,
                    "camera: streams synthetic frames between processes (the header of \
                     examples/camera.rs says more)\n{USAGE}"
                );
                std::process::exit(0)
            }
            _ => usage(&format!("unknown argument {flag:?}")),
        }
    }
    a
}

/// `v` if it lies in `lo..=hi`, else the usage message.
fn in_range(v: f64, lo: f64, hi: f64, flag: &str) -> f64 {
    if (lo..=hi).contains(&v) {
        v
    } else {
        usage(&format!("{flag}: {v} is outside {lo}..={hi}"))
    }
}

/// A fast checksum of the payload (64-bit words, rotate and xor).
fn checksum(b: &[u8]) -> u64 {
    let mut words = b.chunks_exact(8);
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for w in &mut words {
        h = h.rotate_left(5) ^ u64::from_le_bytes(w.try_into().unwrap());
    }
    for &x in words.remainder() {
        h = h.rotate_left(5) ^ x as u64;
    }
    h
}

/// Draw frame `t`: diagonal colour bands that move with `t`.
fn draw(buf: &mut [u8], w: u32, h: u32, t: u64) {
    let stride = 3 * w as usize;
    for (y, row) in buf.chunks_exact_mut(stride).take(h as usize).enumerate() {
        let gy = (y as u64 + 2 * t) as u8;
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let xs = x as u64 + 4 * t;
            px[0] = xs as u8;
            px[1] = gy;
            px[2] = (xs as u8) ^ (y as u8);
        }
    }
}

fn producer(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let bytes = 3 * a.width as u64 * a.height as u64;
    // A channel of this name left by a killed run is replaced; one a live producer publishes
    // on is not (read-only look: `frames::stat` changes nothing).
    match shmkit::frames::stat(&a.name) {
        Ok(st) => {
            if let Some(p) = st
                .publisher
                .filter(|p| p.liveness != shmkit::Liveness::Dead)
            {
                return Err(format!(
                    "a producer (pid {}) already publishes on {:?}: stop it, or pick another \
                     --name",
                    p.pid, a.name
                )
                .into());
            }
            let _ = shmkit::Segment::unlink(&a.name);
        }
        Err(shmkit::Error::NotFound { .. }) => {}
        Err(e) => {
            return Err(format!("{:?} exists and is not a channel to replace: {e}", a.name).into())
        }
    }
    let mut p = FramesOptions::<FrameInfo>::new()
        .slots(8)
        .max_bytes(bytes)
        .populate(true)
        .unlink_on_drop(true)
        .create(&a.name)?;
    for n in p.notes() {
        say!(err, "[producer] note: {n}");
    }
    let waited = Instant::now();
    loop {
        let attached = shmkit::frames::stat(&a.name)?.subscribers.len() as u64;
        if attached >= a.wait_consumers {
            break;
        }
        if waited.elapsed() > Duration::from_secs(30) {
            return Err(
                format!("only {attached} of {} consumers attached", a.wait_consumers).into(),
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let total = (a.seconds * a.fps).round() as u64;
    let period = Duration::from_secs_f64(1.0 / a.fps);
    say!(
        err,
        "[producer] {total} frames of {}x{} RGB ({:.1} MB) at {} fps",
        a.width,
        a.height,
        bytes as f64 / 1e6,
        a.fps
    );
    let start = Instant::now();
    for t in 0..total {
        let due = start + period * t as u32;
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let mut loan = p.loan_timeout(Duration::from_secs(5))?;
        let buf = &mut loan.as_mut_slice()[..bytes as usize];
        draw(buf, a.width, a.height, t);
        let info = FrameInfo {
            width: a.width,
            height: a.height,
            stride: 3 * a.width,
            format: 1,
            index: t,
            checksum: checksum(buf),
        };
        loan.publish(bytes as usize, &info)?;
        if (t + 1) % a.fps.max(1.0) as u64 == 0 {
            say!(err, "[producer] {} frames published", t + 1);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    say!(
        out,
        "[producer] done: {total} frames in {secs:.2} s ({:.1} fps)",
        total as f64 / secs
    );
    Ok(())
}

fn consumer(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let tag = format!("[consumer {}]", a.id);
    // The producer may not have created the channel yet, or the name may still hold the
    // channel of a killed run, whose publisher is dead: it gives `Disconnected` at once, until
    // this run's producer replaces it (a new object under the name). Until its first frame,
    // this consumer treats both as "not there yet" and opens the name again, for up to 30 s.
    let attach_until = Instant::now() + Duration::from_secs(30);
    let attach = || loop {
        match FramesOptions::<FrameInfo>::new().subscriber(&a.name) {
            Ok(s) => break Ok(s),
            Err(_) if Instant::now() < attach_until => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => break Err(e),
        }
    };
    let mut s = attach()?;
    let mut lat_ns: Vec<u64> = Vec::new();
    let (mut bad, mut first) = (0u64, None);
    let mut last_report = Instant::now();
    loop {
        let f = match s.recv() {
            Ok(f) => f,
            // No frame yet: a dead run's channel (or this run's producer failed before its
            // first frame). Look again under the name.
            Err(RecvError::Disconnected) if first.is_none() => {
                if Instant::now() >= attach_until {
                    return Err(format!(
                        "no frame on {:?} within 30 s: no live producer published on it",
                        a.name
                    )
                    .into());
                }
                drop(s);
                std::thread::sleep(Duration::from_millis(20));
                s = attach()?;
                continue;
            }
            Err(RecvError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        };
        lat_ns.push(monotonic_ns().saturating_sub(f.mono_ns()));
        first.get_or_insert_with(Instant::now);
        let info = *f.header();
        if checksum(f.bytes()) != info.checksum
            // In u64: the header is the producer's bytes (a forged one must not overflow).
            || f.len() as u64 != 3 * u64::from(info.width) * u64::from(info.height)
        {
            bad += 1;
        }
        drop(f);
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let n = lat_ns.len();
            let recent = &mut lat_ns[n.saturating_sub(60)..].to_vec();
            recent.sort_unstable();
            say!(
                err,
                "{tag} {n} frames, {:.1} fps, latency p50 {:.3} ms, lost {}, checksum errors {bad}",
                n as f64 / first.unwrap().elapsed().as_secs_f64().max(1e-9),
                recent[recent.len() / 2] as f64 / 1e6,
                s.lost()
            );
        }
    }
    let n = lat_ns.len();
    let secs = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    lat_ns.sort_unstable();
    let pct = |p: f64| {
        lat_ns
            .get(((n as f64 * p) as usize).min(n.saturating_sub(1)))
            .map_or(0.0, |&v| v as f64 / 1e6)
    };
    say!(
        out,
        "{tag} done: {n} frames, {:.1} fps, publish-to-receive latency p50 {:.3} ms, p99 {:.3} \
         ms, max {:.3} ms; lost {}; checksum errors {bad}",
        if secs > 0.0 { n as f64 / secs } else { 0.0 },
        pct(0.5),
        pct(0.99),
        lat_ns.last().map_or(0.0, |&v| v as f64 / 1e6),
        s.lost()
    );
    if bad != 0 {
        return Err(format!("{bad} frames had a wrong checksum").into());
    }
    Ok(())
}

/// Start this program again in `role`.
fn spawn(a: &Args, role: &str, extra: &[&str]) -> std::io::Result<Child> {
    let (size, secs, fps) = (
        format!("{}x{}", a.width, a.height),
        a.seconds.to_string(),
        a.fps.to_string(),
    );
    Command::new(std::env::current_exe()?)
        .args(["--role", role, "--name", &a.name, "--size", &size])
        .args(["--seconds", &secs, "--fps", &fps])
        .args(extra)
        .spawn()
}

fn main() {
    let a = parse();
    let r = match a.role.as_deref() {
        Some("producer") => producer(&a),
        Some("consumer") => consumer(&a),
        Some(other) => usage(&format!(
            "--role {other:?} is neither producer nor consumer"
        )),
        None => {
            // The demo: one producer and two consumers, three processes.
            let run = || -> Result<(), Box<dyn std::error::Error>> {
                let mut kids = vec![spawn(&a, "producer", &["--wait-consumers", "2"])?];
                for id in ["1", "2"] {
                    kids.push(spawn(&a, "consumer", &["--id", id])?);
                }
                let mut failed = 0;
                for mut k in kids {
                    if !k.wait()?.success() {
                        failed += 1;
                    }
                }
                if failed > 0 {
                    return Err(format!("{failed} of the 3 processes failed").into());
                }
                Ok(())
            };
            run()
        }
    };
    if let Err(e) = r {
        say!(err, "camera: {e}");
        std::process::exit(1);
    }
}
