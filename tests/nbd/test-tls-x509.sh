#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: NBD over TLS with X.509 certificates (--tls-creds): nbdinfo, nbdcopy and qemu-img over nbds+unix:// and nbds:// round-trip data; plain clients learn nothing; --tls-verify-peer takes only clients the CA signed; a key file others can read is refused at start.
. "$(dirname "$0")/functions.sh"
requires nbdinfo --version
requires nbdcopy --version
requires python3 --version

new_tmpdir
pki=$tmpdir
x509_creds "$pki"
d=$tmpdir
random_file "$d/in.img" 64M

start_pitcopy --tls-creds "$pki/server"
grep -q "TLS required: X.509 certificate $pki/server/server-cert.pem (CN=localhost" \
    "$_pitcopy_log" || fail "the start-up log does not describe the certificate"
must pc volume create v1 --size 64M
must pc volume create v2 --size 64M
tls_uri() { echo "nbds+unix:///$1?socket=$sock&tls-certificates=$2"; }

# A client that checks the server against the CA.
info=$(nbdinfo "$(tls_uri v1 "$pki/client")") || fail "nbdinfo over TLS"
echo "$info"
grep -q "protocol: newstyle-fixed with TLS" <<<"$info" || fail "nbdinfo: no TLS"
grep -q "export-size: $((64 << 20))" <<<"$info" || fail "nbdinfo: size"
nbdinfo --list "$(tls_uri "" "$pki/client")" | grep -q 'export="v2"' || fail "nbdinfo --list"
grep -q "connection 1: TLS (TLS1.[23])" "$_pitcopy_log" || fail "no TLS session in the log"

# Data round-trips, one connection and four.
must nbdcopy "$d/in.img" "$(tls_uri v1 "$pki/client")"
must nbdcopy "$(tls_uri v1 "$pki/client")" "$d/out1.img"
must cmp "$d/in.img" "$d/out1.img"
must nbdcopy --connections=4 --requests=16 --request-size=$((32 << 20)) \
    "$(tls_uri v1 "$pki/client")" "$(tls_uri v2 "$pki/client")"
must nbdcopy --connections=4 "$(tls_uri v2 "$pki/client")" "$d/out2.img"
must cmp "$d/in.img" "$d/out2.img"

# qemu's NBD client, with its own TLS object.
if qemu-img --version >/dev/null 2>&1; then
    q=(--object "tls-creds-x509,id=tls0,dir=$pki/client,endpoint=client" --image-opts
       "driver=nbd,server.type=unix,server.path=$sock,export=v2,tls-creds=tls0,tls-hostname=localhost")
    qemu-img info "${q[@]}" | grep -q "virtual size: 64 MiB" || fail "qemu-img info over TLS"
    must qemu-img compare "${q[@]}" "driver=raw,file.driver=file,file.filename=$d/in.img"
else
    echo "qemu-img missing: its part skipped"
fi

# Without TLS a client learns nothing, not even the export names.  libnbd
# reports "Operation not supported"; its debug output has the server's why.
if out=$(LIBNBD_DEBUG=1 nbdinfo "$(uri v1)" 2>&1); then fail "a plain client was served"; fi
grep -q "server error message: NBD_OPT_.*: this server requires TLS: send NBD_OPT_STARTTLS first" \
    <<<"$out" || { echo "$out"; fail "the refusal does not say TLS is required"; }
if nbdinfo --list "$(uri "")" > "$d/list" 2>&1; then fail "exports listed without TLS"; fi
! grep -q 'export="v1"' "$d/list" || fail "an export name leaked without TLS"
grep -q "refused: the client did not start TLS, which this server requires" "$_pitcopy_log" ||
    fail "the server log does not say why the plain client was refused"
[ "$(nbdinfo --size "$(tls_uri v1 "$pki/client")")" = $((64 << 20)) ] || fail "server unwell"
stop_pitcopy || fail "pitcopy serve did not stop cleanly"

# TCP on every address, which TLS makes allowed; nbds:// checks the name.
port=$(free_port)
start_pitcopy --tls-creds "$pki/server" --nbd "tcp:0.0.0.0:$port"
must pc volume create v1 --size 64M
must nbdcopy "$d/in.img" "nbds://localhost:$port/v1?tls-certificates=$pki/client"
must nbdcopy "nbds://127.0.0.1:$port/v1?tls-certificates=$pki/client" "$d/out3.img"
must cmp "$d/in.img" "$d/out3.img"
if nbdinfo --size "nbd://127.0.0.1:$port/v1" >/dev/null 2>&1; then
    fail "plain NBD served on 0.0.0.0"
fi
# Over TCP libnbd checks the server: one that trusts another CA refuses it.
if nbdinfo --size "nbds://localhost:$port/v1?tls-certificates=$pki/rogue-cert" >/dev/null 2>&1
then
    fail "a client trusting another CA accepted the server"
fi
stop_pitcopy || fail "pitcopy serve did not stop cleanly"

# Client certificates: only those the CA signed.
start_pitcopy --tls-creds "$pki/server" --tls-verify-peer
must pc volume create v1 --size 4M
[ "$(nbdinfo --size "$(tls_uri v1 "$pki/client-cert")")" = $((4 << 20)) ] ||
    fail "a client with a certificate from the CA was refused"
grep -q "client certificate CN=pitcopy test client" "$_pitcopy_log" ||
    fail "the log does not name the client certificate"
if nbdinfo --size "$(tls_uri v1 "$pki/client")" >/dev/null 2>&1; then
    fail "a client without a certificate was served"
fi
# A client certificate from another CA (trusting ours too, so the client
# goes on: GnuTLS then keeps a certificate our CA list does not cover).
mkdir "$d/mixed" && cp "$pki/rogue-cert/"client-*.pem "$d/mixed/" &&
    cat "$pki/ca/ca-cert.pem" "$pki/rogue/ca-cert.pem" > "$d/mixed/ca-cert.pem" || fail "mixed"
if nbdinfo --size "$(tls_uri v1 "$d/mixed")" >/dev/null 2>&1; then
    fail "a client certificate from another CA was accepted"
fi
[ "$(grep -c "closed (export none, 0 requests, 0 errors): TLS handshake failed: " \
    "$_pitcopy_log")" = 2 ] || fail "the log does not say why the clients were refused"
stop_pitcopy || fail "pitcopy serve did not stop cleanly"

# A private key others may read is refused, naming the file, not its bytes.
chmod 0640 "$pki/server/server-key.pem"
expect_refused --tls-creds "$pki/server"
grep -q "TLS private key $pki/server/server-key.pem is accessible to group or others (mode 0640); refusing to use it: chmod 600" \
    <<<"$refusal" || fail "the refusal does not say what is wrong with the key file"
! grep -q "PRIVATE KEY\|$(sed -n 2p "$pki/server/server-key.pem" | cut -c1-20)" <<<"$refusal" ||
    fail "key material in the error"
chmod 0600 "$pki/server/server-key.pem"
# A certificate that is not the key's.
cp "$pki/client-cert/client-cert.pem" "$pki/server/server-cert.pem"
expect_refused --tls-creds "$pki/server"
grep -q "TLS server certificate $pki/server/server-cert.pem with private key $pki/server/server-key.pem: " \
    <<<"$refusal" || fail "a certificate that is not the key's was not refused"
exit 0
