//! The web page at `/` in a real headless Chromium: it loads, logs in, lists a queue a
//! lapin client declared (its odd name shown as text, not markup), and its publish
//! rate moves while messages flow.
//!
//! Driven over WebDriver: Debian's `chromedriver` (spawned here on a free port) and the
//! `fantoccini` client. Lighter than the DevTools protocol: DevTools would need a
//! WebSocket client and hand-written protocol messages, while WebDriver is plain HTTP
//! with a small, well-kept client crate. Without Chromium the test says why and passes,
//! unless `FEDAMQ_TEST_CHROMIUM` is set (CI sets it, so CI cannot skip it).

mod support;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use futures_lite::FutureExt;
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde_json::{Value, json};
use support::broker;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Set (to anything) where the browser must be there: the test fails instead of
/// skipping.
const REQUIRE_VAR: &str = "FEDAMQ_TEST_CHROMIUM";

/// A liveness bound, far above what any step takes: it only stops a broken page from
/// hanging the test run.
const PATIENCE: Duration = Duration::from_secs(90);

/// A chromedriver this test started, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
    /// Chromium's profile directory, removed when the test ends.
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether Chromium and chromedriver are installed; if not, says so (and fails when
/// `FEDAMQ_TEST_CHROMIUM` asks for them).
fn browser_available(test: &str) -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{test}: {} not installed (apt-get install chromium chromium-driver)",
        missing.join(" and ")
    );
    assert!(
        std::env::var_os(REQUIRE_VAR).is_none(),
        "{why}; {REQUIRE_VAR} is set"
    );
    eprintln!("{why}: skipped");
    false
}

/// Starts chromedriver on a free port and waits until it answers.
async fn start_driver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        profile: tempfile::tempdir().expect("a profile directory"),
    };
    let status = format!("{}/status", driver.url);
    eventually("chromedriver answers /status", || async {
        reqwest::get(&status)
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    driver
}

/// A headless Chromium session through `driver`.
async fn open_browser(driver: &Driver) -> Client {
    let profile = driver.profile.path().display();
    let caps = json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                // Root in a container has no user namespaces for the sandbox.
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                format!("--user-data-dir={profile}"),
            ],
        }
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// Waits until `check` holds, polling; panics naming `what` after [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < PATIENCE, "{what}: not seen");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs a script in the page and returns its value.
async fn eval(browser: &Client, script: &str) -> Value {
    browser.execute(script, vec![]).await.expect("script runs")
}

