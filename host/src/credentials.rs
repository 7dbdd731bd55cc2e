//! Credentials the CLI and the quickstart hand out: client ids and 256-bit
//! secrets from the OS RNG, SHA-256 hashes for machine secrets and argon2id
//! hashes for human-chosen passwords, and the `[[provider]]` TOML block that
//! carries them (hash only; the secret is shown once and never stored).

use base64::Engine;

/// `n` random bytes from the operating system's RNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf)
        .map_err(|e| format!("the OS random number generator failed: {e}"))?;
    Ok(buf)
}

/// A fresh 256-bit secret, base64url without padding (43 characters).
pub fn new_secret() -> Result<String, String> {
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// A fresh client id: `<prefix>-<16 hex>`.
pub fn new_client_id(prefix: &str) -> Result<String, String> {
    Ok(format!("{prefix}-{}", hex::encode(random_bytes::<8>()?)))
}

/// `sha256:<hex>`, for high-entropy machine secrets.
pub fn sha256_hash(secret: &str) -> String {
    crate::config::sha256_secret(secret)
}

/// `$argon2id$…` (PHC string, random salt), for human-chosen passwords.
pub fn argon2id_hash(password: &str) -> Result<String, String> {
    use argon2::password_hash::PasswordHasher;
    let salt = random_bytes::<16>()?;
    argon2::Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("argon2id hashing failed: {e}"))
}

/// What `scimgate provider new` was asked for.
#[derive(Debug, Clone, Default)]
pub struct NewProvider {
    pub id: String,
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub client_id: String,
    pub secret_hash: String,
    pub allowed_ips: Vec<String>,
    pub allowed_referrers: Vec<String>,
    pub valid_from: Option<String>,
    pub valid_until: Option<String>,
    pub access: String,
    pub scopes: Vec<String>,
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn toml_list(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| toml_string(s)).collect();
    format!("[{}]", parts.join(", "))
}

impl NewProvider {
    /// The ready-to-paste `[[provider]]` block.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        out.push_str("[[provider]]\n");
        out.push_str(&format!("id = {}\n", toml_string(&self.id)));
        out.push_str(&format!("name = {}\n", toml_string(&self.name)));
        out.push_str("active = true\n");
        out.push_str("protocol = \"scim2\"\n");
        if !self.description.is_empty() {
            out.push_str(&format!(
                "description = {}\n",
                toml_string(&self.description)
            ));
        }
        if !self.tags.is_empty() {
            out.push_str(&format!("tags = {}\n", toml_list(&self.tags)));
        }
        out.push_str("[provider.auth]\n");
        out.push_str("method = \"oauth2-client-credentials\"\n");
        out.push_str(&format!("client_id = {}\n", toml_string(&self.client_id)));
        out.push_str(&format!(
            "client_secret_hash = {}\n",
            toml_string(&self.secret_hash)
        ));
        if let Some(t) = &self.valid_from {
            out.push_str(&format!("valid_from = {t}\n"));
        }
        if let Some(t) = &self.valid_until {
            out.push_str(&format!("valid_until = {t}\n"));
        }
        out.push_str(&format!("allowed_ips = {}\n", toml_list(&self.allowed_ips)));
        out.push_str(&format!(
            "allowed_referrers = {}\n",
            toml_list(&self.allowed_referrers)
        ));
        out.push_str(&format!("access = {}\n", toml_string(&self.access)));
        out.push_str(&format!("scopes = {}\n", toml_list(&self.scopes)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_256_bit_and_distinct() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&a)
            .unwrap();
        assert_eq!(raw.len(), 32);
    }

    #[test]
    fn argon2id_hashes_verify() {
        use argon2::password_hash::{phc::PasswordHash, PasswordVerifier};
        let hash = argon2id_hash("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(argon2::Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        assert!(argon2::Argon2::default()
            .verify_password(b"wrong", &parsed)
            .is_err());
    }

    #[test]
    fn the_provider_block_parses_back_through_the_config_loader() {
        let p = NewProvider {
            id: "oim-prod".into(),
            name: "One \"Identity\" Manager".into(),
            client_id: "oim-prod".into(),
            secret_hash: sha256_hash("s3cret"),
            allowed_ips: vec!["10.20.0.0/16".into()],
            valid_until: Some("2027-12-31T23:59:59Z".into()),
            access: "read-only".into(),
            scopes: vec!["scim:read".into()],
            ..NewProvider::default()
        };
        let text = p.to_toml();
        let source = crate::config::SourceFile::new("gen.toml", text.clone());
        let config = crate::config::parse_str(source, &|_| None)
            .unwrap_or_else(|(s, d)| panic!("{}", crate::config::render_diagnostics(&s, &d)));
        assert_eq!(config.providers.len(), 1);
        assert_eq!(config.providers[0].name, "One \"Identity\" Manager");
        assert!(!text.contains("s3cret"));
    }
}
