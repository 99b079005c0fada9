#!/usr/bin/env bash
# strata-pki.sh — issue the certificates of a Strata federation with the openssl CLI.
#
# Roles are encoded in the certificate subject: O=Strata, OU=<role>, CN=<id>,
# role ∈ {agent, admin, viewer, coordinator}. Keys are EC P-256, private keys mode 0600.
# Revocation: 'revoke' records a certificate in DIR/crl/ (an 'openssl ca' index) and rewrites DIR/crl.pem.
set -euo pipefail

PROG=$(basename "$0")
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
DIR="$SCRIPT_DIR/out"
DAYS=""
FORCE=0
OPENSSL=${OPENSSL:-openssl}

usage() {
    cat <<USAGE
Usage: $PROG [--dir DIR] [--days N] [--force] COMMAND [ARGS]

Issue the certificates of a Strata federation (TLS 1.3, mutual authentication).

Commands:
  ca                                   Create DIR/ca.crt and DIR/ca.key (kept if already present).
  coordinator [--name CN] [--san NAME_OR_IP ...]
                                       Create DIR/coordinator.crt/.key (CN default "coordinator").
                                       The SAN always includes localhost, 127.0.0.1 and ::1; add
                                       more with --san (repeatable, or several values after it).
  agent ID [ID ...]                    Create DIR/agents/ID.crt/.key for each agent ID.
  admin ID [ID ...]                    Create DIR/admins/ID.crt/.key for each admin ID.
  viewer ID [ID ...]                   Create DIR/viewers/ID.crt/.key: read-only admin (OU=viewer), may
                                       use every read route of the admin API, gets 403 on actions.
  revoke NAME|FILE.crt [--reason R]    Revoke a certificate (NAME is looked up in agents/, admins/,
                                       viewers/) and rewrite DIR/crl.pem. R: unspecified (default),
                                       keyCompromise, affiliationChanged, superseded, cessationOfOperation.
                                       A coordinator started with --crl DIR/crl.pem picks it up within
                                       seconds (or at once on SIGHUP) and refuses the certificate from then on.
  crl                                  (Re)write DIR/crl.pem, empty if nothing was revoked, valid for
                                       --days (default 365); run it again before it expires.
  dev [--agents N]                     ca + coordinator + admin "operator" + agents agent-01..agent-NN
                                       (default N=3). Existing files are kept.

Options:
  --dir DIR     Output directory (default: $SCRIPT_DIR/out, git-ignored).
  --days N      Validity in days (default 825 for leaf certificates, 3650 for the CA, 365 for the CRL).
  --force       Re-issue a leaf certificate that already exists (never replaces the CA).
  -h, --help    Show this help.

Certificates: subject O=Strata, OU=<role>, CN=<id>, role in {agent, admin, viewer, coordinator}.
Extended key usage: clientAuth for agent/admin/viewer; serverAuth+clientAuth for the coordinator.
IDs: 1-64 characters from [A-Za-z0-9._-], starting with a letter or digit. Strata's TLS layer accepts
exactly these (as UTF8String or PrintableString) and refuses any other CN at the handshake.
Every certificate issued is checked with 'openssl verify' (purpose sslclient/sslserver).

Examples:
  $PROG dev --agents 5
  $PROG --dir /etc/strata/pki ca
  $PROG --dir /etc/strata/pki coordinator --name coord-1 --san coord.example.org --san 10.0.0.5
  $PROG --dir /etc/strata/pki agent hospital-a hospital-b
  $PROG --dir /etc/strata/pki revoke hospital-b --reason keyCompromise
USAGE
}

die() { echo "$PROG: error: $*" >&2; exit 1; }
note() { echo "$PROG: $*" >&2; }

command -v "$OPENSSL" >/dev/null 2>&1 || die "the openssl command-line tool was not found (install the 'openssl' package)"

