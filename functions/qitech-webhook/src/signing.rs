//! Signing as QI Tech does, for the fixtures, the local send command and the tests.
//! Production never signs: it only verifies.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ParsedPublicKey, ECDSA_P521_SHA512_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Holds a P-521 private key and produces QI Tech `AUTHORIZATION` JWTs.
pub struct QiTechSigner {
    key_pair: EcdsaKeyPair,
}

impl std::fmt::Debug for QiTechSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QiTechSigner([redacted])")
    }
}

impl QiTechSigner {
    /// From a PEM `PRIVATE KEY` (PKCS#8).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, String> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| format!("not a PKCS#8 PEM: {e}"))?;
        let key_pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P521_SHA512_FIXED_SIGNING, der.secret_pkcs8_der())
            .map_err(|e| format!("not a P-521 key: {e}"))?;
        Ok(QiTechSigner { key_pair })
    }

    /// A fresh random key, e.g. to sign something the dev public key must reject.
    pub fn generate() -> Result<Self, String> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P521_SHA512_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|e| format!("key generation failed: {e}"))?;
        let key_pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P521_SHA512_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|e| format!("generated key rejected: {e}"))?;
        Ok(QiTechSigner { key_pair })
    }

    /// The JWT QI Tech would send for `body` POSTed to `uri` at `at`.
    pub fn sign(&self, body: &[u8], method: &str, uri: &str, at: OffsetDateTime) -> String {
        let payload_md5 = crate::payload_md5(body);
        let timestamp = at.format(&Rfc3339).unwrap_or_default();
        self.sign_claims(&serde_json::json!({
            "payload_md5": payload_md5, "timestamp": timestamp, "method": method, "uri": uri
        }))
    }

    /// `jwt` with its timestamp moved by `shift` and signed again, if `public_key` verifies
    /// it; every other claim is kept, so a token bound to another body or path, or signed
    /// too long before its request, stays so.
    pub fn refresh(&self, jwt: &str, public_key: &ParsedPublicKey, shift: time::Duration) -> Option<String> {
        let (signing_input, signature) = jwt.rsplit_once('.')?;
        public_key.verify_sig(signing_input.as_bytes(), &URL_SAFE_NO_PAD.decode(signature).ok()?).ok()?;
        let claims = URL_SAFE_NO_PAD.decode(signing_input.split_once('.')?.1).ok()?;
        let mut claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
        let timestamp = claims.get_mut("timestamp")?;
        let signed_at = OffsetDateTime::parse(timestamp.as_str()?, &Rfc3339).ok()?;
        *timestamp = serde_json::Value::String((signed_at + shift).format(&Rfc3339).ok()?);
        Some(self.sign_claims(&claims))
    }

    fn sign_claims(&self, claims: &serde_json::Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES512","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let signature = self.key_pair.sign(&SystemRandom::new(), signing_input.as_bytes()).map(|s| s.as_ref().to_vec());
        // Signing with a valid key only fails if the system RNG fails.
        let signature = signature.unwrap_or_default();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}
