//! deploy/container/Dockerfile, checked without a container runtime: checkov passes on
//! it with no failed check; its packages are the ones ./scripts/test installs for the
//! engine tests (plus the PostgreSQL clients of the other supported majors); every
//! `bin_dir` it documents belongs to one of its packages, with the layout the installed
//! Debian packages show; the HEALTHCHECK script answers for `vault run` only.

mod tools;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn read(rel: &str) -> String {
    std::fs::read_to_string(tools::crate_root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The PostgreSQL majors vault supports, each with a client in the image.
const PG_MAJORS: [u32; 5] = [13, 14, 15, 16, 17];

/// Packages of the Dockerfile's block `# vault-packages: NAME` … `# vault-packages: end`:
/// the names after each `apt-get install` (options and continuation marks left out).
fn dockerfile_packages(dockerfile: &str, block: &str) -> BTreeSet<String> {
    let start = format!("# vault-packages: {block}");
    let body = dockerfile
        .split_once(&start)
        .unwrap_or_else(|| panic!("the Dockerfile has no `{start}` block"))
        .1
        .split_once("# vault-packages: end")
        .expect("the block ends with `# vault-packages: end`")
        .0;
    let mut packages = BTreeSet::new();
    for command in body.split("&&") {
        let Some((_, rest)) = command.split_once("apt-get install") else {
            continue;
        };
        for word in rest.split_whitespace() {
            if !word.starts_with('-') && word != "\\" {
                packages.insert(word.to_string());
            }
        }
    }
    assert!(!packages.is_empty(), "no packages in block {block}");
    packages
}

/// The Debian packages ./scripts/test installs: the values of its `packages` table.
fn script_packages() -> BTreeSet<String> {
    let script = read("scripts/test");
    let table = script
        .split_once("declare -A packages=(")
        .expect("scripts/test declares its packages table")
        .1
        .split_once(')')
        .unwrap()
        .0;
    table
        .split_whitespace()
        .filter_map(|entry| entry.split_once("]=").map(|(_, p)| p.to_string()))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn checkov_passes_on_the_dockerfile_with_no_failed_check() {
    let report = tools::checkov(
        &[tools::crate_root().join("deploy/container/Dockerfile")],
        "dockerfile",
    );
    assert_eq!(report.parsing_errors, 0, "{}", report.output);
    assert!(
        report.failed.is_empty(),
        "checkov failed checks on the Dockerfile: {:#?}",
        report.failed
    );
    // A skip would need a justification beside it; there is none to justify.
    assert!(report.skipped.is_empty(), "skipped: {:?}", report.skipped);
    assert!(report.passed > 50, "checkov passed only {}", report.passed);
}

/// The image's packages against ./scripts/test's: every engine package the tests
/// install is in the image (the PostgreSQL server only in the drill target, where the
/// scratch servers are), every image package is one the tests install or one of the few
/// named here with their reason, and every package of the tests is either an engine's or
/// a tool vault never runs.
#[test]
fn the_image_installs_the_packages_the_engine_tests_install() {
    let dockerfile = read("deploy/container/Dockerfile");
    let runtime = dockerfile_packages(&dockerfile, "runtime");
    let drill = dockerfile_packages(&dockerfile, "drill");
    let tests = script_packages();

    // What the tests install besides the engines: interoperability and test tools that
    // vault never runs (stock age/zstd/b3sum read vault's objects; git clones for the
    // quick-start test; GNU time measures).
    let test_tools = set(&["age", "zstd", "b3sum", "git", "time"]);
    // The engines: servers the tests start, and the clients vault drives.
    let engine_clients = set(&["mariadb-client", "redis-tools", "sqlite3"]);
    let engine_servers = set(&["mariadb-server", "redis-server"]);
    let mut expected_tests: BTreeSet<String> = test_tools.clone();
    expected_tests.extend(engine_clients.iter().cloned());
    expected_tests.extend(engine_servers.iter().cloned());
    // Debian's `postgresql`: its current major's server and client (15 on bookworm).
    expected_tests.insert("postgresql".into());
    assert_eq!(
        tests, expected_tests,
        "scripts/test installs other packages than this test knows: decide whether the \
         image needs each new one and add it here"
    );

    // Runtime: the engine clients the tests use, the PostgreSQL clients of every
    // supported major, and what adds the PostgreSQL repository and trusts TLS peers.
    let mut expected_runtime = engine_clients.clone();
    for major in PG_MAJORS {
        expected_runtime.insert(format!("postgresql-client-{major}"));
    }
    // ca-certificates: S3, STS and pings over TLS; postgresql-common: the PGDG key and
    // the script that adds the repository.
    expected_runtime.extend(set(&["ca-certificates", "postgresql-common"]));
    assert_eq!(runtime, expected_runtime, "the runtime stage's packages");

    // Drill: the servers the engine tests start (MariaDB, Redis) and a PostgreSQL server
    // of the newest major, which restores every older major's dump.
    let newest = PG_MAJORS[PG_MAJORS.len() - 1];
    let mut expected_drill = engine_servers.clone();
    expected_drill.insert(format!("postgresql-{newest}"));
    assert_eq!(drill, expected_drill, "the drill stage's packages");
}

/// Every `bin_dir` the Dockerfile documents is /usr/lib/postgresql/N/bin of a package it
/// installs, and that layout is what the PostgreSQL packages on this machine (Debian's,
/// installed by ./scripts/test; PGDG builds the same packages for every major) put
/// there: pg_dump, pg_dumpall, psql and pg_restore from the client, initdb and postgres
/// from the server.
#[test]
fn every_documented_bin_dir_is_provided_by_the_image_packages() {
    let dockerfile = read("deploy/container/Dockerfile");
    let runtime = dockerfile_packages(&dockerfile, "runtime");
    let drill = dockerfile_packages(&dockerfile, "drill");
    let documented: Vec<(bool, u32)> = dockerfile
        .lines()
        .filter_map(|line| {
            let line = line.trim_start_matches('#').trim();
            let is_drill = line.starts_with("[drill] bin_dir");
            let rest = line.split_once("bin_dir = \"/usr/lib/postgresql/")?.1;
            let major = rest.split_once("/bin\"")?.0.parse().ok()?;
            Some((is_drill, major))
        })
        .collect();
    let clients: BTreeSet<u32> = documented
        .iter()
        .filter(|(d, _)| !d)
        .map(|(_, m)| *m)
        .collect();
    assert_eq!(
        clients,
        PG_MAJORS.into_iter().collect(),
        "the Dockerfile documents a bin_dir for every supported major"
    );
    for (is_drill, major) in &documented {
        let (stage, package) = if *is_drill {
            (&drill, format!("postgresql-{major}"))
        } else {
            (&runtime, format!("postgresql-client-{major}"))
        };
        assert!(
            stage.contains(&package),
            "bin_dir /usr/lib/postgresql/{major}/bin is documented, but {package} is not installed"
        );
    }
    assert!(
        documented.iter().any(|(d, _)| *d),
        "the drill's bin_dir is documented"
    );

    // The layout, read from the packages installed here.
    let files = |package: &str| {
        let out = Command::new("dpkg").args(["-L", package]).output().unwrap();
        assert!(
            out.status.success(),
            "dpkg -L {package}: ./scripts/test installs it"
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let major = Path::new("/usr/lib/postgresql")
        .read_dir()
        .expect("PostgreSQL is installed (./scripts/test)")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .unwrap();
    let client = files(&format!("postgresql-client-{major}"));
    for tool in ["pg_dump", "pg_dumpall", "psql", "pg_restore"] {
        let path = format!("/usr/lib/postgresql/{major}/bin/{tool}");
        assert!(
            client.lines().any(|l| l == path),
            "postgresql-client-{major} has no {path}"
        );
    }
    let server = files(&format!("postgresql-{major}"));
    for tool in ["initdb", "postgres"] {
        let path = format!("/usr/lib/postgresql/{major}/bin/{tool}");
        assert!(
            server.lines().any(|l| l == path),
            "postgresql-{major} has no {path}"
        );
    }
}

/// The HEALTHCHECK script passes for any command but `vault run`, and for `vault run`
/// only when /healthz answers 200.
#[test]
fn the_healthcheck_asks_healthz_only_of_vault_run() {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    let script = tools::crate_root().join("deploy/container/healthcheck");
    // A /healthz that answers `status` to every request, on a free port.
    let serve = |status: &'static str| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                // The whole request first: closing with unread bytes would reset the
                // connection under the answer.
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nok");
                let _ = stream.shutdown(std::net::Shutdown::Write);
            }
        });
        port
    };
    // A stand-in main process whose arguments are `vault ... run` (or not).
    let main_process = |args: &[&str]| {
        Command::new("bash")
            .args(["-c", "sleep 60; true", "vault"])
            .args(args)
            .spawn()
            .unwrap()
    };
    let check = |pid: u32, port: u16| {
        Command::new("bash")
            .arg(&script)
            .env("VAULT_HEALTH_PID", pid.to_string())
            .env("VAULT_HEALTH_PORT", port.to_string())
            .output()
            .unwrap()
    };
    let healthy = serve("200 OK");
    let unhealthy = serve("503 Service Unavailable");
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let mut backup = main_process(&["--config", "/etc/vault/vault.toml", "backup"]);
    let mut run = main_process(&["--config", "/etc/vault/vault.toml", "run"]);
    assert!(
        check(backup.id(), closed).status.success(),
        "not vault run: nothing to check"
    );
    assert!(
        check(run.id(), healthy).status.success(),
        "vault run, /healthz 200"
    );
    let out = check(run.id(), unhealthy);
    assert!(!out.status.success(), "vault run, /healthz 503");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("503"), "{said}");
    assert!(
        !check(run.id(), closed).status.success(),
        "vault run, nothing listening"
    );
    for child in [&mut backup, &mut run] {
        let _ = child.kill();
        let _ = child.wait();
    }
}
