//! docs/cli.md is generated from the binary's own help; this test fails when the
//! checked-in copy is stale. Regenerate with `UPDATE_DOCS=1 cargo test --test cli_docs`.

use std::process::Command;

const COMMANDS: [&str; 13] = [
    "",
    "keygen",
    "backup",
    "list",
    "restore",
    "verify",
    "prune",
    "doctor",
    "run",
    "drill",
    "deploy",
    "deploy kubernetes",
    "demo",
];

fn help(command: &str) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vault"));
    cmd.args(command.split_whitespace());
    let out = cmd
        .arg("--help")
        .env_remove("VAULT_CONFIG")
        .env_remove("COLUMNS")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn render() -> String {
    let mut doc = String::from(
        "# vault command reference\n\n\
         Generated from `vault --help` and `vault COMMAND --help`; regenerate with\n\
         `UPDATE_DOCS=1 cargo test --test cli_docs`. Exit codes and operations:\n\
         [operations.md](operations.md); config keys: [config.md](config.md).\n",
    );
    for command in COMMANDS {
        let title = if command.is_empty() {
            "vault".to_string()
        } else {
            format!("vault {command}")
        };
        doc += &format!(
            "\n## {title}\n\n```text\n{}\n```\n",
            help(command).trim_end()
        );
    }
    doc
}

#[test]
fn cli_reference_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md");
    let fresh = render();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(path, &fresh).unwrap();
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "docs/cli.md is stale: run `UPDATE_DOCS=1 cargo test --test cli_docs`"
    );
}
