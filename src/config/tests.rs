//! The loader as a whole: defaults, then the file, then the flags.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use super::memory::{fraction_of, parse_meminfo};
use super::settings::default_permission;
use super::values::{GIB, KIB, MIB};
use super::*;
use clap::{CommandFactory, Parser};

fn file(text: &str) -> Result<Config, ConfigError> {
    let mut c = Config::default();
    apply_file(&mut c, Path::new("fedamq.toml"), text)?;
    Ok(c)
}

fn file_err(text: &str) -> String {
    file(text).unwrap_err().to_string()
}

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("fedamq").chain(args.iter().copied())).unwrap()
}

#[test]
fn defaults_are_rabbitmqs() {
    let c = Config::default();
    assert_eq!(c.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(
        (c.port, c.heartbeat, c.frame_max, c.channel_max),
        (5672, 60, 131_072, 2047)
    );
    assert_eq!(c.max_message_size, 134_217_728);
    assert_eq!(c.handshake_timeout, Duration::from_secs(10));
    assert!(c.memory_high_watermark > 0);
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.vhosts, ["/"]);
    assert_eq!(c.users.len(), 1);
    assert_eq!(c.users[0].name, "guest");
    assert!(c.users[0].password_hash.verify("guest"));
    assert_eq!(c.users[0].tags, ["administrator"]);
    assert_eq!(c.permissions, [default_permission()]);
    assert_eq!(c.log, "info");
}

#[test]
fn no_file_no_flags_is_the_default() {
    let c = load(&Cli::default()).unwrap();
    let d = Config::default();
    // Hashes are salted afresh, so compare everything else.
    assert_eq!(
        Config {
            users: vec![],
            ..c.clone()
        },
        Config { users: vec![], ..d }
    );
    assert!(c.users[0].password_hash.verify("guest"));
}

#[test]
fn memory_watermark_default_is_40_percent() {
    match total_memory() {
        Some(t) => assert_eq!(Config::default().memory_high_watermark, fraction_of(t, 0.4)),
        None => assert_eq!(Config::default().memory_high_watermark, GIB),
    }
    assert_eq!(
        parse_meminfo("MemTotal:       16318712 kB\nMemFree: 1 kB\n"),
        Some(16_318_712 * 1024)
    );
    assert_eq!(parse_meminfo("nothing"), None);
}

#[test]
fn file_overrides_defaults() {
    let c = file(
        r#"
        bind = "::"
        port = 0
        heartbeat = 0
        frame_max = 4096
        channel_max = 0
        max_message_size = "64MiB"
        handshake_timeout = 2.5
        memory_high_watermark = "2GiB"
        log = "fedamq=debug,warn"
        vhosts = ["/", "staging"]

        [limits]
        max_connections = 100
        max_queues = "unlimited"
        max_exchanges = 50

        [[user]]
        name = "admin"
        password = "change-me"
        tags = ["administrator", "monitoring"]

        [[user]]
        name = "app"
        password_hash = "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"

        [[permission]]
        user = "app"
        vhost = "staging"
        configure = "^app\\."
        write = "^(app\\.|amq\\.default$)"
        read = ".*"
        "#,
    )
    .unwrap();
    assert_eq!(c.bind, "::".parse::<IpAddr>().unwrap());
    assert_eq!(
        (c.port, c.heartbeat, c.frame_max, c.channel_max),
        (0, 0, 4096, 0)
    );
    assert_eq!(c.max_message_size, 64 * MIB);
    assert_eq!(c.handshake_timeout, Duration::from_millis(2500));
    assert_eq!(c.memory_high_watermark, 2 * GIB);
    assert_eq!(c.log, "fedamq=debug,warn");
    assert_eq!(c.vhosts, ["/", "staging"]);
    assert_eq!(
        c.limits,
        Limits {
            max_connections: 100,
            max_queues: usize::MAX,
            max_exchanges: 50
        }
    );
    assert_eq!(c.users.len(), 2);
    assert!(c.users[0].password_hash.verify("change-me"));
    assert_eq!(c.users[0].tags, ["administrator", "monitoring"]);
    assert!(c.users[1].password_hash.verify("test12"));
    assert!(c.users[1].tags.is_empty());
    // [[user]] replaced guest and its permission.
    assert_eq!(c.permissions.len(), 1);
    assert_eq!(c.permissions[0].configure, "^app\\.");
}

