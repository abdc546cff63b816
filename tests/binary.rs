//! The `fedamq` binary itself: runs with no configuration, reports a bad option naming
//! it, and on SIGTERM closes its connections with 320 and exits 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

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
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedamq"))
        .args(["--port", "0", "--management-port", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = BufReader::new(stdout).lines().next().unwrap().unwrap();
    let addr = line.rsplit(' ').next().unwrap().to_string();
    assert!(line.starts_with("fedamq listening on "), "{line}");

    let conn = Connection::connect(
        &format!("amqp://guest:guest@{addr}/%2f"),
        ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let mut events = Box::pin(conn.events_listener());
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

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
    let mut exited = None;
    for _ in 0..100 {
        if let Some(s) = child.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    match exited {
        Some(s) => assert!(s.success(), "exit status {s}"),
        None => {
            let _ = child.kill();
            panic!("fedamq did not exit after SIGTERM");
        }
    }
}

fn support_reply_code(err: &lapin::Error) -> Option<u16> {
    match err.kind() {
        lapin::ErrorKind::ProtocolError(e) => Some(e.get_id()),
        _ => None,
    }
}
