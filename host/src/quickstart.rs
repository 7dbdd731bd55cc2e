//! The quickstart: `scimgate serve` with no config runs the embedded default
//! (token endpoint, SCIM with bearer tokens and the seed policies, SQLite in
//! `./scimgate-data`). On first start it creates one read-write provider,
//! keeps only its secret's hash in the data folder (mode 0600) and prints the
//! client ID and secret once, with a `curl` that gets a token.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::credentials::{new_client_id, new_secret, sha256_hash};

/// The file the quickstart keeps its provider in.
pub const QUICKSTART_FILE: &str = "quickstart-provider.json";

#[derive(Serialize, Deserialize)]
struct Stored {
    client_id: String,
    client_secret_hash: String,
}

/// The quickstart provider's credentials; `secret` only on first start.
pub struct Quickstart {
    pub client_id: String,
    pub secret_hash: String,
    pub new_secret: Option<String>,
    pub file: PathBuf,
}

impl Quickstart {
    /// Variables the embedded configuration expands.
    pub fn variables(&self) -> HashMap<String, String> {
        HashMap::from([
            (
                "SCIMGATE_QUICKSTART_CLIENT_ID".to_string(),
                self.client_id.clone(),
            ),
            (
                "SCIMGATE_QUICKSTART_SECRET_HASH".to_string(),
                self.secret_hash.clone(),
            ),
        ])
    }
}

/// Loads the quickstart provider from `data_dir`, creating it on first use.
pub fn ensure(data_dir: &Path) -> Result<Quickstart, String> {
    let file = data_dir.join(QUICKSTART_FILE);
    if file.is_file() {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let stored: Stored = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is damaged ({e}); delete it to create a new quickstart provider",
                file.display()
            )
        })?;
        return Ok(Quickstart {
            client_id: stored.client_id,
            secret_hash: stored.client_secret_hash,
            new_secret: None,
            file,
        });
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    let client_id = new_client_id("quickstart")?;
    let secret = new_secret()?;
    let stored = Stored {
        client_id: client_id.clone(),
        client_secret_hash: sha256_hash(&secret),
    };
    let text = serde_json::to_string_pretty(&stored).map_err(|e| e.to_string())?;
    write_private(&file, text.as_bytes())?;
    Ok(Quickstart {
        client_id,
        secret_hash: stored.client_secret_hash,
        new_secret: Some(secret),
        file,
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_creates_then_reuses_with_only_the_hash_stored() {
        let dir = std::env::temp_dir().join(format!("scimgate-qs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = ensure(&dir).unwrap();
        let secret = first.new_secret.clone().unwrap();
        let stored = std::fs::read_to_string(&first.file).unwrap();
        assert!(!stored.contains(&secret));
        assert!(stored.contains(&sha256_hash(&secret)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&first.file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let second = ensure(&dir).unwrap();
        assert!(second.new_secret.is_none());
        assert_eq!(second.client_id, first.client_id);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