#[test]
fn untouched_settings_keep_defaults() {
    let c = file("port = 5673").unwrap();
    assert_eq!(c.port, 5673);
    assert_eq!(c.frame_max, 131_072);
    assert_eq!(c.users[0].name, "guest");
    assert_eq!(c.permissions, [default_permission()]);
}

#[test]
fn guest_permissions_follow_the_file() {
    // Permissions without users: guest stays, the file's entries replace its default.
    let c = file(
        "vhosts = [\"a\"]\n[[permission]]\nuser = \"guest\"\nvhost = \"a\"\nconfigure = \"\"\nwrite = \".*\"\nread = \".*\"",
    )
    .unwrap();
    assert_eq!(c.permissions.len(), 1);
    assert_eq!(c.permissions[0].vhost, "a");
    // No "/" and no permissions: guest has none rather than one on a missing vhost.
    let c = file("vhosts = [\"a\"]").unwrap();
    assert!(c.permissions.is_empty());
}

#[test]
fn memory_watermark_forms() {
    assert_eq!(
        file("memory_high_watermark = 0")
            .unwrap()
            .memory_high_watermark,
        0
    );
    assert_eq!(
        file("memory_high_watermark = 1000")
            .unwrap()
            .memory_high_watermark,
        1000
    );
    assert_eq!(parse_memory_limit("0"), Ok(MemoryLimit::Bytes(0)));
    assert_eq!(parse_memory_limit("0.4"), Ok(MemoryLimit::Fraction(0.4)));
    assert_eq!(parse_memory_limit("40%"), Ok(MemoryLimit::Fraction(0.4)));
    assert_eq!(
        parse_memory_limit("2GB"),
        Ok(MemoryLimit::Bytes(2_000_000_000))
    );
    assert!(parse_memory_limit("150%").is_err());
    assert!(parse_memory_limit("1.5").is_err());
    let half = file("memory_high_watermark = 0.5")
        .unwrap()
        .memory_high_watermark;
    assert_eq!(half, total_memory().map_or(GIB, |t| fraction_of(t, 0.5)));
}

#[test]
fn sizes_and_durations() {
    assert_eq!(parse_size("1024"), Ok(1024));
    assert_eq!(parse_size("64MiB"), Ok(64 * MIB));
    assert_eq!(parse_size("64 mib"), Ok(64 * MIB));
    assert_eq!(parse_size("512k"), Ok(512 * KIB));
    assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
    assert!(parse_size("1.5GiB").is_err());
    assert!(parse_size("12XB").unwrap_err().contains("XB"));
    assert!(
        parse_size("99999999999999TiB")
            .unwrap_err()
            .contains("too large")
    );
    assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
    assert!(parse_duration("-1").is_err());
    assert!(parse_duration("NaN").is_err());
    assert_eq!(parse_limit("infinity"), Ok(usize::MAX));
    assert_eq!(parse_limit("7"), Ok(7));
    assert!(parse_limit("-7").is_err());
}

#[test]
fn cli_overrides_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fedamq.toml");
    std::fs::write(
        &path,
        "port = 5673\nheartbeat = 30\nframe_max = 8192\n[limits]\nmax_queues = 10\n",
    )
    .unwrap();
    let path_str = path.to_str().unwrap();
    let c = load(&cli(&[
        "--config",
        path_str,
        "--port",
        "5674",
        "--max-message-size",
        "1MiB",
        "--memory-high-watermark",
        "0",
        "--handshake-timeout",
        "250ms",
        "--max-queues",
        "unlimited",
        "--max-connections",
        "3",
        "--bind",
        "0.0.0.0",
        "--log",
        "debug",
    ]))
    .unwrap();
    assert_eq!(c.port, 5674); // flag beats file
    assert_eq!(c.heartbeat, 30); // file beats default
    assert_eq!(c.frame_max, 8192);
    assert_eq!(c.channel_max, 2047); // default
    assert_eq!(c.max_message_size, MIB);
    assert_eq!(c.memory_high_watermark, 0);
    assert_eq!(c.handshake_timeout, Duration::from_millis(250));
    assert_eq!(c.limits.max_queues, usize::MAX);
    assert_eq!(c.limits.max_connections, 3);
    assert_eq!(c.bind, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(c.log, "debug");
}

#[test]
fn missing_file_names_the_path() {
    let e = load(&cli(&["--config", "/nonexistent/fedamq.toml"])).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(
        e.to_string().starts_with("/nonexistent/fedamq.toml: "),
        "{e}"
    );
}

