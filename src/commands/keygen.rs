//! `vault keygen`: a new age identity for the restorer and its recipient for the
//! config; with `--signing`, a manifest signing key for the writer and its public key
//! for the verifier.

use std::path::PathBuf;

use crate::cli::KeygenArgs;
use crate::{crypto, signing};

pub fn run(args: &KeygenArgs, json: bool) -> anyhow::Result<()> {
    if args.signing {
        let path = args
            .output
            .clone()
            .unwrap_or_else(|| PathBuf::from("vault-signing.key"));
        let public = signing::generate_key_file(&path)?;
        if json {
            crate::report::print_json(&serde_json::json!({
                "signing_key_file": path,
                "public_key": public.to_string(),
            }));
        } else {
            println!("{public}");
        }
        eprintln!(
            "wrote the manifest signing key (private) to {} with mode 0600.\n\
             hint: on the backup host set [signing] key_file = \"{}\" (and state_dir, kept between runs);\n\
             hint: where vault verify runs, add the public key above to [signing] public_keys.",
            path.display(),
            path.display()
        );
        return Ok(());
    }
    let path = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from("vault-identity.txt"));
    let recipient = crypto::generate_identity_file(&path)?;
    if json {
        crate::report::print_json(&serde_json::json!({
            "identity_file": path,
            "recipient": recipient,
        }));
    } else {
        println!("{recipient}");
    }
    eprintln!(
        "wrote the age identity (private key) to {} with mode 0600.\n\
         hint: put the recipient above in [encryption] recipients on the backup host;\n\
         hint: keep {} only where restores run (and a copy offline) — never on the backup host.",
        path.display(),
        path.display()
    );
    Ok(())
}
