//! A throw-away certificate authority and a server certificate for `127.0.0.1` / `localhost`,
//! in PEM, for a broker's SASL_SSL listener.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// Files written by [`write`].
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The CA certificate clients trust (`ssl.ca.location`).
    pub ca: PathBuf,
    /// Another CA that did not sign the broker's certificate: a client trusting only it must
    /// refuse the broker.
    pub wrong_ca: PathBuf,
    /// The broker's PKCS#8 private key followed by its certificate, as Kafka's PEM keystore
    /// wants it.
    pub server_pem: PathBuf,
}

fn ca(name: &str) -> (CertificateParams, KeyPair) {
    let key = KeyPair::generate().expect("cannot generate a CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params, key)
}

/// Writes `ca.pem`, `wrong-ca.pem` and `server.pem` into `dir`.
pub fn write(dir: &Path) -> TlsFiles {
    let (ca_params, ca_key) = ca("pedidos test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-signed CA");
    let (wrong_params, wrong_key) = ca("pedidos other CA");
    let wrong_cert = wrong_params
        .self_signed(&wrong_key)
        .expect("self-signed CA");

    let server_key = KeyPair::generate().expect("cannot generate a server key");
    // "127.0.0.1" becomes an IP address SAN: librdkafka checks the name it dialled.
    let mut server_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("server certificate parameters");
    server_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let issuer = Issuer::new(ca_params, ca_key);
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .expect("server certificate signed by the CA");

    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        wrong_ca: dir.join("wrong-ca.pem"),
        server_pem: dir.join("server.pem"),
    };
    let write = |path: &Path, contents: String| {
        std::fs::write(path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()))
    };
    write(&files.ca, ca_cert.pem());
    write(&files.wrong_ca, wrong_cert.pem());
    write(
        &files.server_pem,
        format!("{}{}", server_key.serialize_pem(), server_cert.pem()),
    );
    files
}
