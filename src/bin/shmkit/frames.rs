//! `shmkit frames`: create, inspect and save from frame channels (`SPEC.md`, frames section).
//! `stat` and `save` map the channel read-only and change nothing; `info` shows what `stat`
//! shows ([`state`]).

use std::io::Write;

use crate::{create_error, outln, print_json, segment_name, CmdResult, Stop};
use shmkit::frames::{self, FramesOptions, FramesStat, Policy};
use shmkit::segment::{Kind, Lifetime};

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Create a frame channel (no user header; no publisher stays attached).
    Create {
        /// Segment name.
        #[arg(value_parser = segment_name)]
        name: String,
        /// Slots (1..=1024).
        #[arg(long)]
        slots: u64,
        /// Largest frame in bytes.
        #[arg(long)]
        max_bytes: u64,
        /// Subscribers admitted at once (1..=256).
        #[arg(long, default_value_t = 16)]
        subscribers: u64,
        /// What a publisher does when every slot is held: `reuse-oldest` or `block`.
        #[arg(long, default_value = "reuse-oldest", value_parser = policy)]
        policy: Policy,
        /// Permission bits, octal.
        #[arg(long, default_value = "600", value_parser = crate::mode)]
        mode: u32,
        /// `persistent` or `owned` (as `shmkit queue create`).
        #[arg(long, default_value = "persistent", value_parser = crate::lifetime)]
        lifetime: Lifetime,
        /// Do not reserve the slots' memory now (as `shmkit create --sparse`): a process that
        /// touches a slot when `/dev/shm` is full then gets SIGBUS.
        #[arg(long)]
        sparse: bool,
    },
    /// Slots (held by whom), subscribers (pids, liveness), publish rate, last sequence.
    Stat {
        /// Segment name.
        #[arg(value_parser = segment_name)]
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the newest frame's bytes to FILE and print its metadata; with FILE `-`, write the
    /// bytes to standard output and the metadata to standard error.
    Save {
        /// Segment name.
        #[arg(value_parser = segment_name)]
        name: String,
        /// Output file; `-` is standard output (as `write` and `list create` read `-` from
        /// standard input; `./-` names a file called `-`).
        file: std::path::PathBuf,
    },
}

fn policy(s: &str) -> Result<Policy, String> {
    Policy::from_name(s).ok_or_else(|| format!("{s:?} is neither reuse-oldest nor block"))
}

/// The channel's state for `shmkit info` (kind `frames`).
pub(crate) fn state(name: &str) -> Result<serde_json::Value, String> {
    let st = frames::stat(name).map_err(|e| format!("frames stat {name}: {e}"))?;
    serde_json::to_value(st).map_err(|e| e.to_string())
}

pub(crate) fn run(args: Args) -> CmdResult {
    match args.cmd {
        Cmd::Create {
            name,
            slots,
            max_bytes,
            subscribers,
            policy,
            mode,
            lifetime,
            sparse,
        } => {
            let p = FramesOptions::<[u8; 0]>::new()
                .slots(slots)
                .max_bytes(max_bytes)
                .subscribers(subscribers)
                .policy(policy)
                .mode(mode)
                .lifetime(lifetime)
                .sparse(sparse)
                .create(&name)
                .map_err(|e| match e {
                    frames::AttachError::Segment(e) => create_error(e),
                    e => Stop::Failed(e.to_string()),
                })
                .map_err(|s| match s {
                    Stop::Failed(m) => Stop::Failed(format!("frames create {name}: {m}")),
                    s => s,
                })?;
            drop(p);
            // Silent, as every `create`.
            Ok(())
        }
        Cmd::Stat { name, json } => {
            crate::refuse_other_kind(&name, &[Kind::FRAMES], "a frames channel", true)?;
            let st = frames::stat(&name).map_err(|e| format!("frames stat {name}: {e}"))?;
            if json {
                return print_json(&st);
            }
            print_stat(&name, &st)
        }
        Cmd::Save { name, file } => {
            crate::refuse_other_kind(&name, &[Kind::FRAMES], "a frames channel", true)?;
            let c = frames::copy_latest(&name)
                .map_err(|e| format!("frames save {name}: {e}"))?
                .ok_or_else(|| format!("frames save {name}: no frame has been published"))?;
            let to_stdout = file.as_os_str() == "-";
            if to_stdout {
                crate::write_stdout(&c.data)?;
            } else {
                std::fs::File::create(&file)
                    .and_then(|mut f| f.write_all(&c.data))
                    .map_err(|e| format!("frames save {name} to {}: {e}", file.display()))?;
            }
            let hex: String = c.header.iter().map(|b| format!("{b:02x}")).collect();
            let line = format!(
                "saved frame {} ({} bytes) to {}; published at {} (realtime {} ns, monotonic \
                 {} ns); header {}",
                c.seq,
                c.data.len(),
                if to_stdout {
                    "standard output".into()
                } else {
                    file.display().to_string()
                },
                crate::utc(c.real_ns),
                c.real_ns,
                c.mono_ns,
                if hex.is_empty() { "(none)" } else { &hex }
            );
            if to_stdout {
                // Standard output holds the frame: the metadata goes to stderr (as the error
                // line in `main`, a write that fails there is not an error of the save).
                let _ = writeln!(std::io::stderr(), "{line}");
                Ok(())
            } else {
                outln!("{line}")
            }
        }
    }
}

fn print_stat(name: &str, st: &FramesStat) -> CmdResult {
    outln!("name:         {name}")?;
    print_state(st)
}

/// `frames stat`'s lines after the name: what `shmkit info` shows of a channel's state too.
pub(crate) fn print_state(st: &FramesStat) -> CmdResult {
    outln!(
        "slots:        {} of {} bytes, policy {}",
        st.slots,
        st.max_bytes,
        st.policy
    )?;
    // Recorded in shared memory by the creator: any text, quoted if it is not plain.
    outln!(
        "header type:  {} ({} bytes)",
        crate::shown_name(&st.header_type),
        st.header_size
    )?;
    match &st.publisher {
        Some(p) => outln!("publisher:    pid {} ({})", p.pid, p.liveness)?,
        None => outln!("publisher:    none")?,
    }
    outln!("last seq:     {}", st.last_seq)?;
    match st.publish_rate_hz {
        Some(r) => outln!("publish rate: {r:.1} frames/s")?,
        None => outln!("publish rate: unknown (fewer than two frames in the slots)")?,
    }
    for s in &st.slot_states {
        let held = if s.held_by.is_empty() {
            String::new()
        } else {
            format!(", held by pid {:?}", s.held_by)
        };
        outln!(
            "slot {:<4}     {} seq {} len {}{held}",
            s.slot,
            s.state,
            s.seq,
            s.len
        )?;
    }
    outln!(
        "subscribers:  {} of {}",
        st.subscribers.len(),
        st.max_subscribers
    )?;
    for s in &st.subscribers {
        outln!(
            "  pid {} ({}): last seq {}, received {}, lost {}, holding {:?}",
            s.process.pid,
            s.process.liveness,
            s.last_seq,
            s.received,
            s.lost,
            s.holding
        )?;
    }
    Ok(())
}
