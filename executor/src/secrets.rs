//! Secrets: per-project RSA-4096 keys kept in the state dir, Zuul's `!encrypted/pkcs1-oaep`
//! format (RSAES-OAEP with SHA-1 and MGF1-SHA-1, empty label, base64; plaintexts longer than 470
//! bytes are split into independently encrypted blocks), and what a playbook receives.
//!
//! Keys live at `<keys dir>/secrets/project/<canonical project name>/0.pem` (PKCS#1 PEM, mode
//! 0600, directories 0700), created on first use. Decrypted values never touch the disk: the
//! executor hands them to the sandbox as in-memory files (`ansible/<pb>/group_vars/all.yaml` on
//! a tmpfs, plus the list of values the callbacks redact).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use serde_json::{Map, Value};
use sluice_config::{FrozenJob, PlaybookRef};

/// Largest plaintext per block (RSA-4096 with OAEP SHA-1 takes 470 bytes).
pub const MAX_BLOCK: usize = 470;

/// Key size of project keys.
pub const KEY_BITS: usize = 4096;

/// Size of the per-project SSH keys.
pub const SSH_KEY_BITS: usize = 2048;

/// Canonical host name given to project names without one (as `sluice job run` names them).
pub const DEFAULT_HOSTNAME: &str = "localhost";

/// Why a key or a secret could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// A key file could not be read.
    #[error("cannot read key {}: {source}", path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key file could not be written.
    #[error("cannot write key {}: {source}", path.display())]
    Write {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key file does not hold an RSA private key.
    #[error("key {} is not an RSA private key in PEM: {message}", path.display())]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// The parser's complaint.
        message: String,
    },
    /// The project has no key (so nothing can have been encrypted for it).
    #[error("no key for project {project} (expected {})", path.display())]
    NoKey {
        /// Canonical project name.
        project: String,
        /// Where the key would be.
        path: PathBuf,
    },
    /// Key generation or encryption failed.
    #[error("{0}")]
    Crypto(String),
    /// A secret's value could not be decrypted.
    #[error("secret {secret} of {project}: {reason}")]
    Decrypt {
        /// The secret.
        secret: String,
        /// Its project.
        project: String,
        /// What went wrong (block number and cause).
        reason: String,
    },
    /// A playbook names a secret the job does not have.
    #[error("playbook {playbook} names secret #{index}, which the job does not have")]
    MissingSecret {
        /// The playbook.
        playbook: String,
        /// The index into the job's secrets.
        index: usize,
    },
}

/// `org/repo` → `localhost/org/repo`; names that already carry a host name are kept.
pub fn canonical_project(name: &str) -> String {
    let first = name.split('/').next().unwrap_or_default();
    if name.matches('/').count() >= 2 && (first == DEFAULT_HOSTNAME || first.contains('.')) {
        name.to_string()
    } else {
        format!("{DEFAULT_HOSTNAME}/{name}")
    }
}

/// The per-project keys under one directory.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    /// Keys under `dir` (`<state>/keys` by default).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        KeyStore { dir: dir.into() }
    }

    /// The key file of a project (canonical name).
    pub fn key_path(&self, project: &str) -> PathBuf {
        let mut path = self.dir.join("secrets").join("project");
        for part in project.split('/').filter(|p| !p.is_empty() && *p != "..") {
            path.push(part);
        }
        path.join("0.pem")
    }

    /// The project's SSH key file (canonical name), where Zuul keeps it
    /// (`ssh/project/<host>/<project>/0.pem`).
    pub fn ssh_key_path(&self, project: &str) -> PathBuf {
        let mut path = self.dir.join("ssh").join("project");
        for part in project.split('/').filter(|p| !p.is_empty() && *p != "..") {
            path.push(part);
        }
        path.join("0.pem")
    }

    /// The project's SSH key (Zuul's per-project key an executor would log in to nodes
    /// with), generated (RSA-2048) and stored like the secrets key when it has none.
    pub fn load_or_create_ssh(&self, project: &str) -> Result<RsaPrivateKey, SecretsError> {
        let path = self.ssh_key_path(project);
        match load_at(&path, project) {
            Err(SecretsError::NoKey { path, .. }) => {
                let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, SSH_KEY_BITS)
                    .map_err(|e| SecretsError::Crypto(format!("cannot generate a key: {e}")))?;
                write_private(&path, &key)?;
                load_at(&path, project)
            }
            other => other,
        }
    }

    /// The project's key; an error when it has none.
    pub fn load(&self, project: &str) -> Result<RsaPrivateKey, SecretsError> {
        load_at(&self.key_path(project), project)
    }

    /// The project's key, generated (RSA-4096, e = 65537) and stored when it has none.
    pub fn load_or_create(&self, project: &str) -> Result<RsaPrivateKey, SecretsError> {
        match self.load(project) {
            Err(SecretsError::NoKey { path, .. }) => {
                let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, KEY_BITS)
                    .map_err(|e| SecretsError::Crypto(format!("cannot generate a key: {e}")))?;
                write_private(&path, &key)?;
                // Another process may have won the race: use whatever is stored now.
                self.load(project)
            }
            other => other,
        }
    }
}

