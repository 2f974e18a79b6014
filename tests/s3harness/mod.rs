//! A local S3 with Object Lock and enforced IAM (moto, patched by tests/moto/server.py)
//! for the tests: one server per test, users made from the policies in deploy/iam, an
//! admin client for checks the identities must not be able to make.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

use crate::common::World;

/// An access key pair made by the test server.
#[derive(Debug, Clone)]
pub struct Keys {
    pub id: String,
    pub secret: String,
}

pub fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> Command {
    let mut cmd = Command::new("python3");
    cmd.current_dir(crate_root());
    cmd
}

/// One running test server, stopped on drop (and by itself when the test process
/// dies: it exits when its standard input closes).
pub struct Moto {
    child: Child,
    pub endpoint: String,
    pub region: String,
    pub admin: Keys,
    pub rt: tokio::runtime::Runtime,
}

impl Moto {
    pub fn start() -> Moto {
        Moto::start_without(&[])
    }

    /// A server with the named patches of tests/moto/server.py left off (stock moto
    /// behaviour there), e.g. `retention-change-rules`: a backend that lets COMPLIANCE
    /// retention be shortened.
    pub fn start_without(patches: &[&str]) -> Moto {
        let mut child = python()
            .arg("tests/moto/server.py")
            .args(patches.iter().flat_map(|p| ["--without", p]))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect(
                "cannot run python3 tests/moto/server.py: ./scripts/test installs python3 and \
                 moto[server]==5.2.5",
            );
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(90)) {
            Ok(line) if !line.trim().is_empty() => line,
            other => {
                let _ = child.kill();
                panic!(
                    "the S3 test server did not start (got {other:?}); is moto[server]==5.2.5 \
                     installed? ./scripts/test installs it"
                );
            }
        };
        let v: serde_json::Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("test server said {line:?}: {e}"));
        let keys = |v: &serde_json::Value| Keys {
            id: v["access_key_id"].as_str().unwrap().to_string(),
            secret: v["secret_access_key"].as_str().unwrap().to_string(),
        };
        let endpoint = v["endpoint"].as_str().unwrap().to_string();
        assert!(
            endpoint.starts_with("http://127.0.0.1:"),
            "loopback only: {endpoint}"
        );
        Moto {
            child,
            endpoint,
            region: v["region"].as_str().unwrap_or("us-east-1").to_string(),
            admin: keys(&v["admin"]),
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    /// Runs tests/moto/admin.py as the admin; returns its stdout.
    pub fn admin_py(&self, args: &[&str]) -> String {
        self.admin_py_with_input(args, "")
    }

    /// Like [`Moto::admin_py`], with `input` on admin.py's standard input.
    pub fn admin_py_with_input(&self, args: &[&str], input: &str) -> String {
        use std::io::Write;
        let mut child = python()
            .arg("tests/moto/admin.py")
            .args(["--endpoint", &self.endpoint])
            .args(["--access-key-id", &self.admin.id])
            .args(["--secret-access-key", &self.admin.secret])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // admin.py reads standard input only for `--policy-json -`; a closed pipe is fine.
        let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "admin.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A plain bucket: no Object Lock, versioning never enabled.
    pub fn create_unversioned_bucket(&self, name: &str) {
        self.admin_py(&["create-bucket", name, "--no-object-lock"]);
    }

    /// A bucket with Object Lock (and so versioning), with an optional default retention.
    pub fn create_bucket(&self, name: &str, default: Option<(&str, u32)>) {
        let mut args = vec!["create-bucket", name];
        let days;
        if let Some((mode, d)) = default {
            days = d.to_string();
            args.extend(["--default-mode", mode, "--default-days", &days]);
        }
        self.admin_py(&args);
    }

    /// An IAM user whose only policies are the named files of deploy/iam, read from
    /// the files with `${VAULT_BUCKET}` set to `bucket`.
    pub fn create_user(&self, name: &str, policies: &[&str], bucket: &str) -> Keys {
        let files: Vec<PathBuf> = policies.iter().map(|p| deploy_policy(p)).collect();
        let v = self.create_principal("create-user", name, &files, bucket);
        Keys {
            id: v["access_key_id"].as_str().unwrap().to_string(),
            secret: v["secret_access_key"].as_str().unwrap().to_string(),
        }
    }

    /// An IAM user with the given policy files (not necessarily from deploy/iam).
    pub fn create_user_from(&self, name: &str, files: &[PathBuf], bucket: &str) -> Keys {
        let v = self.create_principal("create-user", name, files, bucket);
        Keys {
            id: v["access_key_id"].as_str().unwrap().to_string(),
            secret: v["secret_access_key"].as_str().unwrap().to_string(),
        }
    }

    /// An IAM user whose only policy is `policy_json`, a policy document given as text
    /// (with the bucket already written in: a `${VAR}` left in it is an error).
    pub fn create_user_with_policy_json(&self, name: &str, policy_json: &str) -> Keys {
        let out =
            self.admin_py_with_input(&["create-user", name, "--policy-json", "-"], policy_json);
        keys_of(&serde_json::from_str(out.trim()).unwrap())
    }

    /// An IAM role (assumable by anyone in the account) whose only policy is
    /// `policy_json`, given as text with the bucket already written in; its ARN.
    pub fn create_role_with_policy_json(&self, name: &str, policy_json: &str) -> String {
        let out =
            self.admin_py_with_input(&["create-role", name, "--policy-json", "-"], policy_json);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        v["arn"].as_str().unwrap().to_string()
    }

    /// Another access key of the existing user `name` (a user may hold two).
    pub fn create_access_key(&self, name: &str) -> Keys {
        let out = self.admin_py(&["create-access-key", name]);
        keys_of(&serde_json::from_str(out.trim()).unwrap())
    }

    /// Ends the lock of one object version (test hook of server.py: its retain-until
    /// date becomes one second ago, the mode stays), so that the admin can delete it.
    /// Panics unless the server answers 204.
    pub fn expire_lock(&self, bucket: &str, key: &str, version_id: &str) {
        let status = self.test_hook(&format!(
            "expire-lock?bucket={}&key={}&versionId={}",
            query_escape(bucket),
            query_escape(key),
            query_escape(version_id)
        ));
        assert_eq!(
            status, 204,
            "expire-lock of {bucket}/{key} version {version_id}: HTTP {status}"
        );
    }

    /// The requests each access key made since the last reset, by S3 operation (test
    /// hook of server.py), and starts the counts again from zero.
    pub fn take_requests(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let (status, body) = self.test_hook_answer("requests?reset=1");
        assert_eq!(status, 200, "requests test hook: HTTP {status}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("requests test hook: {e}: {body}"))
    }

    /// POSTs to one of server.py's test hooks (`/_vault_test/<path>`); the HTTP status.
    fn test_hook(&self, path_and_query: &str) -> u16 {
        self.test_hook_answer(path_and_query).0
    }

    /// POSTs to one of server.py's test hooks; the HTTP status and the body.
    fn test_hook_answer(&self, path_and_query: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let host = self.endpoint.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(host).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "POST /_vault_test/{path_and_query} HTTP/1.1\r\nHost: {host}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("test hook {path_and_query}: no HTTP status in {answer:?}"));
        let body = answer
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
            .to_string();
        (status, body)
    }

    /// An IAM role whose only policies are the named files of deploy/iam; its ARN.
    pub fn create_role(&self, name: &str, policies: &[&str], bucket: &str) -> String {
        let files: Vec<PathBuf> = policies.iter().map(|p| deploy_policy(p)).collect();
        let v = self.create_principal("create-role", name, &files, bucket);
        v["arn"].as_str().unwrap().to_string()
    }

    fn create_principal(
        &self,
        command: &str,
        name: &str,
        files: &[PathBuf],
        bucket: &str,
    ) -> serde_json::Value {
        let mut args = vec![command.to_string(), name.to_string()];
        for file in files {
            args.push("--policy".into());
            args.push(file.to_string_lossy().into_owned());
        }
        args.push("--var".into());
        args.push(format!("VAULT_BUCKET={bucket}"));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        serde_json::from_str(self.admin_py(&refs).trim()).unwrap()
    }

    /// An S3 client signing with `keys`, path-style, against the test server.
    pub fn client(&self, keys: &Keys) -> Client {
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .http_client(vault::https::aws_http_client())
            .region(Region::new(self.region.clone()))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new(&keys.id, &keys.secret, None, None, "test"))
            .build();
        Client::from_conf(conf)
    }

    pub fn admin_client(&self) -> Client {
        self.client(&self.admin)
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

fn keys_of(v: &serde_json::Value) -> Keys {
    Keys {
        id: v["access_key_id"].as_str().unwrap().to_string(),
        secret: v["secret_access_key"].as_str().unwrap().to_string(),
    }
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved characters stay).
fn query_escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The three identities of one vault, each a user with its deploy/iam policy.
pub struct Identities {
    pub writer: Keys,
    pub verifier: Keys,
    pub restorer: Keys,
}

/// Lock modes the tests run vault in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockSetup {
    /// vault sends lock headers; writer.json.
    PerObject,
    /// the bucket's default retention (COMPLIANCE, `days`); writer-bucket-default.json.
    BucketDefault { days: u32 },
}

/// A bucket, its three users and a vault.toml pointing at it.
pub struct S3World {
    pub world: World,
    pub moto: Moto,
    pub bucket: String,
    pub ids: Identities,
    pub setup: LockSetup,
}

pub const PREFIX: &str = "backups";

impl S3World {
    pub fn new(setup: LockSetup) -> S3World {
        S3World::with_moto(setup, Moto::start())
    }

    /// Like [`S3World::new`] on a server started by the caller (e.g. with
    /// [`Moto::start_without`]).
    pub fn with_moto(setup: LockSetup, moto: Moto) -> S3World {
        let default = match setup {
            LockSetup::PerObject => None,
            LockSetup::BucketDefault { days } => Some(("COMPLIANCE", days)),
        };
        S3World::on_bucket(setup, moto, |moto, bucket| {
            moto.create_bucket(bucket, default)
        })
    }

    /// Like [`S3World::new`], for a vault configured as `setup`, on a bucket without
    /// Object Lock and without versioning: a bucket vault must refuse.
    pub fn unversioned(setup: LockSetup) -> S3World {
        S3World::on_bucket(setup, Moto::start(), Moto::create_unversioned_bucket)
    }

    /// The bucket made by `create`, its users with the policies for `setup`.
    fn on_bucket(setup: LockSetup, moto: Moto, create: impl FnOnce(&Moto, &str)) -> S3World {
        let world = World::new();
        let bucket = "vault-test".to_string();
        let writer_policy = match setup {
            LockSetup::PerObject => "writer",
            LockSetup::BucketDefault { .. } => "writer-bucket-default",
        };
        create(&moto, &bucket);
        let ids = Identities {
            writer: moto.create_user("vault-writer", &[writer_policy], &bucket),
            verifier: moto.create_user("vault-verifier", &["verifier"], &bucket),
            restorer: moto.create_user("vault-restorer", &["restorer"], &bucket),
        };
        S3World {
            world,
            moto,
            bucket,
            ids,
            setup,
        }
    }

    /// Writes vault.toml for this bucket with `jobs` (TOML) and `retention` lines (in
    /// bucket-default mode the lock lines are added here); each identity's keys come
    /// from `VAULT_TEST_<ROLE>_KEY`/`_SECRET`.
    pub fn config(&self, retention: &str, jobs: &str) {
        let identities = identities_toml(&["writer", "verifier", "restorer"]);
        self.config_with(retention, &identities, jobs);
    }

    /// Like [`S3World::config`] with the `[identities.*]` sections given. Unless `jobs`
    /// has a `[verify]` section of its own, the verifier's cache is kept in the world's
    /// directory (`verify-cache/`), not in the default state directory of the host.
    pub fn config_with(&self, retention: &str, identities: &str, jobs: &str) {
        let retention = match self.setup {
            LockSetup::PerObject => retention.to_string(),
            LockSetup::BucketDefault { days } => {
                format!("lock = \"bucket-default\"\nbucket_default = \"{days}d\"\n{retention}")
            }
        };
        let cache = if jobs.contains("[verify]") {
            ""
        } else {
            "[verify]\ncache_dir = \"verify-cache\"\n"
        };
        self.world.config_raw(&format!(
            "[vault]\ntarget = \"s3://{}/{PREFIX}\"\nendpoint = \"{}\"\nregion = \"{}\"\n\
             part_size = \"8MiB\"\nupload_concurrency = 3\n\
             [encryption]\nrecipients = [\"{}\"]\n[retention]\n{retention}\n{identities}\n{jobs}\n\
             {cache}",
            self.bucket, self.moto.endpoint, self.moto.region, self.world.recipient,
        ));
    }

    /// A vault command with the three identities' keys in its environment and nothing
    /// of the caller's AWS setup.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.world.command(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        // Empty AWS config files rather than missing ones, which the SDK warns about on
        // stderr (the tests read stderr for vault's own lines).
        let empty = self.world.path("aws-empty-config");
        std::fs::write(&empty, "").unwrap();
        cmd.env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", &empty)
            .env("AWS_SHARED_CREDENTIALS_FILE", &empty);
        for (role, keys) in [
            ("WRITER", &self.ids.writer),
            ("VERIFIER", &self.ids.verifier),
            ("RESTORER", &self.ids.restorer),
        ] {
            cmd.env(format!("VAULT_TEST_{role}_KEY"), &keys.id)
                .env(format!("VAULT_TEST_{role}_SECRET"), &keys.secret);
        }
        cmd
    }

    pub fn vault(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        crate::common::succeeded(args, self.vault(args))
    }

    /// The multipart uploads under way in the bucket, and how many parts they have
    /// stored (admin view).
    pub fn multipart_uploads(&self) -> (usize, usize) {
        let client = self.moto.admin_client();
        self.moto.block_on(async {
            let listed = client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .send()
                .await
                .unwrap();
            let mut parts = 0;
            for u in listed.uploads() {
                let stored = client
                    .list_parts()
                    .bucket(&self.bucket)
                    .key(u.key().unwrap())
                    .upload_id(u.upload_id().unwrap())
                    .send()
                    .await
                    .unwrap();
                parts += stored.parts().len();
            }
            (listed.uploads().len(), parts)
        })
    }

    /// Writes `body` at `key` as the admin (a new version on an existing key).
    pub fn admin_put(&self, key: &str, body: Vec<u8>) {
        let client = self.moto.admin_client();
        self.moto.block_on(async {
            client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(aws_sdk_s3::primitives::ByteStream::from(body))
                .send()
                .await
                .unwrap();
        });
    }

    /// Deletes `key` as the admin: that version, or without one a delete marker.
    pub fn admin_delete(&self, key: &str, version: Option<&str>) {
        let client = self.moto.admin_client();
        self.moto.block_on(async {
            client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .set_version_id(version.map(str::to_string))
                .send()
                .await
                .unwrap();
        });
    }

    /// Every key in the bucket (admin view), sorted.
    pub fn keys(&self) -> Vec<String> {
        let client = self.moto.admin_client();
        self.moto.block_on(async {
            let out = client
                .list_objects_v2()
                .bucket(&self.bucket)
                .send()
                .await
                .unwrap();
            let mut keys: Vec<String> = out
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string))
                .collect();
            keys.sort();
            keys
        })
    }

    /// The manifests of `job`, parsed, oldest first (admin view).
    pub fn manifests(&self, job: &str) -> Vec<serde_json::Value> {
        let prefix = format!("{PREFIX}/{job}/manifests/");
        let client = self.moto.admin_client();
        self.keys()
            .into_iter()
            .filter(|k| k.starts_with(&prefix))
            .map(|k| {
                self.moto.block_on(async {
                    let out = client
                        .get_object()
                        .bucket(&self.bucket)
                        .key(&k)
                        .send()
                        .await
                        .unwrap();
                    let bytes = out.body.collect().await.unwrap().into_bytes();
                    serde_json::from_slice(&bytes).unwrap()
                })
            })
            .collect()
    }

    pub fn full_key(&self, key: &str) -> String {
        format!("{PREFIX}/{key}")
    }
}

/// deploy/iam/NAME.json, which must exist.
pub fn deploy_policy(name: &str) -> PathBuf {
    let file = crate_root().join("deploy/iam").join(format!("{name}.json"));
    assert!(file.exists(), "{} is missing", file.display());
    file
}

/// `[identities.<role>]` for each of `roles`, keys from `VAULT_TEST_<ROLE>_KEY` and
/// `_SECRET`; the last section (the restorer's, by convention) gets the age key.
pub fn identities_toml(roles: &[&str]) -> String {
    let mut out = String::new();
    for role in roles {
        let upper = role.to_uppercase();
        out += &format!(
            "[identities.{role}]\naccess_key_id_env = \"VAULT_TEST_{upper}_KEY\"\n\
             secret_access_key_env = \"VAULT_TEST_{upper}_SECRET\"\n"
        );
    }
    out + "age_identity_file = \"key.txt\"\n"
}

/// The entry of `job` in a `vault --json verify` report.
pub fn job_report<'r>(report: &'r serde_json::Value, job: &str) -> &'r serde_json::Value {
    report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == job)
        .unwrap_or_else(|| panic!("no job {job} in {report:#}"))
}
