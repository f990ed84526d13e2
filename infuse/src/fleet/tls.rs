//! TLS to Redis: the certificates a `rediss://` connection uses, checked at `init` with
//! errors naming the argument to fix, and the process's rustls crypto provider.

use redis::{ConnectionAddr, ConnectionInfo};

use super::options::TlsMaterial;
use crate::core::InitError;

#[cfg(feature = "tls")]
pub(super) type Certificates = redis::TlsCertificates;
#[cfg(not(feature = "tls"))]
pub(super) type Certificates = ();

/// The TLS certificates to connect with, checked; `None` without TLS material. Any TLS
/// use needs the process's crypto provider (see [`crypto_provider`]).
pub(super) fn tls_in_use(
    infos: &[ConnectionInfo],
    material: &TlsMaterial,
) -> Result<Option<Certificates>, InitError> {
    let wants_tls = infos
        .iter()
        .any(|info| matches!(info.addr(), ConnectionAddr::TcpTls { .. }));
    let invalid = |origin: &str, reason: &str| InitError::InvalidSetting {
        origin: origin.to_owned(),
        reason: reason.to_owned(),
    };
    if !material.is_empty() && !wants_tls {
        let origin = if material.root_cert.is_some() {
            "Config::tls_root_cert"
        } else {
            "Config::tls_client_cert"
        };
        return Err(invalid(
            origin,
            "TLS certificates are set but the Redis URLs use plain TCP (`redis://`); use `rediss://` URLs for TLS",
        ));
    }
    #[cfg(not(feature = "tls"))]
    {
        if wants_tls {
            return Err(invalid(
                "Config::redis",
                "a `rediss://` URL needs TLS, which this build of infuse leaves out: enable the `tls` feature of the infuse crate (on by default)",
            ));
        }
        Ok(None)
    }
    #[cfg(feature = "tls")]
    {
        if !wants_tls {
            return Ok(None);
        }
        crypto_provider();
        check_pem(material)?;
        if material.is_empty() {
            return Ok(None);
        }
        Ok(Some(redis::TlsCertificates {
            client_tls: material
                .client_cert
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: material.root_cert.clone(),
        }))
    }
}

/// Makes sure the process has a rustls crypto provider, which redis builds its TLS
/// configurations on: the one the application installed, else *ring* (which this crate
/// enables), installed now as the process's default.
///
/// `rustls::crypto::ring::default_provider` is deprecated since rustls 0.23.48 (no
/// post-quantum key exchange), yet it is the only way to name *ring*: rustls itself
/// calls it, under the same `allow`, when *ring* is the one provider compiled in. Asking
/// rustls to choose instead would panic when another crate also enables `aws-lc-rs`
/// (reqwest's default), breaking `init` for a common application; an application that
/// wants another provider installs it in `main`, before `init`, and infuse uses it.
#[cfg(feature = "tls")]
fn crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        #[allow(deprecated)]
        let ring = rustls::crypto::ring::default_provider();
        // Another thread may have installed one meanwhile: then that one is used.
        let _ = ring.install_default();
    }
}

/// Each PEM argument parses (naming the argument that does not, and what to pass).
#[cfg(feature = "tls")]
fn check_pem(material: &TlsMaterial) -> Result<(), InitError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let invalid = |origin: &str, reason: String| InitError::InvalidSetting {
        origin: origin.to_owned(),
        reason,
    };
    let certificates = |pem: &[u8]| -> Result<Vec<CertificateDer<'static>>, String> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        if certs.is_empty() {
            return Err("no `-----BEGIN CERTIFICATE-----` block found".to_owned());
        }
        Ok(certs)
    };
    if let Some(pem) = &material.root_cert {
        let certs = certificates(pem).map_err(|e| invalid("Config::tls_root_cert", format!("the CA certificate does not parse ({e}); pass the PEM text of the CA that signed the servers' certificates (e.g. the contents of ca.crt)")))?;
        let mut roots = rustls::RootCertStore::empty();
        let (_, rejected) = roots.add_parsable_certificates(certs);
        if rejected > 0 {
            return Err(invalid("Config::tls_root_cert", "a certificate in it is not a usable trust anchor; pass the PEM text of the CA that signed the servers' certificates".to_owned()));
        }
    }
    if let Some((cert, key)) = &material.client_cert {
        certificates(cert).map_err(|e| invalid("Config::tls_client_cert", format!("the client certificate (first argument) does not parse ({e}); pass the PEM text of the client's certificate chain")))?;
        PrivateKeyDer::from_pem_slice(key).map_err(|_| invalid("Config::tls_client_cert", "the private key (second argument) does not parse; pass the PEM text of the client certificate's private key (`-----BEGIN PRIVATE KEY-----`, PKCS#8, PKCS#1 or SEC1)".to_owned()))?;
    }
    Ok(())
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    /// With only the provider this crate's features name (*ring*), TLS use installs it
    /// as the process's default: what redis builds its TLS configurations on.
    #[test]
    fn tls_use_leaves_the_process_a_crypto_provider() {
        super::crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
