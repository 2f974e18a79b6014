//! `vault deploy kubernetes`, end to end: the example in deploy/kubernetes/ is current
//! and valid (kubernetes-validate for 1.30 and the newest schema, checkov with no failed
//! check); the rendered CronJobs really work — their container args and env, run as
//! written against the S3 test server under their identities' web-identity tokens;
//! rendering is deterministic and refuses what it cannot express; the writer's pods
//! hold nothing of the verifier's or the restorer's.
//!
//! Regenerate the example with `UPDATE_DEPLOY=1 cargo test --test kubernetes`.

mod common;
mod s3harness;
mod tools;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use common::EXIT_USAGE;
use s3harness::{LockSetup, S3World};

const DIGEST: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The flags deploy/kubernetes/README.md renders the example with (and `--output`).
fn example_args() -> Vec<String> {
    [
        "--image",
        &format!("registry.example.com/vault:0.1.0@sha256:{DIGEST}"),
        "--drill-image",
        &format!("registry.example.com/vault:0.1.0-drill@sha256:{DIGEST}"),
        "--writer-namespace",
        "app",
        "--verifier-namespace",
        "vault-verify",
        "--restorer-namespace",
        "vault-restore",
        "--claim",
        "/var/lib/app=app-data",
        "--claim",
        "/var/lib/vault=vault-state",
        "--database-cidr",
        "10.0.0.0/8",
        "--token-audience",
        "vault",
        "--prometheus-rule",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn vault(config: &Path, args: &[String]) -> Output {
    Command::new(common::vault_bin())
        .arg("--config")
        .arg(config)
        .args(["deploy", "kubernetes"])
        .args(args)
        .env_remove("VAULT_CONFIG")
        .output()
        .unwrap()
}

fn render_ok(config: &Path, args: &[String]) -> String {
    let out = vault(config, args);
    assert!(
        out.status.success(),
        "vault deploy kubernetes {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn example_config() -> PathBuf {
    tools::crate_root().join("deploy/kubernetes/vault.toml")
}

/// The documents of a YAML stream, as JSON values.
fn documents(yaml: &str) -> Vec<Value> {
    yaml.split("\n---\n")
        .skip(1)
        .map(|doc| serde_saphyr::from_str::<Value>(doc).unwrap_or_else(|e| panic!("{e}:\n{doc}")))
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn pod_of(cron_job: &Value) -> &Value {
    &cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
}

/// The files of a kustomize tree, relative path -> text.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for sub in ["base", "overlays/eks", "overlays/web-identity"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                files.insert(rel, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn the_example_in_deploy_kubernetes_is_current() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = example_args();
    args.extend(["--output".to_string(), tmp.path().display().to_string()]);
    render_ok(&example_config(), &args);
    let fresh = tree(tmp.path());
    let checked_in_dir = tools::crate_root().join("deploy/kubernetes");
    if std::env::var_os("UPDATE_DEPLOY").is_some() {
        for (rel, text) in &fresh {
            let path = checked_in_dir.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }
    let checked_in = tree(&checked_in_dir);
    assert_eq!(
        checked_in.keys().collect::<Vec<_>>(),
        fresh.keys().collect::<Vec<_>>(),
        "deploy/kubernetes has other files than the renderer writes"
    );
    for (rel, text) in &fresh {
        assert!(
            checked_in[rel] == *text,
            "deploy/kubernetes/{rel} is stale: run `UPDATE_DEPLOY=1 cargo test --test kubernetes`"
        );
    }
    // The README shows the command the example comes from.
    let readme = std::fs::read_to_string(checked_in_dir.join("README.md")).unwrap();
    let shown = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    for arg in example_args() {
        assert!(
            shown.contains(&arg),
            "deploy/kubernetes/README.md lacks {arg}"
        );
    }
}

/// kubernetes-validate (strict) for 1.30 and its newest schema; the operator's kinds
/// (ServiceMonitor, PrometheusRule) have no schema there and are the only warnings.
fn validate(files: &[PathBuf]) {
    for version in ["1.30.0", "1.37.0"] {
        let text = tools::kubernetes_validate(version, files);
        for line in text.lines().filter(|l| !l.starts_with("INFO")) {
            assert!(
                line.contains("Couldn't find schema for kind ServiceMonitor")
                    || line.contains("Couldn't find schema for kind PrometheusRule"),
                "kubernetes-validate {version}: {line}\n{text}"
            );
        }
    }
}

/// checkov on a directory: no failed check, and every skip carries its reason beside
/// it (`checkov.io/skipN: CHECK=reason`).
fn checkov_clean(dir: &Path) {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    let report = tools::checkov(&files, "kubernetes");
    assert_eq!(report.parsing_errors, 0, "{}", report.output);
    assert!(
        report.failed.is_empty(),
        "checkov failed checks: {:#?}",
        report.failed
    );
    assert!(report.passed > 100, "checkov passed only {}", report.passed);
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for line in text.lines().filter(|l| l.contains("checkov.io/skip")) {
            let reason = line.split_once('=').map(|(_, r)| r.trim()).unwrap_or("");
            assert!(reason.len() > 40, "a skip without its reason: {line}");
        }
    }
}

#[test]
fn the_rendered_manifests_validate_and_pass_checkov() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = example_args();
    args.extend(["--output".to_string(), tmp.path().display().to_string()]);
    render_ok(&example_config(), &args);
    let base = tmp.path().join("base");
    let files: Vec<PathBuf> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    validate(&files);
    checkov_clean(&base);

    // The other shape: one stream with IRSA annotations and the scheduler's Deployment
    // (probes, Service, ServiceMonitor) instead of the backup CronJobs.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vault.toml");
    let text = std::fs::read_to_string(example_config())
        .unwrap()
        .replace("[scheduler]\n", "[scheduler]\nlisten = \"[::]:9464\"\n");
    std::fs::write(&config, text).unwrap();
    let mut args = example_args();
    args.extend(["--irsa".to_string(), "--scheduler".to_string()]);
    let stream = render_ok(&config, &args);
    let scheduler = dir.path().join("out");
    std::fs::create_dir(&scheduler).unwrap();
    std::fs::write(scheduler.join("vault.yaml"), &stream).unwrap();
    validate(&[scheduler.join("vault.yaml")]);
    checkov_clean(&scheduler);
    let docs = documents(&stream);
    let run = find(&docs, "Deployment", "vault-run");
    let container = &run["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["args"][2], "run");
    assert_eq!(
        find(&docs, "ServiceAccount", "vault-writer")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::222233334444:role/vault-writer"
    );
    assert!(
        !docs
            .iter()
            .any(|d| d["kind"] == "CronJob" && d["metadata"]["name"] == "vault-backup-app"),
        "--scheduler replaces the backup CronJobs"
    );
}

#[test]
fn rendering_is_deterministic_and_refuses_what_it_cannot_express() {
    let args = example_args();
    let first = render_ok(&example_config(), &args);
    let second = render_ok(&example_config(), &args);
    assert!(first == second, "two renderings differ");

    // The same config from another directory renders the same (nothing of this machine's
    // paths gets into the manifests).
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("vault.toml");
    std::fs::copy(example_config(), &copy).unwrap();
    assert!(
        render_ok(&copy, &args) == first,
        "the output depends on where the config is"
    );

    let text = std::fs::read_to_string(example_config()).unwrap();
    let refuse = |config: &str, wanted: &str| {
        std::fs::write(&copy, config).unwrap();
        let out = vault(&copy, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(EXIT_USAGE), "{stderr}");
        assert!(stderr.contains(wanted), "wanted {wanted:?} in: {stderr}");
        assert!(out.stdout.is_empty(), "nothing is printed when refused");
    };
    refuse(
        &text.replace("schedule = \"45 */6 * * *\"\n", ""),
        "job `uploads-index`: no schedule",
    );
    refuse(
        &text.replace("\"45 */6 * * *\"", "\"0 45 */6 * * *\""),
        "job `uploads-index`: schedule `0 45 */6 * * *` has a seconds field",
    );
    refuse(
        &text.replace(
            "pushgateway = \"http://pushgateway",
            "pushgateway = \"http://user:secret@pushgateway",
        ),
        "[verify] pushgateway: the URL holds credentials",
    );
    // A sqlite source on no claim cannot be mounted.
    std::fs::write(&copy, &text).unwrap();
    let mut no_claim = args.clone();
    let at = no_claim
        .iter()
        .position(|a| a == "/var/lib/app=app-data")
        .unwrap();
    no_claim.drain(at - 1..=at);
    let out = vault(&copy, &no_claim);
    assert_eq!(out.status.code(), Some(EXIT_USAGE));
    assert!(String::from_utf8_lossy(&out.stderr).contains("job `uploads-index`"));
}

/// Every volume source a pod's container mounts, with what it holds.
fn mounted(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for volume in pod["volumes"].as_array().unwrap() {
        if let Some(sources) = volume["projected"]["sources"].as_array() {
            for source in sources {
                if let Some(secret) = source.get("secret") {
                    for item in secret["items"].as_array().unwrap() {
                        out.push(format!("secret {}/{}", secret["name"], item["key"]));
                    }
                }
                if let Some(cm) = source.get("configMap") {
                    for item in cm["items"].as_array().unwrap() {
                        out.push(format!("configMap {}/{}", cm["name"], item["key"]));
                    }
                }
                if source.get("serviceAccountToken").is_some() {
                    out.push("token".into());
                }
            }
        }
        for kind in ["secret", "hostPath", "csi", "configMap"] {
            assert!(
                volume.get(kind).is_none(),
                "an unexpected {kind} volume: {volume}"
            );
        }
    }
    for c in pod["containers"].as_array().unwrap() {
        for e in c["env"].as_array().into_iter().flatten() {
            if let Some(r) = e["valueFrom"].get("secretKeyRef") {
                out.push(format!("env {} from {}/{}", e["name"], r["name"], r["key"]));
            }
        }
        assert!(
            c.get("envFrom").is_none(),
            "envFrom would take a whole Secret"
        );
    }
    out
}

#[test]
fn the_writer_pods_mount_no_age_identity_and_no_other_roles_credentials() {
    let stream = render_ok(&example_config(), &example_args());
    let docs = documents(&stream);
    let mut writer_pods = 0;
    for cron in docs.iter().filter(|d| d["kind"] == "CronJob") {
        let pod = pod_of(cron);
        let things = mounted(pod);
        let account = pod["serviceAccountName"].as_str().unwrap();
        assert_eq!(pod["automountServiceAccountToken"], false);
        if account != "vault-writer" {
            continue;
        }
        writer_pods += 1;
        let name = &cron["metadata"]["name"];
        for thing in &things {
            assert!(
                !thing.contains("restore-key") && !thing.contains("AGE-SECRET"),
                "{name} mounts the age identity: {thing}"
            );
            assert!(
                !thing.contains("vault-verifier") && !thing.contains("vault-restorer"),
                "{name} mounts another role's credentials: {thing}"
            );
            assert!(
                thing.starts_with("secret \"vault-writer\"")
                    || thing.starts_with("configMap \"vault-config\"")
                    || thing == "token"
                    || thing.contains("from \"vault-writer\""),
                "{name}: {thing}"
            );
        }
        // Its own: the config, the signing key, the token, and its job's password only.
        assert!(things.contains(&"token".to_string()), "{name}: {things:?}");
        assert!(
            things.iter().any(|t| t.contains("signing.key")),
            "{name}: {things:?}"
        );
        if name == "vault-backup-uploads-index" {
            assert!(
                !things.iter().any(|t| t.contains("APP_PG_PASSWORD")),
                "the sqlite job's pod gets the postgres job's password: {things:?}"
            );
        }
    }
    assert_eq!(writer_pods, 2, "one writer CronJob per job");
    // And the restorer's pod is where the age identity is.
    let drill = mounted(pod_of(find(&docs, "CronJob", "vault-drill")));
    assert!(
        drill
            .iter()
            .any(|t| t == "secret \"vault-restorer\"/\"restore-key.txt\""),
        "{drill:?}"
    );
}

/// A kubelet for one CronJob, on this machine: the pod's file system is `root`; each
/// volume is filled as the kubelet would (the ConfigMap's data, the Secret values the
/// test supplies, a service-account token, empty directories, a claim's directory),
/// and every mount path in the args, the env and the config is mapped under `root`.
struct Kubelet<'a> {
    docs: &'a [Value],
    root: PathBuf,
    secrets: BTreeMap<String, String>,
    token: String,
}

impl Kubelet<'_> {
    fn host(&self, pod_path: &str) -> PathBuf {
        self.root.join(pod_path.trim_start_matches('/'))
    }

    /// A path of the pod on this machine, if it lies on one of `pod`'s mounts.
    fn map_path(&self, pod: &Value, path: &str) -> Option<String> {
        pod["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["mountPath"].as_str().unwrap())
            .filter(|m| Path::new(path).starts_with(m))
            .max_by_key(|m| m.len())
            .map(|_| self.host(path).display().to_string())
    }

    /// `text` (an argument, or the config) with every path on a mount of `pod` mapped
    /// under `root`: the whole text when it is a path, else each quoted string.
    fn map(&self, pod: &Value, text: &str) -> String {
        if let Some(mapped) = self.map_path(pod, text) {
            return mapped;
        }
        let mut out = String::new();
        let mut parts = text.split('"');
        out += parts.next().unwrap_or("");
        for (i, part) in parts.enumerate() {
            out.push('"');
            match (i % 2 == 0).then(|| self.map_path(pod, part)).flatten() {
                Some(mapped) => out += &mapped,
                None => out += part,
            }
        }
        out
    }

    /// Fills the pod's volumes and runs its container's args and env; the output.
    fn run(&self, cron_job: &Value, extra_env: &[(&str, &str)]) -> Output {
        let pod = pod_of(cron_job);
        let namespace = cron_job["metadata"]["namespace"].as_str().unwrap();
        let container = &pod["containers"][0];
        let volumes: BTreeMap<&str, &Value> = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["name"].as_str().unwrap(), v))
            .collect();
        for mount in container["volumeMounts"].as_array().unwrap() {
            let dir = self.host(mount["mountPath"].as_str().unwrap());
            std::fs::create_dir_all(&dir).unwrap();
            let volume = volumes[mount["name"].as_str().unwrap()];
            for source in volume["projected"]["sources"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let Some(cm) = source.get("configMap") {
                    let map = self
                        .docs
                        .iter()
                        .find(|d| {
                            d["kind"] == "ConfigMap"
                                && d["metadata"]["name"] == cm["name"]
                                && d["metadata"]["namespace"] == namespace
                        })
                        .expect("the ConfigMap is rendered in the pod's namespace");
                    for item in cm["items"].as_array().unwrap() {
                        let data = map["data"][item["key"].as_str().unwrap()].as_str().unwrap();
                        let file = dir.join(item["path"].as_str().unwrap());
                        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                        std::fs::write(file, self.map(pod, data)).unwrap();
                    }
                }
                if let Some(secret) = source.get("secret") {
                    for item in secret["items"].as_array().unwrap() {
                        let key = item["key"].as_str().unwrap();
                        let value = self.secrets.get(key).unwrap_or_else(|| {
                            panic!("the test supplies no value for Secret key {key}")
                        });
                        let file = dir.join(item["path"].as_str().unwrap());
                        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                        std::fs::write(&file, value).unwrap();
                        set_mode(&file, 0o440);
                    }
                }
                if let Some(token) = source.get("serviceAccountToken") {
                    std::fs::write(dir.join(token["path"].as_str().unwrap()), &self.token).unwrap();
                }
            }
        }
        let args: Vec<String> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| self.map(pod, a.as_str().unwrap()))
            .collect();
        let mut cmd = Command::new(common::vault_bin());
        cmd.args(&args).env_clear();
        // The image's own environment (deploy/container/Dockerfile) and PATH.
        cmd.env("PATH", std::env::var_os("PATH").unwrap())
            .env("TMPDIR", self.host("/tmp"))
            .env("HOME", self.host("/tmp"));
        for e in container["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap();
            let value = match e.get("value") {
                Some(v) => v.as_str().unwrap().to_string(),
                None => {
                    let key = e["valueFrom"]["secretKeyRef"]["key"].as_str().unwrap();
                    self.secrets[key].clone()
                }
            };
            cmd.env(name, self.map(pod, &value));
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The acceptance test of the manifests: each CronJob's args and env, as rendered, run
/// against the S3 test server, with each role's web-identity token at the path its
/// CronJob mounts: the backup lands under the writer's role, verify passes under the
/// verifier's, the drill restores under the restorer's.
#[test]
fn the_rendered_cronjobs_back_up_verify_and_drill_against_s3() {
    let w = S3World::new(LockSetup::PerObject);
    let roles: BTreeMap<&str, String> = ["writer", "verifier", "restorer"]
        .iter()
        .map(|r| {
            (
                *r,
                w.moto
                    .create_role(&format!("vault-{r}-role"), &[r], &w.bucket),
            )
        })
        .collect();
    let token = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";
    let dir = w.world.dir();
    let config = dir.join("vault.toml");
    std::fs::write(
        &config,
        format!(
            "[vault]\ntarget = \"s3://{}/{}\"\nendpoint = \"{}\"\nregion = \"{}\"\n\
             [encryption]\nrecipients = [\"{}\"]\n\
             [identities.writer]\nrole_arn = \"{}\"\nweb_identity_token_file = \"{token}\"\n\
             [identities.verifier]\nrole_arn = \"{}\"\nweb_identity_token_file = \"{token}\"\n\
             [identities.restorer]\nrole_arn = \"{}\"\nweb_identity_token_file = \"{token}\"\n\
             age_identity_file = \"keys/restore-key.txt\"\n\
             [signing]\nstate_dir = \"/var/lib/vault\"\n\
             [verify]\nschedule = \"7 * * * *\"\n[drill]\nschedule = \"30 5 * * 0\"\n\
             [[job]]\nname = \"app-db\"\nschedule = \"15 3 * * *\"\n\
             source = {{ kind = \"sqlite\", path = \"/var/lib/app/app.db\" }}\n",
            w.bucket,
            s3harness::PREFIX,
            w.moto.endpoint,
            w.moto.region,
            w.world.recipient,
            roles["writer"],
            roles["verifier"],
            roles["restorer"],
        ),
    )
    .unwrap();
    let args: Vec<String> = [
        "--image",
        "vault:test",
        "--claim",
        "/var/lib/app=app-data",
        "--writer-namespace",
        "prod",
        "--verifier-namespace",
        "vault-verify",
        "--restorer-namespace",
        "vault-restore",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let stream = render_ok(&config, &args);
    let docs = documents(&stream);

    let kubelet = |pod_dir: &str| Kubelet {
        docs: &docs,
        root: dir.join(pod_dir),
        secrets: BTreeMap::from([(
            "restore-key.txt".to_string(),
            std::fs::read_to_string(w.world.path("key.txt")).unwrap(),
        )]),
        token: "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl".into(),
    };
    // Only the STS endpoint differs from a cluster's: it is the test server too.
    let env = [
        ("AWS_ENDPOINT_URL", w.moto.endpoint.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];

    // The claim app-data: the application's SQLite database.
    let backup_pod = kubelet("backup-pod");
    let db = backup_pod.host("/var/lib/app/app.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
         INSERT INTO notes(body) VALUES ('from a CronJob'), ('as written');",
    )
    .unwrap();
    drop(conn);

    let backup = backup_pod.run(find(&docs, "CronJob", "vault-backup-app-db"), &env);
    common::succeeded(&["backup CronJob"], backup);
    let manifests = w.manifests("app-db");
    assert_eq!(manifests.len(), 1, "the backup landed");
    assert!(manifests[0]["data"]["version_id"].is_string());

    let verify = kubelet("verify-pod").run(find(&docs, "CronJob", "vault-verify"), &env);
    let out = common::succeeded(&["verify CronJob"], verify);
    assert!(out.contains("app-db"), "{out}");

    let drill = kubelet("drill-pod").run(find(&docs, "CronJob", "vault-drill"), &env);
    let out = common::succeeded(&["drill CronJob"], drill);
    assert!(out.contains("app-db"), "{out}");

    // Each ran as its own role: the writer's role cannot read, so verify and the drill
    // could only pass under theirs; and the writer's pod had no age identity to drill
    // with.
    let writer_pod = pod_of(find(&docs, "CronJob", "vault-backup-app-db"));
    assert!(
        !mounted(writer_pod)
            .iter()
            .any(|t| t.contains("restore-key"))
    );
}
