//! `vault keygen`: a new age identity for the restorer, and its recipient for the config.

use crate::cli::KeygenArgs;
use crate::crypto;

pub fn run(args: &KeygenArgs, json: bool) -> anyhow::Result<()> {
    let recipient = crypto::generate_identity_file(&args.output)?;
    if json {
        crate::report::print_json(&serde_json::json!({
            "identity_file": args.output,
            "recipient": recipient,
        }));
    } else {
        println!("{recipient}");
    }
    eprintln!(
        "wrote the age identity (private key) to {} with mode 0600.\n\
         hint: put the recipient above in [encryption] recipients on the backup host;\n\
         hint: keep {} only where restores run (and a copy offline) — never on the backup host.",
        args.output.display(),
        args.output.display()
    );
    Ok(())
}
