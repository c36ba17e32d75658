#!/usr/bin/env python3
"""Certificates and a TLS client for tests/peer_identity.rs (Python `cryptography` package).

    python tests/peer_tls.py certs DIR
        Writes, into DIR, two throwaway CAs, each the trust bundle of its own SPIFFE trust
        domain: ca.pem for cluster.local and partner-ca.pem for partner.example; a server
        certificate for 127.0.0.1 and localhost signed by ca.pem's CA (server.pem,
        server-key.pem); and client certificates, each NAME.pem + NAME-key.pem, in the shape
        X.509-SVID requires (basicConstraints CA false, keyUsage digitalSignature only, one
        URI SAN) unless noted:
          search     spiffe://cluster.local/ns/search/sa/api        (cluster CA)
          ops        spiffe://cluster.local/ns/ops/sa/bot           (cluster CA)
          stranger   spiffe://cluster.local/ns/other/sa/x           (cluster CA)
          malformed  spiffe://cluster.local/ns/search/sa/%61pi      (cluster CA; percent-encoded)
          web        https://example.com/ns/search/sa/api           (cluster CA; not SPIFFE)
          nouri      a DNS SAN only                                  (cluster CA)
          partner    spiffe://partner.example/ns/app/sa/client      (partner CA)
          forged     spiffe://cluster.local/ns/search/sa/api        (partner CA: not its domain)
          rogue      spiffe://cluster.local/ns/search/sa/api        (a CA no one trusts)
          twice      spiffe://cluster.local/ns/ops/sa/bot, then
                     spiffe://cluster.local/ns/search/sa/api        (cluster CA; two URI SANs)
          twice-partner
                     spiffe://partner.example/ns/app/sa/client, then
                     spiffe://cluster.local/ns/search/sa/api        (partner CA; two URI SANs)
          twice-forged
                     spiffe://cluster.local/ns/search/sa/api, then
                     spiffe://partner.example/ns/app/sa/client      (partner CA; two URI SANs)
        Prints one JSON line: {NAME: [its URI SANs, in order]}.

    python tests/peer_tls.py request PORT CA CERT KEY REQUESTS_JSON
        Sends each request of REQUESTS_JSON ([{"method", "path", "headers": [[k, v]],
        "body"}]) over its own TLS connection to 127.0.0.1:PORT, trusting CA, presenting
        CERT/KEY ("-" for no client certificate). Prints one JSON line per request:
        {"status", "headers": [[k, v]], "body"} or {"error": "..."} when the connection failed
        (a refused handshake).
"""

import datetime
import http.client
import json
import ssl
import sys
from pathlib import Path

SEARCH = "spiffe://cluster.local/ns/search/sa/api"
OPS = "spiffe://cluster.local/ns/ops/sa/bot"
PARTNER = "spiffe://partner.example/ns/app/sa/client"

# Each client: (issuing CA, URI SANs in order). An empty list gets a DNS SAN instead.
CLIENTS = {
    "search": ("cluster", [SEARCH]),
    "ops": ("cluster", [OPS]),
    "stranger": ("cluster", ["spiffe://cluster.local/ns/other/sa/x"]),
    "malformed": ("cluster", ["spiffe://cluster.local/ns/search/sa/%61pi"]),
    "web": ("cluster", ["https://example.com/ns/search/sa/api"]),
    "nouri": ("cluster", []),
    "partner": ("partner", [PARTNER]),
    "forged": ("partner", [SEARCH]),
    "rogue": ("rogue", [SEARCH]),
    "twice": ("cluster", [OPS, SEARCH]),
    "twice-partner": ("partner", [PARTNER, SEARCH]),
    "twice-forged": ("partner", [SEARCH, PARTNER]),
}


def certs(out: Path) -> None:
    # Imported here: the client below runs with the standard library alone.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(key, path: Path) -> None:
        path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ))

    def ca(common: str):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(name(common))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256())
        )
        return key, cert

    def leaf(issuer_key, issuer, common: str, sans, usage):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(issuer.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            # Envoy's SPIFFE validator refuses a leaf whose keyUsage is absent or allows
            # signing certificates or CRLs (X.509-SVID, leaf validation).
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, builder.sign(issuer_key, hashes.SHA256())

    def pem(cert) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    out.mkdir(parents=True, exist_ok=True)
    authorities = {
        "cluster": ca("cluster.local test CA"),
        "partner": ca("partner.example test CA"),
        "rogue": ca("untrusted CA"),
    }
    (out / "ca.pem").write_bytes(pem(authorities["cluster"][1]))
    (out / "partner-ca.pem").write_bytes(pem(authorities["partner"][1]))
    ca_key, ca_cert = authorities["cluster"]
    server_key, server_cert = leaf(
        ca_key, ca_cert, "gateway",
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        ExtendedKeyUsageOID.SERVER_AUTH)
    (out / "server.pem").write_bytes(pem(server_cert))
    write_key(server_key, out / "server-key.pem")
    for client, (authority, uris) in CLIENTS.items():
        issuer_key, issuer = authorities[authority]
        sans = ([x509.UniformResourceIdentifier(uri) for uri in uris]
                or [x509.DNSName(f"{client}.test")])
        key, cert = leaf(issuer_key, issuer, client, sans, ExtendedKeyUsageOID.CLIENT_AUTH)
        (out / f"{client}.pem").write_bytes(pem(cert))
        write_key(key, out / f"{client}-key.pem")
    print(json.dumps({client: uris for client, (_, uris) in CLIENTS.items()}), flush=True)


def request(port: int, ca: str, cert: str, key: str, requests: list) -> None:
    context = ssl.create_default_context(cafile=ca)
    if cert != "-":
        context.load_cert_chain(cert, key)
    for one in requests:
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=20)
        try:
            connection.putrequest(one["method"], one["path"], skip_accept_encoding=True)
            body = one.get("body", "").encode()
            for header, value in one.get("headers", []):
                connection.putheader(header, value)
            connection.putheader("content-length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            outcome = {
                "status": response.status,
                "headers": [[k.lower(), v] for k, v in response.getheaders()],
                "body": response.read().decode("utf-8", "replace"),
            }
        except (OSError, http.client.HTTPException) as e:
            outcome = {"error": f"{type(e).__name__}: {e}"}
        finally:
            connection.close()
        print(json.dumps(outcome), flush=True)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "certs":
        certs(Path(sys.argv[2]))
        return 0
    if len(sys.argv) == 7 and sys.argv[1] == "request":
        _, _, port, ca, cert, key, requests = sys.argv
        request(int(port), ca, cert, key, json.loads(requests))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
