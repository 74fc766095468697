//! `sluice encrypt`: encrypts a value with a project's public key (creating the project's
//! RSA-4096 key on first use) and prints the `secret` item to paste into its configuration.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use sluice_executor::secrets::{
    canonical_project, encrypt_for, public_key_pem, secret_yaml, KeyStore,
};

use crate::GlobalArgs;

/// Arguments of `sluice encrypt`.
#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// The project the secret belongs to (`org/repo`, or canonical `host/org/repo`).
    #[arg(long)]
    project: String,
    /// Read the plaintext from this file instead of stdin (used byte for byte).
    #[arg(long, value_name = "FILE")]
    infile: Option<PathBuf>,
    /// The secret's name in the printed item.
    #[arg(long, default_value = "<name>")]
    secret_name: String,
    /// The data field holding the value.
    #[arg(long, default_value = "<fieldname>")]
    field_name: String,
    /// Where project keys are kept (default: <state dir>/keys).
    #[arg(long, value_name = "DIR")]
    keys_dir: Option<PathBuf>,
    /// Print the project's public key (PEM) instead of encrypting.
    #[arg(long)]
    public_key: bool,
}

/// Prints the YAML (or the public key).
pub fn run(global: &GlobalArgs, args: &EncryptArgs) -> anyhow::Result<()> {
    let keys = KeyStore::new(
        args.keys_dir
            .clone()
            .unwrap_or_else(|| global.state_dir().join("keys")),
    );
    let project = canonical_project(&args.project);
    let key = keys.load_or_create(&project)?;
    if args.public_key {
        print!("{}", public_key_pem(&key)?);
        return Ok(());
    }
    let plaintext = match &args.infile {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read the plaintext from stdin")?;
            buf
        }
    };
    let blocks = encrypt_for(&key, &plaintext)?;
    print!(
        "{}",
        secret_yaml(&args.secret_name, &args.field_name, &blocks)
    );
    Ok(())
}
