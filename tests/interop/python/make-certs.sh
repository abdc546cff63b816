#!/usr/bin/env bash
# Test certificates for the Python TLS interop (run-python.sh), made with openssl:
#
#   make-certs.sh DIR
#
# DIR/ca.pem            a CA, which signs:
# DIR/server.{pem,key}  the broker's certificate, for 127.0.0.1 and localhost
# DIR/client.{pem,key}  a client certificate with CN=guest (EXTERNAL logs in as guest)
# DIR/stranger.{pem,key} a client certificate from another CA, which the broker does not
#                       trust (DIR/stranger-ca.pem)
#
# EC P-256 keys, valid for two days. openssl's output goes to DIR/openssl.log.
set -euo pipefail
dir="$1"
mkdir -p "$dir"
cd "$dir"
exec 3>&2 2>openssl.log

newkey=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)

# ca NAME CN: a self-signed CA in NAME.pem / NAME.key
ca() {
    openssl req -x509 "${newkey[@]}" -days 2 -subj "/CN=$2" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
        -keyout "$1.key" -out "$1.pem"
}

# leaf NAME CA CN EXTENSIONS: NAME.pem / NAME.key, signed by CA
leaf() {
    openssl req "${newkey[@]}" -subj "/CN=$3" -keyout "$1.key" -out "$1.csr"
    printf '%b' "basicConstraints=CA:FALSE\n$4\n" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days 2 \
        -extfile "$1.ext" -out "$1.pem"
    rm -f "$1.csr" "$1.ext"
}

ca ca "fedamq interop CA" >&2
leaf server ca 127.0.0.1 \
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth' >&2
leaf client ca guest 'extendedKeyUsage=clientAuth' >&2
ca stranger-ca "not the broker's CA" >&2
leaf stranger stranger-ca guest 'extendedKeyUsage=clientAuth' >&2
exec 2>&3