/// The key stored at `path` (of `project`); `NoKey` when there is none.
fn load_at(path: &Path, project: &str) -> Result<RsaPrivateKey, SecretsError> {
    let path = path.to_path_buf();
    let pem = match fs::read_to_string(&path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SecretsError::NoKey {
                project: project.to_string(),
                path,
            })
        }
        Err(source) => return Err(SecretsError::Read { path, source }),
    };
    RsaPrivateKey::from_pkcs1_pem(&pem)
        .or_else(|_| RsaPrivateKey::from_pkcs8_pem(&pem))
        .map_err(|e| SecretsError::BadKey {
            path,
            message: e.to_string(),
        })
}

fn write_private(path: &Path, key: &RsaPrivateKey) -> Result<(), SecretsError> {
    let err = |source| SecretsError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(err)?;
    }
    let pem = key
        .to_pkcs1_pem(LineEnding::LF)
        .map_err(|e| SecretsError::Crypto(format!("cannot encode the key: {e}")))?;
    let tmp = path.with_extension(format!("pem.{}.tmp", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(pem.as_bytes()).map_err(err)?;
    drop(file);
    // Never replace an existing key: link fails if another process stored one first.
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// The public key in OpenSSH's `authorized_keys` format (`ssh-rsa <base64> <comment>`).
pub fn ssh_public_key(key: &RsaPrivateKey, comment: &str) -> String {
    use rsa::traits::PublicKeyParts;
    fn put(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    // An mpint is big-endian, with a leading zero byte when the top bit is set.
    fn mpint(n: &rsa::BigUint) -> Vec<u8> {
        let mut bytes = n.to_bytes_be();
        if bytes.first().is_some_and(|b| b & 0x80 != 0) {
            bytes.insert(0, 0);
        }
        bytes
    }
    let mut blob = Vec::new();
    put(&mut blob, b"ssh-rsa");
    put(&mut blob, &mpint(key.e()));
    put(&mut blob, &mpint(key.n()));
    format!("ssh-rsa {} {comment}\n", BASE64.encode(blob))
}

/// The public key as PEM SubjectPublicKeyInfo (what Zuul serves at `key/<project>.pub`).
pub fn public_key_pem(key: &RsaPrivateKey) -> Result<String, SecretsError> {
    RsaPublicKey::from(key)
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| SecretsError::Crypto(format!("cannot encode the public key: {e}")))
}

/// Encrypts `plaintext` into base64 blocks of at most [`MAX_BLOCK`] plaintext bytes each.
pub fn encrypt(key: &RsaPublicKey, plaintext: &[u8]) -> Result<Vec<String>, SecretsError> {
    let mut rng = rand::rngs::OsRng;
    let chunks: Vec<&[u8]> = if plaintext.is_empty() {
        vec![plaintext]
    } else {
        plaintext.chunks(MAX_BLOCK).collect()
    };
    chunks
        .into_iter()
        .map(|chunk| {
            key.encrypt(&mut rng, Oaep::new::<sha1::Sha1>(), chunk)
                .map(|ct| BASE64.encode(ct))
                .map_err(|e| SecretsError::Crypto(format!("cannot encrypt: {e}")))
        })
        .collect()
}

/// [`encrypt`] with the public half of a project's key.
pub fn encrypt_for(key: &RsaPrivateKey, plaintext: &[u8]) -> Result<Vec<String>, SecretsError> {
    encrypt(&RsaPublicKey::from(key), plaintext)
}

/// Decrypts base64 blocks and joins their plaintexts (UTF-8). Errors name the block (1-based).
pub fn decrypt_blocks(key: &RsaPrivateKey, blocks: &[String]) -> Result<String, String> {
    let mut plain = Vec::new();
    for (n, block) in blocks.iter().enumerate() {
        let cleaned: String = block.chars().filter(|c| !c.is_whitespace()).collect();
        let ct = BASE64
            .decode(cleaned)
            .map_err(|e| format!("block {} is not valid base64: {e}", n + 1))?;
        let part = key
            .decrypt(Oaep::new::<sha1::Sha1>(), &ct)
            .map_err(|_| format!("block {} does not decrypt with the project's key", n + 1))?;
        plain.extend(part);
    }
    String::from_utf8(plain).map_err(|_| "the plaintext is not UTF-8".to_string())
}

/// A secret's data with every encrypted leaf replaced by its plaintext.
pub fn decrypt_data(key: &RsaPrivateKey, data: &Value) -> Result<Value, String> {
    Ok(match data {
        Value::Object(map)
            if map.get("__encrypted__").and_then(Value::as_str) == Some("pkcs1-oaep") =>
        {
            let blocks: Vec<String> = map
                .get("ciphertext")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|b| b.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            Value::String(decrypt_blocks(key, &blocks)?)
        }
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                out.insert(k.clone(), decrypt_data(key, v)?);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| decrypt_data(key, v))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

/// The YAML `sluice encrypt` prints: a `secret` item to paste into a project's configuration.
pub fn secret_yaml(secret_name: &str, field: &str, blocks: &[String]) -> String {
    let mut out = format!(
        "- secret:\n    name: {secret_name}\n    data:\n      {field}: !encrypted/pkcs1-oaep"
    );
    if let [single] = blocks {
        out.push_str(&format!(" {single}\n"));
    } else {
        out.push('\n');
        for block in blocks {
            out.push_str(&format!("        - {block}\n"));
        }
    }
    out
}

/// What one playbook receives: the text of `group_vars/all.yaml` and the values to redact.
#[derive(Clone, PartialEq)]
pub struct PlaybookSecrets {
    /// YAML: each variable name mapped to its secret, every string tagged `!unsafe` so Ansible
    /// never templates a secret's content.
    pub group_vars: String,
    /// Every string leaf of the secrets (for redaction).
    pub values: Vec<String>,
}

impl std::fmt::Debug for PlaybookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaybookSecrets")
            .field("values", &self.values.len())
            .finish_non_exhaustive()
    }
}

/// Decrypts the secrets of one playbook; `None` when it has none.
pub fn playbook_secrets(
    job: &FrozenJob,
    pb: &PlaybookRef,
    keys: &KeyStore,
) -> Result<Option<PlaybookSecrets>, SecretsError> {
    if pb.secrets.is_empty() {
        return Ok(None);
    }
    let mut vars = Map::new();
    let mut values = Vec::new();
    for ps in &pb.secrets {
        let secret = job
            .secrets
            .get(ps.index)
            .ok_or_else(|| SecretsError::MissingSecret {
                playbook: pb.path.clone(),
                index: ps.index,
            })?;
        let key = keys.load(&secret.project)?;
        let data = decrypt_data(&key, &secret.data).map_err(|reason| SecretsError::Decrypt {
            secret: secret.name.clone(),
            project: secret.project.clone(),
            reason,
        })?;
        collect_strings(&data, &mut values);
        vars.insert(ps.var_name.clone(), data);
    }
    values.retain(|v| !v.is_empty());
    values.sort();
    values.dedup();
    Ok(Some(PlaybookSecrets {
        group_vars: unsafe_yaml(&Value::Object(vars)) + "\n",
        values,
    }))
}

/// Decrypts every secret of the job (and forgets the plaintexts): the first that fails is the
/// error.
pub fn check_job(job: &FrozenJob, keys: &KeyStore) -> Result<(), SecretsError> {
    for secret in &job.secrets {
        let key = keys.load(&secret.project)?;
        decrypt_data(&key, &secret.data).map_err(|reason| SecretsError::Decrypt {
            secret: secret.name.clone(),
            project: secret.project.clone(),
            reason,
        })?;
    }
    Ok(())
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(map) => map.values().for_each(|i| collect_strings(i, out)),
        _ => {}
    }
}

/// Flow-style YAML with every string `!unsafe` (JSON string escapes are valid YAML
/// double-quoted escapes).
fn unsafe_yaml(v: &Value) -> String {
    match v {
        Value::String(s) => format!("!unsafe {}", Value::String(s.clone())),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(unsafe_yaml).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), unsafe_yaml(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> (tempfile::TempDir, KeyStore) {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyStore::new(dir.path());
        (dir, keys)
    }

    #[test]
    fn keys_are_created_once_private_and_reused() {
        let (dir, keys) = store();
        let a = keys.load_or_create("localhost/org/a").unwrap();
        let path = dir.path().join("secrets/project/localhost/org/a/0.pem");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(keys.load_or_create("localhost/org/a").unwrap(), a);
        assert_eq!(rsa::traits::PublicKeyParts::size(&a), KEY_BITS / 8);
        assert!(public_key_pem(&a)
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----"));
        assert!(matches!(
            keys.load("localhost/org/b"),
            Err(SecretsError::NoKey { .. })
        ));
    }

    #[test]
    fn single_and_multi_block_values_round_trip() {
        let (_dir, keys) = store();
        let key = keys.load_or_create("localhost/org/a").unwrap();
        let public = RsaPublicKey::from(&key);
        let short = encrypt(&public, b"hunter2").unwrap();
        assert_eq!(short.len(), 1);
        assert_eq!(decrypt_blocks(&key, &short).unwrap(), "hunter2");
        // Multi-byte characters across a block boundary still join into the same text.
        let long = "é".repeat(600);
        let blocks = encrypt(&public, long.as_bytes()).unwrap();
        assert_eq!(blocks.len(), 3);
        assert_eq!(decrypt_blocks(&key, &blocks).unwrap(), long);
        let yaml = secret_yaml("s", "f", &blocks);
        assert_eq!(yaml.matches("\n        - ").count(), 3, "{yaml}");
        assert!(secret_yaml("s", "f", &short).contains("f: !encrypted/pkcs1-oaep "));
    }

    #[test]
    fn a_value_encrypted_for_another_project_does_not_decrypt() {
        let (_dir, keys) = store();
        let a = keys.load_or_create("localhost/org/a").unwrap();
        let b = keys.load_or_create("localhost/org/b").unwrap();
        let blocks = encrypt(&RsaPublicKey::from(&a), b"x").unwrap();
        let err = decrypt_blocks(&b, &blocks).unwrap_err();
        assert_eq!(err, "block 1 does not decrypt with the project's key");
    }

    #[test]
    fn data_trees_decrypt_and_render_unsafe() {
        let (_dir, keys) = store();
        let key = keys.load_or_create("localhost/org/a").unwrap();
        let blocks = encrypt(&RsaPublicKey::from(&key), b"p{{ 1 }}\"w").unwrap();
        let data = json!({"user": "u", "password": {"__encrypted__": "pkcs1-oaep", "ciphertext": blocks}, "port": 5});
        let plain = decrypt_data(&key, &data).unwrap();
        assert_eq!(
            plain,
            json!({"user": "u", "password": "p{{ 1 }}\"w", "port": 5})
        );
        assert_eq!(
            unsafe_yaml(&json!({"db": plain})),
            r#"{"db": {"user": !unsafe "u", "password": !unsafe "p{{ 1 }}\"w", "port": 5}}"#
        );
    }

    #[test]
    fn project_names_become_canonical() {
        assert_eq!(canonical_project("org/a"), "localhost/org/a");
        assert_eq!(canonical_project("a"), "localhost/a");
        assert_eq!(canonical_project("localhost/org/a"), "localhost/org/a");
        assert_eq!(
            canonical_project("review.example.org/org/a"),
            "review.example.org/org/a"
        );
    }
}
