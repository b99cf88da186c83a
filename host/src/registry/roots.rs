//! The machine's trusted CA certificates (`SSL_CERT_FILE`/`SSL_CERT_DIR`, else the system
//! store), read once per process and handed to every HTTPS client the registry code makes
//! (oci-client's, kiln's own GETs, the scheme probe, token requests), instead of each client
//! reading and parsing the whole store again when it is built. Certificates rustls cannot use
//! are left out, as the platform verifier leaves them out. When none are found, the clients
//! are given none and fall back to their own reading, which reports the missing store.

use std::sync::OnceLock;

/// The system's roots, DER, each one rustls accepts.
fn system() -> &'static [Vec<u8>] {
    static ROOTS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::debug!(%error, "reading the system's CA certificates");
        }
        let mut store = rustls::RootCertStore::empty();
        let roots: Vec<Vec<u8>> = found
            .certs
            .into_iter()
            .filter(|cert| store.add(cert.clone()).is_ok())
            .map(|cert| cert.to_vec())
            .collect();
        tracing::debug!(roots = roots.len(), "system CA certificates read");
        roots
    })
}

/// `builder` trusting the system's roots (plus whatever it is given to merge).
pub(super) fn trust(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    static CERTS: OnceLock<Vec<reqwest::Certificate>> = OnceLock::new();
    let certs = CERTS.get_or_init(|| {
        system()
            .iter()
            .filter_map(|der| reqwest::Certificate::from_der(der).ok())
            .collect()
    });
    match certs.is_empty() {
        true => builder,
        false => builder.tls_certs_only(certs.iter().cloned()),
    }
}

/// The system's roots for an oci-client `ClientConfig::tls_certs_only` (empty: its own).
pub(super) fn for_oci_client() -> Vec<oci_client::client::Certificate> {
    system()
        .iter()
        .map(|der| oci_client::client::Certificate {
            encoding: oci_client::client::CertificateEncoding::Der,
            data: der.clone(),
        })
        .collect()
}
