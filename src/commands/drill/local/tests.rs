//! Real servers, started and stopped as a drill does it: each accepts its password and
//! only its password, and leaves no process, port or directory behind.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use rustix::process::Pid;

use super::*;
use crate::source::{child, mysql, postgres};

/// The children of process `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let list = fs::read_to_string(task.path().join("children")).unwrap();
        out.extend(list.split_whitespace().map(|n| n.parse::<u32>().unwrap()));
    }
    out
}

/// Whether process `pid` is still there (a zombie left to an init that does not reap
/// is gone for every purpose here).
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // `pid (comm) state …`; comm may hold anything but not the last ')'.
        !stat[stat.rfind(')').unwrap() + 1..]
            .trim_start()
            .starts_with('Z')
    })
}

/// Whether any process has `secret` on its command line.
fn on_a_command_line(secret: &str) -> bool {
    fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        fs::read(entry.path().join("cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(secret))
    })
}

/// The effective uid of process `pid`.
fn uid_of(pid: u32) -> u32 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ids = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
    ids.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// What every started server must be: private, unprivileged, password off command lines.
fn check_started(server: &LocalServer) {
    let meta = fs::metadata(server.dir()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    assert!(port_open(server.port));
    assert!(server.pid() > 0);
    if running_as_root() {
        assert_eq!(
            meta.uid(),
            UNPRIVILEGED,
            "the dir belongs to the server's user"
        );
        assert_eq!(
            uid_of(server.pid()),
            UNPRIVILEGED,
            "the server runs as nobody"
        );
    }
    assert!(!on_a_command_line(&server.password));
    let description = server.description();
    assert!(
        description.starts_with(&format!("local {} ", server.kind))
            && description.ends_with(&format!(" on 127.0.0.1:{}", server.port)),
        "{description}"
    );
    assert!(
        server
            .version
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit()),
        "{}",
        server.version
    );
}

/// What a server started; checked by [`Traces::check_gone`] when it is stopped.
struct Traces {
    pid: u32,
    children: Vec<u32>,
    port: u16,
    dir: PathBuf,
}

impl Traces {
    fn of(server: &LocalServer) -> Traces {
        Traces {
            pid: server.pid(),
            children: children(server.pid()),
            port: server.port,
            dir: server.dir().to_path_buf(),
        }
    }