#[test]
fn unknown_keys_are_named() {
    let e = file_err("port = 5672\nprot = 1\n");
    assert!(
        e.starts_with("fedamq.toml:2:1: unknown field `prot`"),
        "{e}"
    );
    let e = file_err("[limits]\nmax_conections = 1\n");
    assert!(e.contains("unknown field `max_conections`"), "{e}");
    let e = file_err("[[user]]\nname = \"a\"\npassword = \"b\"\npasswd = \"c\"\n");
    assert!(e.contains("unknown field `passwd`"), "{e}");
    let e = file_err(
        "[[permission]]\nuser = \"guest\"\nvhost = \"/\"\nconfigure = \"\"\nwrite = \"\"\nread = \"\"\nexchange = \"\"",
    );
    assert!(e.contains("unknown field `exchange`"), "{e}");
}

#[test]
fn syntax_errors_have_a_position() {
    let e = file("port = = 1").unwrap_err();
    assert!(matches!(e, ConfigError::Parse { line: 1, .. }), "{e}");
    let e = file("limits = 5").unwrap_err().to_string();
    assert!(
        e.starts_with("fedamq.toml:1:") && e.ends_with("expected a [limits] table"),
        "{e}"
    );
}

#[test]
fn invalid_values_name_the_key() {
    for (text, expected) in [
        (
            "frame_max = 100",
            "fedamq.toml: frame_max: must be at least 4096, got 100",
        ),
        (
            "port = \"abc\"",
            "fedamq.toml: port: expected an integer, got \"abc\"",
        ),
        (
            "port = 70000",
            "fedamq.toml: port: must be between 0 and 65535, got 70000",
        ),
        (
            "heartbeat = -1",
            "fedamq.toml: heartbeat: must be between 0 and 65535, got -1",
        ),
        (
            "max_message_size = \"1GiB\"",
            "fedamq.toml: max_message_size: must be at most 512MiB, got 1GiB",
        ),
        (
            "max_message_size = 0",
            "fedamq.toml: max_message_size: must be at least 1 byte",
        ),
        (
            "handshake_timeout = 0",
            "fedamq.toml: handshake_timeout: must be more than 0",
        ),
        (
            "bind = \"localhost\"",
            "fedamq.toml: bind: expected an IP address",
        ),
        (
            "memory_high_watermark = 2.0",
            "fedamq.toml: memory_high_watermark: a fraction of RAM must be between 0 and 1",
        ),
        (
            "log = \"foo=bar=baz\"",
            "fedamq.toml: log: invalid log filter",
        ),
        (
            "vhosts = \"/\"",
            "fedamq.toml: vhosts: expected an array of strings",
        ),
        (
            "vhosts = [\"/\", \"/\"]",
            "fedamq.toml: vhosts[1]: vhost \"/\" is listed twice",
        ),
        (
            "[limits]\nmax_queues = -1",
            "fedamq.toml: limits.max_queues: must not be negative",
        ),
        (
            "[[user]]\nname = \"a\"",
            "fedamq.toml: user[0].password: missing",
        ),
        (
            "[[user]]\nname = \"a\"\npassword = \"\"",
            "fedamq.toml: user[0].password: must not be empty",
        ),
        (
            "[[user]]\nname = \"a\"\npassword = \"x\"\npassword_hash = \"\"",
            "fedamq.toml: user[0].password: give either",
        ),
        (
            "[[user]]\nname = \"a\"\npassword_hash = \"ab!c\"",
            "fedamq.toml: user[0].password_hash: not valid base64",
        ),
        (
            "[[user]]\npassword = \"x\"",
            "fedamq.toml: user[0].name: missing",
        ),
        (
            "[[user]]\nname = \"a\"\npassword = \"x\"\ntags = \"admin\"",
            "fedamq.toml: user[0].tags: expected an array",
        ),
        (
            "[[user]]\nname = \"a\"\npassword = \"x\"\n[[user]]\nname = \"a\"\npassword = \"y\"",
            "fedamq.toml: user[1].name: user \"a\" is defined twice",
        ),
    ] {
        let e = file_err(text);
        assert!(
            e.starts_with(expected),
            "{text:?}: got {e:?}, want {expected:?}"
        );
    }
    let e = file("frame_max = 100").unwrap_err();
    assert_eq!(e.key(), Some("frame_max"));
}

