//! The client's TLS: rustls with ring, and the system's roots (`SSL_CERT_FILE` and
//! `SSL_CERT_DIR` honoured) loaded once, at the first `https` handshake. Plain `http` (a
//! health check on localhost, the hook's trigger to an agent, a loopback artifact server)
//! never pays for parsing the CA bundle (tens of milliseconds, and memory the agent keeps).

use std::sync::{Arc, OnceLock};

use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// Makes ring rustls' provider for the process (the first call does; reqwest, in oci-client,
/// takes the process's provider too).
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client configuration whose roots are loaded on first use.
pub fn client_config() -> rustls::ClientConfig {
    install_crypto();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(LazyRoots::new(provider, native_roots)))
        .with_no_client_auth()
}

/// Root certificates, and what went wrong finding some of them.
type Found = (Vec<CertificateDer<'static>>, Vec<String>);

/// The system's roots, as OpenSSL finds them.
fn native_roots() -> Found {
    let found = rustls_native_certs::load_native_certs();
    (
        found.certs,
        found.errors.iter().map(|e| e.to_string()).collect(),
    )
}

/// webpki's verifier over the roots `load` finds, built when a certificate is first verified.
struct LazyRoots {
    provider: Arc<CryptoProvider>,
    load: fn() -> Found,
    verifier: OnceLock<Result<Arc<WebPkiServerVerifier>, rustls::Error>>,
}

impl std::fmt::Debug for LazyRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyRoots")
            .field("loaded", &self.verifier.get().is_some())
            .finish()
    }
}

impl LazyRoots {
    fn new(provider: Arc<CryptoProvider>, load: fn() -> Found) -> LazyRoots {
        LazyRoots {
            provider,
            load,
            verifier: OnceLock::new(),
        }
    }

    fn verifier(&self) -> Result<&Arc<WebPkiServerVerifier>, rustls::Error> {
        self.verifier
            .get_or_init(|| {
                let (certs, errors) = (self.load)();
                let mut roots = rustls::RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(certs);
                tracing::debug!(added, errors = errors.len(), "TLS roots loaded");
                if added == 0 {
                    return Err(rustls::Error::General(format!(
                        "no TLS roots: no root CA certificate found (set SSL_CERT_FILE){}",
                        errors.first().map(|e| format!(": {e}")).unwrap_or_default()
                    )));
                }
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                    .build()
                    .map_err(|e| rustls::Error::General(format!("no TLS roots: {e}")))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl ServerCertVerifier for LazyRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use std::path::PathBuf;

    static CA: OnceLock<PathBuf> = OnceLock::new();

    fn test_ca() -> Found {
        let path = CA.get().expect("the test's CA");
        (
            vec![CertificateDer::from_pem_file(path).unwrap()],
            Vec::new(),
        )
    }

    fn nothing() -> Found {
        (Vec::new(), vec!["no such file".to_owned()])
    }

    /// A test CA (`ca.pem`) and a certificate it signed for `san` (`server.pem`, `server.key`)
    /// in `dir`, made by the openssl command.
    pub(crate) fn make_certs(dir: &std::path::Path, san: &str) {
        std::fs::write(dir.join("san.ext"), format!("subjectAltName={san}\n")).unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let ca = [
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ];
        let csr = [
            &["req"][..],
            &ec,
            &["-keyout", "server.key", "-out", "server.csr"],
        ];
        let sign = "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
                    -out server.pem -days 2 -extfile san.ext";
        let sign: Vec<&str> = sign.split_whitespace().collect();
        for args in [
            [
                ca.concat(),
                vec!["-days", "2", "-subj", "/CN=ferry test CA"],
            ]
            .concat(),
            [csr.concat(), vec!["-subj", "/CN=ferry test server"]].concat(),
            sign,
        ] {
            let output = std::process::Command::new("openssl")
                .args(&args)
                .current_dir(dir)
                .output()
                .expect("openssl (installed by .ci/run)");
            assert!(output.status.success(), "openssl {args:?}: {output:?}");
        }
    }

    /// Nothing is loaded until a certificate is verified; then the roots decide.
    #[test]
    fn roots_are_loaded_at_the_first_certificate_and_decide() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        make_certs(path, "DNS:r.example");
        CA.set(path.join("ca.pem")).unwrap();
        let server = CertificateDer::from_pem_file(path.join("server.pem")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let name = ServerName::try_from("r.example").unwrap();
        let now = UnixTime::now();

        let lazy = LazyRoots::new(provider.clone(), test_ca);
        assert!(!lazy.supported_verify_schemes().is_empty());
        assert!(lazy.verifier.get().is_none(), "nothing loaded yet");
        lazy.verify_server_cert(&server, &[], &name, &[], now)
            .expect("signed by the roots");
        assert!(lazy.verifier.get().is_some());
        let other = ServerName::try_from("s.example").unwrap();
        let err = lazy
            .verify_server_cert(&server, &[], &other, &[], now)
            .unwrap_err();
        assert!(err.to_string().contains("not valid for name"), "{err}");

        let empty = LazyRoots::new(provider, nothing);
        let err = empty
            .verify_server_cert(&server, &[], &name, &[], now)
            .unwrap_err();
        assert!(err.to_string().contains("no TLS roots"), "{err}");
        // The client's own: built without touching the system's roots.
        assert!(client_config().alpn_protocols.is_empty());
    }
}
