//! The `fedamq` binary itself: runs with no configuration, reports a bad option naming
//! it, and on SIGTERM closes its connections with 320 and exits 0, also under load with
//! a client that does not read.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use fedamq::protocol::ShortString;
use fedamq::protocol::generated::methods::{BasicConsume, Method, QueueDeclare};
use lapin::{Connection, ConnectionProperties};
use support::raw::{self, MethodFrame};
use tokio::io::AsyncWriteExt;

/// Starts the binary on port 0; returns it and the address it listens on.
fn start_binary() -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedamq"))
        .args([
            "--port",
            "0",
            "--management-port",
            "0",
            "--prometheus-port",
            "0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = lines.next().unwrap().unwrap();
    assert!(line.starts_with("fedamq listening on "), "{line}");
    let addr = line.rsplit(' ').next().unwrap().to_string();
    // The log goes on to stdout: keep its pipe open.
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for the process to exit (killing it and failing after 10 s: a liveness bound,
/// not a measurement).
fn exited(child: &mut Child) -> ExitStatus {
    for _ in 0..1000 {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    panic!("fedamq did not exit after SIGTERM");
}

#[test]
fn an_invalid_option_stops_start_up_naming_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_fedamq"))
        .args(["--port", "0", "--frame-max", "100"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("frame-max"), "{err}");
}

#[test]
fn help_documents_the_options() {
    let out = Command::new(env!("CARGO_BIN_EXE_fedamq"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--config",
        "--bind",
        "--port",
        "--heartbeat",
        "--frame-max",
        "--memory-high-watermark",
    ] {
        assert!(text.contains(opt), "{opt} missing from --help");
    }
}

#[tokio::test]
async fn sigterm_closes_connections_with_320_and_exits_0() {
    let (mut child, addr) = start_binary();
    let conn = Connection::connect(
        &format!("amqp://guest:guest@{addr}/%2f"),
        ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let mut events = Box::pin(conn.events_listener());
    sigterm(&child);

    let err = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match futures_lite::StreamExt::next(&mut events).await {
                Some(lapin::Event::Error(e)) => return e,
                Some(_) => continue,
                None => panic!("events ended without an error"),
            }
        }
    })
    .await
    .expect("the client is told");
    assert_eq!(support_reply_code(&err), Some(320), "{err}");
    let status = exited(&mut child);
    assert!(status.success(), "exit status {status}");
}

/// Under load, publishers writing flat out and a consumer (no prefetch limit) that
/// does not read, SIGTERM still ends the process: the publishers are told with
/// connection.close 320, and the connection that cannot be told does not hold it up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_closes_connections_and_exits() {
    const PUBLISHERS: usize = 4;
    let (mut child, addr) = start_binary();
    let addr = addr.parse().unwrap();
    let queue = ShortString::from_static("load");

    let mut stuck = raw::Client::open_small_window(addr).await;
    stuck.open_channel(1).await;
    stuck
        .send(
            1,
            QueueDeclare {
                queue: queue.clone(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(stuck.expect_method().await.class_method(), (50, 11));
    stuck
        .send(
            1,
            BasicConsume {
                queue: queue.clone(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(stuck.expect_method().await.class_method(), (60, 21));

    let mut batch = BytesMut::new();
    for _ in 0..100 {
        raw::encode_publish(&mut batch, 1, "load", &[3u8; 1024]);
    }
    let batch = batch.freeze();
    let sent = Arc::new(AtomicU64::new(0));
    let mut told = Vec::new();
    for _ in 0..PUBLISHERS {
        let (mut reader, mut write) = raw::Client::with_channel(addr).await.split();
        let (batch, sent) = (batch.clone(), sent.clone());
        tokio::spawn(async move {
            while write.write_all(&batch).await.is_ok() {
                sent.fetch_add(1, Ordering::Relaxed);
            }
        });
        // What the publisher hears before its socket closes: connection.close, with
        // its reply code and text.
        told.push(tokio::spawn(async move {
            while let Some(MethodFrame(_, m)) = reader.next_method().await {
                if let Method::ConnectionClose(c) = m {
                    return Some((c.reply_code, c.reply_text.to_string()));
                }
            }
            None
        }));
    }
    // Loaded: every publisher has had many batches taken.
    while sent.load(Ordering::Relaxed) < 50 * PUBLISHERS as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let signalled = std::time::Instant::now();
    sigterm(&child);
    let status = tokio::task::block_in_place(|| exited(&mut child));
    eprintln!("exited {:?} after SIGTERM", signalled.elapsed());
    assert!(status.success(), "exit status {status}");
    for t in told {
        let (code, text) = t
            .await
            .unwrap()
            .expect("the publisher is told before the end");
        assert_eq!(code, 320, "{text}");
        assert!(text.contains("shutdown"), "{text}");
    }
    drop(stuck);
}

fn support_reply_code(err: &lapin::Error) -> Option<u16> {
    match err.kind() {
        lapin::ErrorKind::ProtocolError(e) => Some(e.get_id()),
        _ => None,
    }
}