    /// What a stopped server leaves: nothing. Children of a killed server may take a
    /// moment to notice.
    fn check_gone(&self) {
        assert!(
            !Path::new(&format!("/proc/{}", self.pid)).exists(),
            "pid {} left",
            self.pid
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.children.iter().any(|&c| alive(c)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left: Vec<&u32> = self.children.iter().filter(|&&c| alive(c)).collect();
        assert!(left.is_empty(), "children left: {left:?}");
        assert!(!port_open(self.port), "port {} still open", self.port);
        assert!(!self.dir.exists(), "{} left", self.dir.display());
    }
}

/// `endpoint` with another password (None: none at all).
fn with_password(endpoint: &Endpoint, other: Option<&str>) -> Endpoint {
    let mut e = endpoint.clone();
    match &mut e {
        Endpoint::Postgres { password, .. }
        | Endpoint::Mysql { password, .. }
        | Endpoint::Redis { password, .. } => *password = other.map(str::to_string),
        _ => unreachable!(),
    }
    e
}

#[test]
fn postgres_takes_its_password_only_and_leaves_nothing_behind() {
    let server = LocalServer::start(LocalKind::Postgres, None, None).unwrap();
    check_started(&server);
    let app = server.endpoint(Some("app"));
    assert_eq!(
        app.url(),
        format!("postgresql://postgres@127.0.0.1:{}/app", server.port)
    );

    // The restore target reaches the server with the password: it creates the
    // database, then sees it empty.
    let target = app.postgres_target().unwrap();
    assert!(postgres::restore::relations(&target).unwrap().is_none());
    postgres::restore::create(&target, None).unwrap();
    assert_eq!(postgres::restore::relations(&target).unwrap(), Some(0));
    let who = child::run(&app.client().unwrap(), "SELECT current_user").unwrap();
    assert_eq!(who, "postgres");

    let wrong = child::run(
        &with_password(&app, Some("wrong")).client().unwrap(),
        "SELECT 1",
    );
    let err = format!("{:#}", wrong.unwrap_err());
    assert!(err.contains("password authentication failed"), "{err}");
    if std::env::var_os("PGPASSWORD").is_none() && std::env::var_os("PGPASSFILE").is_none() {
        let none = child::run(&with_password(&app, None).client().unwrap(), "SELECT 1");
        assert!(none.is_err(), "logged in without a password");
    }

    let traces = Traces::of(&server);
    assert!(traces.children.len() > 1, "the postmaster has helpers");
    server.stop().unwrap();
    traces.check_gone();
}

#[test]
fn a_killed_postmaster_leaves_no_backend_behind() {
    let server = LocalServer::start(LocalKind::Postgres, None, None).unwrap();
    let traces = Traces::of(&server);
    assert!(traces.children.len() > 1, "the postmaster has helpers");
    let postmaster = Pid::from_raw(server.pid() as i32).unwrap();
    rustix::process::kill_process(postmaster, Signal::KILL).unwrap();
    drop(server);
    traces.check_gone();
}

#[test]
fn mariadb_takes_its_password_only_and_leaves_nothing_behind() {
    let server = LocalServer::start(LocalKind::Mariadb, None, None).unwrap();
    check_started(&server);
    let endpoint = server.endpoint(None);
    assert_eq!(
        endpoint.url(),
        format!("mysql://root@127.0.0.1:{}", server.port)
    );

    let target = server.endpoint(Some("app")).mysql_target().unwrap();
    let app = ["app".to_string()];
    assert!(mysql::restore::objects(&target, &app).unwrap().is_none());
    mysql::restore::create(&target, "app", None).unwrap();
    assert_eq!(mysql::restore::objects(&target, &app).unwrap(), Some(0));
    let who = child::run(&endpoint.client().unwrap(), "SELECT CURRENT_USER()").unwrap();
    assert_eq!(who, "root@127.0.0.1");

    for other in [Some("wrong"), None] {
        let refused = child::run(
            &with_password(&endpoint, other).client().unwrap(),
            "SELECT 1",
        );
        let err = format!("{:#}", refused.unwrap_err());
        assert!(err.contains("Access denied"), "{other:?}: {err}");
    }

    let traces = Traces::of(&server);
    drop(server);
    traces.check_gone();
}

#[test]
fn redis_loads_its_dump_takes_its_password_only_and_leaves_nothing_behind() {
    let first = LocalServer::start(LocalKind::Redis, None, None).unwrap();
    check_started(&first);
    let cli = |server: &LocalServer, args: &[&str]| {
        child::run(
            &server
                .endpoint(None)
                .client()
                .unwrap()
                .args(args.iter().copied()),
            "",
        )
        .unwrap()
    };
    cli(&first, &["SET", "greeting", "hello"]);
    cli(&first, &["RPUSH", "queue", "a", "b"]);
    cli(&first, &["SAVE"]);
    let rdb = first.dir().join("data/dump.rdb");

    let server = LocalServer::start(LocalKind::Redis, None, Some(&rdb)).unwrap();
    check_started(&server);
    assert_eq!(cli(&server, &["DBSIZE"]), "2");
    assert_eq!(cli(&server, &["GET", "greeting"]), "hello");
    assert!(rdb.exists(), "the dump given is copied, not taken");

    let endpoint = server.endpoint(None);
    for other in [Some("wrong"), None] {
        let cli = with_password(&endpoint, other).client().unwrap();
        let refused = child::run(&cli.arg("DBSIZE"), "");
        let err = format!("{:#}", refused.unwrap_err());
        assert!(
            err.contains("NOAUTH") || err.contains("WRONGPASS"),
            "{other:?}: {err}"
        );
    }

    for s in [first, server] {
        let traces = Traces::of(&s);
        s.stop().unwrap();
        traces.check_gone();
    }
}

#[test]
fn a_missing_server_binary_is_named() {
    let empty = tempfile::tempdir().unwrap();
    for (kind, binary) in [
        (LocalKind::Postgres, "initdb"),
        (LocalKind::Mariadb, "mariadbd"),
        (LocalKind::Redis, "redis-server"),
    ] {
        let err = LocalServer::start(kind, Some(empty.path()), None).unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains(&format!("`{binary}`")), "{kind}: {err}");
        assert!(err.contains(&empty.path().display().to_string()), "{err}");
    }
    let err = LocalServer::start(LocalKind::Postgres, None, Some(empty.path())).unwrap_err();
    assert!(err.to_string().contains("Redis"), "{err}");
}

#[test]
fn a_server_that_fails_is_named_with_its_log() {
    // Reachable for nobody when the tests run as root.
    let bin = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
    fs::set_permissions(bin.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let fake = bin.path().join("redis-server");
    fs::write(&fake, "#!/bin/sh\necho \"FATAL: cannot read $1\"\nexit 3\n").unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let err = LocalServer::start(LocalKind::Redis, Some(bin.path()), None).unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains(&format!("`{}` exited during start-up", fake.display())),
        "{err}"
    );
    assert!(
        err.contains("FATAL: cannot read /") && err.contains("redis.conf"),
        "{err}"
    );
}
