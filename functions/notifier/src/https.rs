//! The HTTPS client that delivers to the merchant.
//!
//! It trusts the Mozilla root programme's CAs compiled into the binary
//! (`webpki-root-certs`) rather than reading the system store at start-up. Reading and
//! parsing the system store costs a few milliseconds of every cold start; the AWS SDK
//! clients already pay it once, and a second read put the notifier's init over its budget
//! (see BENCHMARKS.md). The roots change when the crate is updated and the function
//! rebuilt. Pagstar's client keeps the system store: the same change would put its zipped
//! bootstrap over 5 MB.

/// A `reqwest` client builder that trusts only the compiled-in public roots and never
/// follows redirects (a redirect could carry a signed payload or a token elsewhere).
pub fn merchant_client_builder() -> reqwest::ClientBuilder {
    let roots =
        webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().filter_map(|der| reqwest::Certificate::from_der(der).ok());
    reqwest::Client::builder().tls_certs_only(roots).redirect(reqwest::redirect::Policy::none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compiled_in_root_is_usable() {
        let usable = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .filter(|der| reqwest::Certificate::from_der(der).is_ok())
            .count();
        assert!(usable > 100, "only {usable} usable roots");
        assert_eq!(usable, webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
        assert!(merchant_client_builder().build().is_ok());
    }
}