#[test]
fn invalid_flags_name_the_flag() {
    let e = load(&cli(&["--frame-max", "100"])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "command line: --frame-max: must be at least 4096, got 100"
    );
    let e = load(&cli(&["--max-message-size", "1GiB"])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "command line: --max-message-size: must be at most 512MiB, got 1GiB"
    );
    let e = load(&cli(&["--handshake-timeout", "0"])).unwrap_err();
    assert_eq!(e.key(), Some("--handshake-timeout"));
    // Malformed values are refused by clap itself, naming the flag.
    let e = Cli::try_parse_from(["fedamq", "--max-message-size", "12XB"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("--max-message-size") && e.contains("XB"), "{e}");
    let e = Cli::try_parse_from(["fedamq", "--port", "http"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("--port"), "{e}");
}

#[test]
fn permissions_must_reference_known_users_and_vhosts() {
    let perm = |user: &str, vhost: &str| {
        format!(
            "[[permission]]\nuser = \"{user}\"\nvhost = \"{vhost}\"\nconfigure = \".*\"\nwrite = \".*\"\nread = \".*\"\n"
        )
    };
    let e = file_err(&perm("nobody", "/"));
    assert_eq!(
        e,
        "fedamq.toml: permission[0].user: no user named \"nobody\""
    );
    let e = file_err(&perm("guest", "nowhere"));
    assert_eq!(
        e,
        "fedamq.toml: permission[0].vhost: no vhost named \"nowhere\" in vhosts"
    );
    // guest is gone once [[user]] is given.
    let e = file_err(&format!(
        "[[user]]\nname = \"a\"\npassword = \"x\"\n{}",
        perm("guest", "/")
    ));
    assert!(e.contains("no user named \"guest\""), "{e}");
    let e = file_err(&format!("{}{}", perm("guest", "/"), perm("guest", "/")));
    assert!(
        e.starts_with("fedamq.toml: permission[1].vhost: user \"guest\" already has permissions"),
        "{e}"
    );
}

#[test]
fn permission_patterns_must_compile() {
    let e = file_err(
        "[[permission]]\nuser = \"guest\"\nvhost = \"/\"\nconfigure = \"(\"\nwrite = \"\"\nread = \"\"",
    );
    assert!(
        e.starts_with("fedamq.toml: permission[0].configure: invalid regular expression \"(\""),
        "{e}"
    );
    let e =
        file_err("[[permission]]\nuser = \"guest\"\nvhost = \"/\"\nconfigure = \"\"\nwrite = \"\"");
    assert_eq!(e, "fedamq.toml: permission[0].read: missing");
}

#[test]
fn loaded_users_feed_auth() {
    let c = file(
        "[[user]]\nname = \"app\"\npassword = \"pw\"\n[[permission]]\nuser = \"app\"\nvhost = \"/\"\nconfigure = \"\"\nwrite = \"^amq\\\\.default$\"\nread = \".*\"",
    )
    .unwrap();
    let users = c.user_table();
    assert_eq!(users.authenticate(b"PLAIN", b"\0app\0pw"), Ok("app".into()));
    assert!(users.authenticate(b"PLAIN", b"\0guest\0guest").is_err());
    assert!(users.check("app", "/", crate::auth::Permission::Write, b""));
    assert!(!users.check("app", "/", crate::auth::Permission::Configure, b"q"));
}

#[test]
fn help_documents_every_option() {
    let mut cmd = Cli::command();
    cmd.build();
    cmd.clone().debug_assert();
    let help = cmd.render_long_help().to_string();
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        assert!(
            arg.get_help().is_some_and(|h| !h.to_string().is_empty()),
            "--{id} has no help"
        );
        let long = arg.get_long().unwrap();
        assert!(
            help.contains(&format!("--{long}")),
            "--{long} missing from --help"
        );
    }
    for flag in [
        "--config",
        "--bind",
        "--port",
        "--heartbeat",
        "--frame-max",
        "--channel-max",
        "--max-message-size",
        "--handshake-timeout",
        "--memory-high-watermark",
        "--max-connections",
        "--max-queues",
        "--max-exchanges",
        "--log",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn module_doc_example_is_valid() {
    // The example at the top of this file, kept in step with the parser.
    let doc = include_str!("mod.rs");
    let example: String = doc
        .lines()
        .skip_while(|l| !l.starts_with("//! ```toml"))
        .skip(1)
        .take_while(|l| !l.starts_with("//! ```"))
        .map(|l| format!("{}\n", l.strip_prefix("//! ").unwrap_or("")))
        .collect();
    assert!(example.contains("[[permission]]"));
    let c = file(&example).unwrap();
    assert_eq!(c.users.len(), 2);
    assert_eq!(c.limits.max_connections, 10_000);
}

#[test]
fn load_definitions_from_the_file_or_a_flag() {
    assert_eq!(Config::default().load_definitions, None);
    let c = file("load_definitions = \"/etc/fedamq/definitions.json\"").unwrap();
    assert_eq!(
        c.load_definitions.as_deref(),
        Some(Path::new("/etc/fedamq/definitions.json"))
    );
    assert_eq!(
        file_err("load_definitions = \"\""),
        "fedamq.toml: load_definitions: must not be empty"
    );
    assert!(file_err("load_definitions = 3").starts_with("fedamq.toml: load_definitions:"));
    let c = load(&cli(&["--load-definitions", "defs.json"])).unwrap();
    assert_eq!(c.load_definitions.as_deref(), Some(Path::new("defs.json")));
}

#[test]
fn management_listener_default_file_and_flags() {
    let d = Config::default();
    assert_eq!(d.management.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(d.management.port, Some(15672));

    let c = file("[management]\nbind = \"0.0.0.0\"\nport = 0\n").unwrap();
    assert_eq!(c.management.bind, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(c.management.port, Some(0));
    assert_eq!(
        file("[management]\nport = \"off\"\n")
            .unwrap()
            .management
            .port,
        None
    );
    let e = file_err("[management]\nport = 70000\n");
    assert!(e.contains("management.port"), "{e}");
    let e = file_err("[management]\nport = true\n");
    assert!(
        e.contains("management.port") && e.contains("\"off\""),
        "{e}"
    );
    let e = file_err("[management]\nprot = 1\n");
    assert!(e.contains("unknown field"), "{e}");

    let mut c = Config::default();
    apply_cli(
        &mut c,
        &cli(&["--management-port", "off", "--management-bind", "::1"]),
    )
    .unwrap();
    assert_eq!(c.management.port, None);
    assert_eq!(c.management.bind, "::1".parse::<IpAddr>().unwrap());
    apply_cli(&mut c, &cli(&["--management-port", "15673"])).unwrap();
    assert_eq!(c.management.port, Some(15673));
    assert!(
        Cli::try_parse_from(["fedamq", "--management-port", "maybe"]).is_err(),
        "a port that is neither a number nor off is refused"
    );
}

#[test]
fn prometheus_listener_default_file_and_flags() {
    let d = Config::default();
    assert_eq!(d.prometheus.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(d.prometheus.port, Some(15692));

    let c = file("[prometheus]\nbind = \"0.0.0.0\"\nport = 0\n").unwrap();
    assert_eq!(c.prometheus.bind, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(c.prometheus.port, Some(0));
    assert_eq!(c.management.port, Some(15672), "the API keeps its own port");
    assert_eq!(
        file("[prometheus]\nport = \"off\"\n")
            .unwrap()
            .prometheus
            .port,
        None
    );
    let e = file_err("[prometheus]\nport = -1\n");
    assert!(e.contains("prometheus.port"), "{e}");
    let e = file_err("[prometheus]\npath = \"/m\"\n");
    assert!(e.contains("unknown field"), "{e}");

    let mut c = Config::default();
    apply_cli(
        &mut c,
        &cli(&["--prometheus-port", "off", "--prometheus-bind", "::1"]),
    )
    .unwrap();
    assert_eq!(c.prometheus.port, None);
    assert_eq!(c.prometheus.bind, "::1".parse::<IpAddr>().unwrap());
    apply_cli(&mut c, &cli(&["--prometheus-port", "15693"])).unwrap();
    assert_eq!(c.prometheus.port, Some(15693));
}

#[test]
fn tls_settings_for_amqps_and_for_the_management_api() {
    use crate::transport::tls::{TlsVersion, Verify};
    let c = file(
        "ssl_port = 5671\n\
         [ssl_options]\ncertfile = \"a.pem\"\nkeyfile = \"a.key\"\n\
         [management.ssl]\nport = 0\ncertfile = \"m.pem\"\nkeyfile = \"m.key\"\n\
         cacertfile = \"ca.pem\"\nverify = \"verify_peer\"\nfail_if_no_peer_cert = true\n\
         versions = [\"tlsv1.3\"]\n",
    )
    .unwrap();
    assert_eq!(c.ssl_options.certfile, Some("a.pem".into()));
    assert!(c.management_ssl.enabled());
    assert_eq!(c.management_ssl.port, 0);
    let m = &c.management_ssl.options;
    assert_eq!(m.certfile, Some("m.pem".into()));
    assert_eq!(m.keyfile, Some("m.key".into()));
    assert_eq!(m.cacertfile, Some("ca.pem".into()));
    assert_eq!(m.verify, Verify::VerifyPeer);
    assert!(m.fail_if_no_peer_cert);
    assert_eq!(m.versions, vec![TlsVersion::Tls13]);
    assert!(super::check_tls(&c).is_ok());
    // Off unless a certificate is given; RabbitMQ's port by default.
    assert!(!Config::default().management_ssl.enabled());
    assert_eq!(Config::default().management_ssl.port, 15671);

    // Errors name the section.
    let e = file_err("[management.ssl]\nverify = \"peer\"\n");
    assert!(e.contains("management.ssl.verify"), "{e}");
    let e = file_err("[management.ssl]\nciphers = [\"RC4-MD5\"]\n");
    assert!(e.contains("management.ssl.ciphers"), "{e}");
    let e = file_err("[ssl_options]\nport = 5671\n");
    assert!(
        e.contains("ssl_options.port") && e.contains("ssl_port"),
        "{e}"
    );
    let half = file("[management.ssl]\ncertfile = \"m.pem\"\n").unwrap();
    let e = super::check_tls(&half).unwrap_err().to_string();
    assert!(e.contains("management.ssl.keyfile"), "{e}");
    let no_ca = file(
        "[management.ssl]\ncertfile = \"m.pem\"\nkeyfile = \"m.key\"\nverify = \"verify_peer\"\n",
    )
    .unwrap();
    let e = super::check_tls(&no_ca).unwrap_err().to_string();
    assert!(e.contains("management.ssl.cacertfile"), "{e}");
}

#[test]
fn ha_section() {
    use crate::config::{HaRole, apply_file};
    let path = std::path::Path::new("/etc/fedamq/fedamq.toml");
    let mut c = Config::default();
    apply_file(
        &mut c,
        path,
        "[ha]\nrole = \"backup\"\npeer = \"amqp://peer:pw@10.0.0.1:5672\"\ntimeout = \"500ms\"\n",
    )
    .unwrap();
    let ha = c.ha.unwrap();
    assert_eq!(ha.role, HaRole::Backup);
    assert_eq!(ha.timeout, std::time::Duration::from_millis(500));
    assert_eq!(ha.epoch_file, std::path::Path::new("/etc/fedamq/ha-epoch"));
    assert_eq!((ha.name.as_str(), ha.arbiter.is_none()), ("default", true));
    let mut c = Config::default();
    apply_file(
        &mut c,
        path,
        "[ha]\nrole = \"primary\"\npeer = \"amqp://h\"\nname = \"orders\"\n\
         [ha.arbiter]\nendpoints = [\"127.0.0.1:2379\"]\nttl = 4\n",
    )
    .unwrap();
    let ha = c.ha.unwrap();
    let arbiter = ha.arbiter.unwrap();
    assert_eq!(arbiter.key_for(&ha.name), "/fedamq/ha/orders/active");
    assert_eq!(arbiter.ttl, std::time::Duration::from_secs(4));
    for (text, key) in [
        ("[ha]\npeer = \"amqp://h\"\n", "ha.role"),
        ("[ha]\nrole = \"main\"\npeer = \"amqp://h\"\n", "ha.role"),
        ("[ha]\nrole = \"primary\"\npeer = \"http://h\"\n", "ha.peer"),
        (
            "[ha]\nrole = \"primary\"\npeer = \"amqp://h\"\ntimeout = 100\n",
            "ha.timeout",
        ),
        (
            "[ha]\nrole = \"primary\"\npeer = \"amqp://h\"\n[ha.arbiter]\nttl = 3\n",
            "ha.arbiter.endpoints",
        ),
        (
            "[ha]\nrole = \"primary\"\npeer = \"amqp://h\"\narbiter = 3\n",
            "ha.arbiter",
        ),
        (
            "[ha]\nrole = \"primary\"\npeer = \"amqp://h\"\nname = \"\"\n",
            "ha.name",
        ),
    ] {
        let err = apply_file(&mut Config::default(), path, text).unwrap_err();
        assert!(err.to_string().contains(key), "{text}: {err}");
    }
}