# ---- argument parsing -------------------------------------------------------
CMD=""
ARGS=()
NAME=""
SANS=()
AGENTS=3
REASON=unspecified
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --dir) [[ $# -ge 2 ]] || die "--dir needs a directory"; DIR=$2; shift 2 ;;
        --dir=*) DIR=${1#--dir=}; shift ;;
        --days) [[ $# -ge 2 ]] || die "--days needs a number"; DAYS=$2; shift 2 ;;
        --days=*) DAYS=${1#--days=}; shift ;;
        --force) FORCE=1; shift ;;
        --name) [[ $# -ge 2 ]] || die "--name needs a value"; NAME=$2; shift 2 ;;
        --name=*) NAME=${1#--name=}; shift ;;
        --san) [[ $# -ge 2 ]] || die "--san needs a DNS name or IP address"
               shift
               # --san takes one or more values, up to the next option
               while [[ $# -gt 0 && $1 != -* ]]; do SANS+=("$1"); shift; done ;;
        --san=*) SANS+=("${1#--san=}"); shift ;;
        --agents) [[ $# -ge 2 ]] || die "--agents needs a number"; AGENTS=$2; shift 2 ;;
        --agents=*) AGENTS=${1#--agents=}; shift ;;
        --reason) [[ $# -ge 2 ]] || die "--reason needs a value"; REASON=$2; shift 2 ;;
        --reason=*) REASON=${1#--reason=}; shift ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *) if [[ -z $CMD ]]; then CMD=$1; else ARGS+=("$1"); fi; shift ;;
    esac
done

[[ -n $CMD ]] || { usage >&2; exit 2; }
if [[ -n $DAYS && ! $DAYS =~ ^[1-9][0-9]*$ ]]; then die "--days must be a positive integer, got '$DAYS'"; fi
[[ $AGENTS =~ ^[0-9]+$ ]] || die "--agents must be a non-negative integer, got '$AGENTS'"

CA_CRT="$DIR/ca.crt"
CA_KEY="$DIR/ca.key"

validate_id() {
    local id=$1 what=$2
    [[ $id =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] ||
        die "invalid $what id '$id': use 1-64 characters from [A-Za-z0-9._-], starting with a letter or digit"
}

new_key() { # path
    local key=$1
    ( umask 077; "$OPENSSL" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -pkeyopt ec_param_enc:named_curve -out "$key" 2>/dev/null ) || die "could not create private key $key"
    chmod 600 "$key"
}

TMP=""
cleanup() { if [[ -n $TMP && -d $TMP ]]; then rm -rf "$TMP"; fi; }
trap cleanup EXIT
tmpdir() { [[ -n $TMP ]] || TMP=$(mktemp -d "${TMPDIR:-/tmp}/strata-pki.XXXXXX"); }

require_ca() {
    [[ -f $CA_CRT && -f $CA_KEY ]] || die "no CA in $DIR: run '$PROG --dir $DIR ca' first"
}

cmd_ca() {
    mkdir -p "$DIR"
    if [[ -f $CA_CRT && -f $CA_KEY ]]; then
        note "CA already present in $DIR, keeping it ($CA_CRT)"
        return 0
    fi
    [[ -f $CA_CRT || -f $CA_KEY ]] && die "$DIR has only one of ca.crt/ca.key; move it away or restore the other"
    tmpdir
    cat >"$TMP/ca.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
[dn]
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
CNF
    new_key "$CA_KEY"
    "$OPENSSL" req -new -x509 -config "$TMP/ca.cnf" -extensions v3_ca -key "$CA_KEY" \
        -subj "/O=Strata/OU=ca/CN=Strata Federation CA" -days "${DAYS:-3650}" -sha256 \
        -set_serial "0x$("$OPENSSL" rand -hex 16)" -out "$CA_CRT" 2>"$TMP/err" ||
        { rm -f "$CA_KEY"; die "could not create the CA certificate: $(cat "$TMP/err")"; }
    chmod 644 "$CA_CRT"
    note "created CA $CA_CRT"
}

# issue ROLE ID CRT KEY [SAN...]
issue() {
    local role=$1 id=$2 crt=$3 key=$4; shift 4
    local sans=("$@")
    require_ca
    if [[ -f $crt && $FORCE -eq 0 ]]; then
        note "$crt already exists, keeping it (use --force to re-issue)"
        return 0
    fi
    mkdir -p "$(dirname "$crt")"
    tmpdir
    local eku purpose
    case $role in
        coordinator) eku="serverAuth, clientAuth"; purpose=sslserver ;;
        *) eku="clientAuth"; purpose=sslclient ;;
    esac
    {
        echo "basicConstraints = critical, CA:FALSE"
        echo "keyUsage = critical, digitalSignature"
        echo "extendedKeyUsage = $eku"
        echo "subjectKeyIdentifier = hash"
        echo "authorityKeyIdentifier = keyid, issuer"
        if [[ ${#sans[@]} -gt 0 ]]; then
            local list="" s
            for s in "${sans[@]}"; do
                if [[ $s =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ || $s == *:* ]]; then
                    list+="${list:+, }IP:$s"
                else
                    list+="${list:+, }DNS:$s"
                fi
            done
            echo "subjectAltName = $list"
        fi
    } >"$TMP/ext.cnf"
    new_key "$key.new"
    "$OPENSSL" req -new -key "$key.new" -subj "/O=Strata/OU=$role/CN=$id" -out "$TMP/req.csr" 2>"$TMP/err" ||
        { rm -f "$key.new"; die "could not create the request for $role '$id': $(cat "$TMP/err")"; }
    "$OPENSSL" x509 -req -in "$TMP/req.csr" -CA "$CA_CRT" -CAkey "$CA_KEY" \
        -set_serial "0x$("$OPENSSL" rand -hex 16)" -days "${DAYS:-825}" -sha256 \
        -extfile "$TMP/ext.cnf" -out "$crt.new" 2>"$TMP/err" ||
        { rm -f "$key.new" "$crt.new"; die "could not sign the certificate of $role '$id': $(cat "$TMP/err")"; }
    if ! "$OPENSSL" verify -CAfile "$CA_CRT" -purpose "$purpose" "$crt.new" >"$TMP/err" 2>&1; then
        rm -f "$key.new" "$crt.new"
        die "the new certificate of $role '$id' does not verify against $CA_CRT: $(cat "$TMP/err")"
    fi
    mv -f "$key.new" "$key"
    mv -f "$crt.new" "$crt"
    chmod 644 "$crt"
    note "created $role certificate $crt (CN=$id)"
}

cmd_coordinator() {
    [[ ${#ARGS[@]} -eq 0 ]] || SANS+=("${ARGS[@]}")
    local cn=${NAME:-coordinator}
    validate_id "$cn" coordinator
    local all=(localhost 127.0.0.1 ::1) s t seen
    for s in "$cn" "${SANS[@]}"; do
        [[ -n $s ]] || continue
        [[ $s =~ ^[A-Za-z0-9*:.-]+$ ]] || die "invalid --san value '$s'"
        seen=0
        for t in "${all[@]}"; do [[ $t == "$s" ]] && seen=1; done
        [[ $seen -eq 1 ]] || all+=("$s")
    done
    issue coordinator "$cn" "$DIR/coordinator.crt" "$DIR/coordinator.key" "${all[@]}"
}

cmd_leaves() { # role subdir
    local role=$1 sub=$2 id
    [[ ${#ARGS[@]} -gt 0 ]] || die "'$role' needs at least one ID (e.g. '$PROG $role ${role}-01')"
    for id in "${ARGS[@]}"; do validate_id "$id" "$role"; done
    require_ca
    for id in "${ARGS[@]}"; do issue "$role" "$id" "$DIR/$sub/$id.crt" "$DIR/$sub/$id.key"; done
}

cmd_dev() {
    [[ ${#ARGS[@]} -eq 0 ]] || die "'dev' takes no arguments (use --agents N)"
    local days=$DAYS
    DAYS=""; cmd_ca; DAYS=$days
    cmd_coordinator
    ARGS=(operator); cmd_leaves admin admins
    local i ids=()
    for ((i = 1; i <= AGENTS; i++)); do ids+=("$(printf 'agent-%02d' "$i")"); done
    if [[ ${#ids[@]} -gt 0 ]]; then ARGS=("${ids[@]}"); cmd_leaves agent agents; fi
    note "development PKI ready in $DIR"
}

# ---- revocation ----------------------------------------------------------------
CRL_DIR="$DIR/crl"
CRL_FILE="$DIR/crl.pem"

# A minimal 'openssl ca' configuration: only its revocation database is used (certificates are issued
# with 'openssl x509' above; 'openssl ca -revoke' adds the ones it has not seen).
crl_config() {
    mkdir -p "$CRL_DIR"
    [[ -f $CRL_DIR/index.txt ]] || : >"$CRL_DIR/index.txt"
    [[ -f $CRL_DIR/crlnumber ]] || echo 1000 >"$CRL_DIR/crlnumber"
    cat >"$CRL_DIR/ca.cnf" <<CNF
[ca]
default_ca = strata_ca
[strata_ca]
database = $CRL_DIR/index.txt
crlnumber = $CRL_DIR/crlnumber
certificate = $CA_CRT
private_key = $CA_KEY
default_md = sha256
default_crl_days = ${DAYS:-365}
unique_subject = no
crl_extensions = crl_ext
[crl_ext]
authorityKeyIdentifier = keyid:always
CNF
}

# Writes DIR/crl.pem atomically (a reader polling the file never sees half of it).
cmd_crl() {
    require_ca
    crl_config
    tmpdir
    "$OPENSSL" ca -batch -config "$CRL_DIR/ca.cnf" -gencrl -out "$CRL_DIR/crl.pem.new" 2>"$TMP/err" ||
        die "could not write the CRL: $(cat "$TMP/err")"
    "$OPENSSL" crl -in "$CRL_DIR/crl.pem.new" -CAfile "$CA_CRT" -noout 2>"$TMP/err" ||
        die "the new CRL does not verify against $CA_CRT: $(cat "$TMP/err")"
    chmod 644 "$CRL_DIR/crl.pem.new"
    mv -f "$CRL_DIR/crl.pem.new" "$CRL_FILE"
    local count next
    count=$(grep -c '^R' "$CRL_DIR/index.txt" || true)
    next=$("$OPENSSL" crl -in "$CRL_FILE" -noout -nextupdate | cut -d= -f2)
    note "wrote $CRL_FILE ($count revoked; next update $next: run '$PROG --dir $DIR crl' before then)"
}

cmd_revoke() {
    [[ ${#ARGS[@]} -ge 1 ]] || die "'revoke' needs a NAME or a certificate file (e.g. '$PROG --dir $DIR revoke agent-07')"
    case $REASON in
        unspecified|keyCompromise|affiliationChanged|superseded|cessationOfOperation) ;;
        *) die "--reason must be unspecified, keyCompromise, affiliationChanged, superseded or cessationOfOperation" ;;
    esac
    require_ca
    crl_config
    tmpdir
    local target crt found sub serial
    for target in "${ARGS[@]}"; do
        if [[ -f $target ]]; then
            crt=$target
        else
            validate_id "$target" certificate
            found=()
            for sub in agents admins viewers; do [[ -f $DIR/$sub/$target.crt ]] && found+=("$DIR/$sub/$target.crt"); done
            [[ ${#found[@]} -gt 0 ]] || die "no certificate named '$target' in $DIR/agents, $DIR/admins or $DIR/viewers; pass the .crt file instead"
            [[ ${#found[@]} -eq 1 ]] || die "'$target' names several certificates (${found[*]}); pass the .crt file to revoke"
            crt=${found[0]}
        fi
        "$OPENSSL" verify -CAfile "$CA_CRT" "$crt" >/dev/null 2>&1 ||
            die "$crt was not issued by the CA in $DIR (openssl verify failed); nothing to revoke here"
        serial=$("$OPENSSL" x509 -noout -serial -in "$crt" | cut -d= -f2)
        if grep -qi "^R.*	$serial	" "$CRL_DIR/index.txt"; then
            note "$crt (serial $serial) is already revoked"
            continue
        fi
        "$OPENSSL" ca -batch -config "$CRL_DIR/ca.cnf" -revoke "$crt" -crl_reason "$REASON" >"$TMP/err" 2>&1 ||
            die "could not revoke $crt: $(cat "$TMP/err")"
        note "revoked $crt (serial $serial, reason $REASON)"
    done
    cmd_crl
}

case $CMD in
    ca) [[ ${#ARGS[@]} -eq 0 ]] || die "'ca' takes no arguments"; cmd_ca ;;
    coordinator) cmd_coordinator ;;
    agent) cmd_leaves agent agents ;;
    admin) cmd_leaves admin admins ;;
    viewer) cmd_leaves viewer viewers ;;
    revoke) cmd_revoke ;;
    crl) [[ ${#ARGS[@]} -eq 0 ]] || die "'crl' takes no arguments"; cmd_crl ;;
    dev) cmd_dev ;;
    help) usage ;;
    *) die "unknown command '$CMD' (expected ca, coordinator, agent, admin, viewer, revoke, crl or dev; see --help)" ;;
esac
