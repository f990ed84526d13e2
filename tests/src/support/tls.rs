//! Certificates for TLS tests, made by `rcgen`: a private CA with a server certificate
//! (127.0.0.1, localhost) and a client certificate, and TLS-only servers using them.

use std::path::PathBuf;
use std::sync::OnceLock;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use super::redis_server::{temp_dir, RedisServer, ServerSpec, TlsFiles};

/// A CA with a server certificate (127.0.0.1, localhost) and a client certificate, as
/// PEM text and as files.
pub struct Pki {
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    pub files: TlsFiles,
}

/// A new self-signed CA (another one than [`pki`]'s: a wrong CA).
pub fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "infuse test CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// The test PKI, made once per test binary.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let ca = ca();
        let (server_cert, server_key) = leaf(
            &ca,
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) =
            leaf(&ca, &["infuse-client"], ExtendedKeyUsagePurpose::ClientAuth);
        let dir = temp_dir("tls");
        let write = |name: &str, text: &str| -> PathBuf {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let files = TlsFiles {
            cert: write("server.crt", &server_cert),
            key: write("server.key", &server_key),
            ca: write("ca.crt", &ca.pem()),
            auth_clients: false,
            client_cert: write("client.crt", &client_cert),
            client_key: write("client.key", &client_key),
        };
        Pki {
            ca_pem: ca.pem(),
            client_cert_pem: client_cert,
            client_key_pem: client_key,
            files,
        }
    })
}

/// A TLS-only server with [`pki`]'s certificate; `auth_clients`: mutual TLS required.
pub fn tls_server(auth_clients: bool) -> RedisServer {
    RedisServer::start_with(ServerSpec {
        tls: Some(TlsFiles {
            auth_clients,
            ..pki().files.clone()
        }),
        ..ServerSpec::default()
    })
}