async fn text_of(browser: &Client, css: &str) -> String {
    let script = format!(
        "const e = document.querySelector({}); return e ? e.textContent : null;",
        json!(css)
    );
    eval(browser, &script)
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn the_page_shows_queues_and_moving_rates_in_chromium() {
    if !browser_available("the_page_shows_queues_and_moving_rates_in_chromium") {
        return;
    }
    let b = broker::start().await;
    let page = format!("http://{}/", b.management_addr().expect("management is on"));
    let (_conn, ch) = broker::channel(&b).await;
    // A name that is markup if the page ever put it in as HTML.
    let queue = "page <b>queue</b> & co";
    ch.queue_declare(queue, QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();

    let driver = start_driver().await;
    let browser = open_browser(&driver).await;
    let outcome = AssertUnwindSafe(check_page(&browser, &page, &ch, queue))
        .catch_unwind()
        .await;
    // Closed even when a check failed: chromedriver stopped alone leaves Chromium
    // running.
    let _ = browser.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// What the test checks, in a browser already open.
async fn check_page(browser: &Client, page: &str, ch: &lapin::Channel, queue: &'static str) {
    browser.goto(page).await.expect("the page loads");
    assert_eq!(browser.title().await.unwrap(), "fedamq");

    // The login form, guest/guest prefilled; a wrong password is refused on the page
    // (no browser dialog), then guest logs in.
    let login = browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#login:not([hidden])"))
        .await
        .expect("the login form shows");
    let user = browser.find(Locator::Id("user")).await.unwrap();
    assert_eq!(user.prop("value").await.unwrap().as_deref(), Some("guest"));
    let password = browser.find(Locator::Id("password")).await.unwrap();
    password.clear().await.unwrap();
    password.send_keys("wrong").await.unwrap();
    let submit = login
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap();
    submit.click().await.unwrap();
    eventually("'Login failed' for a wrong password", || async {
        text_of(browser, "#login-error").await == "Login failed"
    })
    .await;
    password.clear().await.unwrap();
    password.send_keys("guest").await.unwrap();
    submit.click().await.unwrap();
    eventually("the overview, logged in as guest", || async {
        text_of(browser, "#who").await == "guest"
            && eval(browser, "return document.getElementById('main').hidden")
                .await
                .as_bool()
                == Some(false)
    })
    .await;

    // The queue is listed, its name as text.
    eventually("the declared queue in the queue list", || async {
        let cells = eval(
            browser,
            "return [...document.querySelectorAll('#queues tbody td')].map(td => td.textContent)",
        )
        .await;
        cells.as_array().is_some_and(|c| c.contains(&json!(queue)))
    })
    .await;
    let markup = eval(
        browser,
        "return document.querySelectorAll('#queues b').length",
    )
    .await;
    assert_eq!(markup, json!(0), "a queue name was put in as HTML");

    // A steady stream of messages until the publish rate shown is above zero. Rates
    // are sampled when asked, over at least 5 s, and the page asks every 5 s: this
    // takes one or two polls.
    let stop = tokio::sync::watch::channel(false);
    let publisher = {
        let ch = ch.clone();
        let mut stop = stop.1.clone();
        tokio::spawn(async move {
            while !*stop.borrow() {
                ch.basic_publish(
                    "",
                    queue,
                    BasicPublishOptions::default(),
                    b"tick",
                    BasicProperties::default(),
                )
                .await
                .expect("publish");
                let _ = tokio::time::timeout(Duration::from_millis(20), stop.changed()).await;
            }
        })
    };
    let rate = browser.find(Locator::Id("publish-rate")).await.unwrap();
    eventually("a publish rate above zero on the page", || async {
        let shown = rate.attr("data-rate").await.unwrap().unwrap_or_default();
        shown.parse::<f64>().is_ok_and(|r| r > 0.0)
    })
    .await;
    stop.0.send(true).unwrap();
    publisher.await.unwrap();

    // The chart has drawn the samples the rate came from.
    let points = eval(
        browser,
        "return Number(document.getElementById('chart').dataset.points)",
    )
    .await;
    assert!(
        points.as_f64().is_some_and(|n| n >= 2.0),
        "chart points: {points}"
    );
    // Federation links: a table either way (empty, or "not available" before the
    // endpoint exists).
    let links = text_of(browser, "#federation-links tbody").await;
    assert!(!links.is_empty(), "the federation links section is empty");
}

/// The page's files need no login (they hold no data; the API still does), and come
/// with their content types. Runs without Chromium.
#[tokio::test]
async fn the_page_files_are_served_without_credentials() {
    let b = broker::start().await;
    let api = support::management::Http::of(&b).as_user(None);
    for (path, content_type, needle) in [
        ("/", "text/html; charset=utf-8", "<script src=\"/page.js\""),
        (
            "/page.js",
            "text/javascript; charset=utf-8",
            "/api/overview",
        ),
        ("/page.css", "text/css; charset=utf-8", "#chart"),
    ] {
        let r = api.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.headers["content-type"], content_type, "{path}");
        let body = r.body.as_str().unwrap_or_default();
        assert!(body.contains(needle), "{path} lacks {needle}");
    }
    assert_eq!(api.get("/api/overview").await.status, 401);
}

/// The tunnels section lists a tunnel this broker opened, with its state and counters.
#[tokio::test]
async fn the_page_lists_tunnels_in_chromium() {
    use fedamq::auth::password::PasswordHash;
    use fedamq::peering::Remote;
    use fedamq::protocol::generated::services::{GREETING, Greeting};
    use fedamq::tunnel::greeting::{Forward, hello};
    use fedamq::tunnel::{PEERING_TAG, TunnelConfig, Tunnels};

    if !browser_available("the_page_lists_tunnels_in_chromium") {
        return;
    }
    let a = broker::start().await;
    let b = broker::start().await;
    let users = b.broker().users();
    users
        .add_user("link", PasswordHash::new("link"), vec![PEERING_TAG.into()])
        .unwrap();
    users
        .set_permissions("link", "/", ".*", ".*", ".*")
        .unwrap();
    let remote = Remote::from_uri(&b.url("link", "link")).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let t = Tunnels::of(a.broker())
        .open(TunnelConfig::new(remote), &GREETING, |_| {
            Box::new(Greeting(Forward(tx)))
        })
        .unwrap();
    t.send(hello(1, "page")).await.unwrap();
    rx.recv().await.expect("a hello-ok");
    let page = format!("http://{}/", a.management_addr().expect("management is on"));

    let driver = start_driver().await;
    let browser = open_browser(&driver).await;
    let check = async {
        browser.goto(&page).await.expect("the page loads");
        // Logged in as guest (what the login form stores), then reloaded.
        eval(
            &browser,
            "sessionStorage.setItem('fedamq.auth', btoa('guest:guest')); location.reload(); return 0",
        )
        .await;
        eventually("the tunnel in the tunnels section", || async {
            let cells = eval(
                &browser,
                "return [...document.querySelectorAll('#tunnels tbody td')].map(td => td.textContent)",
            )
            .await;
            cells.as_array().is_some_and(|c| {
                c.len() == 9
                    && c[0] == "outgoing"
                    && c[1] == "greeting"
                    && c[3] == "open"
                    && c[5] == "1"
                    && c[6] == "1"
            })
        })
        .await;
    };
    let outcome = AssertUnwindSafe(check).catch_unwind().await;
    let _ = browser.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    t.close().await;
}
