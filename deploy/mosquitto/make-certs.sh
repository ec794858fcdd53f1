#!/bin/sh
# Make a private CA and a server certificate for Mosquitto's TLS listener.
#
#   deploy/mosquitto/make-certs.sh OUT_DIR HOSTNAME [MORE_NAMES_OR_IPS...]
#
# Writes OUT_DIR/ca.crt (give it to devices and to liftwatch: LIFTWATCH_MQTT_CA_FILE),
# OUT_DIR/ca.key (keep it offline), OUT_DIR/server.crt and OUT_DIR/server.key (the broker's).
# For evaluation and for fleets whose terminals trust a private CA; with a public CA, put its
# certificate and key at the same paths instead. Needs the openssl command line tool.
set -eu

if [ "$#" -lt 2 ]; then
    echo "usage: $0 OUT_DIR HOSTNAME [MORE_NAMES_OR_IPS...]" >&2
    exit 2
fi
out=$1
shift
cn=$1
days=${CERT_DAYS:-825}

san=""
for name in "$@"; do
    case "$name" in
        *[!0-9.]*) entry="DNS:$name" ;;  # anything but digits and dots is a host name
        *) entry="IP:$name" ;;
    esac
    san="${san:+$san,}$entry"
done

mkdir -p "$out"
umask 077
if [ ! -f "$out/ca.key" ]; then
    openssl req -x509 -newkey rsa:3072 -sha256 -nodes -days 3650 \
        -subj "/CN=liftwatch MQTT CA" \
        -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
fi
openssl req -newkey rsa:2048 -sha256 -nodes -subj "/CN=$cn" \
    -keyout "$out/server.key" -out "$out/server.csr" 2>/dev/null
ext="$out/server.ext"
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$san" >"$ext"
openssl x509 -req -in "$out/server.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
    -CAcreateserial -days "$days" -sha256 -extfile "$ext" -out "$out/server.crt" 2>/dev/null
rm -f "$out/server.csr" "$ext" "$out/ca.srl"
chmod 644 "$out/ca.crt" "$out/server.crt"
echo "wrote $out/ca.crt $out/server.crt $out/server.key (SAN: $san)"
