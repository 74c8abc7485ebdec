//! An SPSC queue between two unrelated processes.
//!
//! Terminal 1 (consumer; creates the queue if needed, prints what arrives, removes it at the
//! end):
//!
//! ```text
//! cargo run --example queue_pair -- consume demo-queue
//! ```
//!
//! Terminal 2 (producer; pushes 10 numbers, one every 200 ms, then closes its end):
//!
//! ```text
//! cargo run --example queue_pair -- produce demo-queue
//! ```
//!
//! Kill the producer with Ctrl-C (or `kill -9`) half-way: the consumer drains what was pushed
//! and then reports that the producer is gone, instead of waiting forever. (A producer that
//! exits without closing only detaches: the consumer would wait for the next one.)

use std::time::Duration;

use shmkit::queue::spsc::Queue;
use shmkit::queue::PopError;

/// Errors print their message (not the `Debug` form `main` returning `Err` would) and exit 1.
fn main() {
    if let Err(e) = run() {
        eprintln!("queue_pair: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (role, name) = match (args.get(1), args.get(2)) {
        (Some(r), Some(n)) => (r.as_str(), n.as_str()),
        _ => return Err("usage: queue_pair consume|produce NAME".into()),
    };
    let q = Queue::<u64>::open_or_create(name, 64)?;
    match role {
        "consume" => {
            q.set_unlink_on_drop(true);
            let mut rx = q.consumer()?;
            println!("waiting on {name:?} (60 s timeout)...");
            loop {
                match rx.pop_timeout(Duration::from_secs(60)) {
                    Ok(v) => println!("got {v}"),
                    Err(PopError::Disconnected) => {
                        println!("the producer closed the queue or died; done");
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        "produce" => {
            let mut tx = q.producer()?;
            for i in 0..10 {
                tx.push_timeout(i, Duration::from_secs(10))?;
                println!("pushed {i}");
                std::thread::sleep(Duration::from_millis(200));
            }
            // Dropping `tx` would only detach it (the consumer would keep waiting for another
            // producer); closing tells the consumer that the stream is over.
            tx.close();
        }
        other => return Err(format!("unknown role {other:?}").into()),
    }
    Ok(())
}
