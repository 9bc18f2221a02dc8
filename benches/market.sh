#!/usr/bin/env bash
# The marketplace under load, on loopback, in one run:
#  1. search throughput and latency percentiles at 10k entries (wrk);
#  2. a 2 GiB image: upload and download through kiln against nginx serving
#     (and accepting a WebDAV PUT of) the same file, and against sha256sum of it.
# Prints Markdown for docs/benchmarks.md.
#
#   benches/market.sh [ENTRIES] [IMAGE_GIB]     (defaults: 10000, 2)
#   KILN_BENCH_PROFILE=dev benches/market.sh    (the dev profile: dependencies at
#                                                opt-level 2, kiln's crates at 1)
set -euo pipefail
cd "$(dirname "$0")/.."
entries=${1:-10000}
gib=${2:-2}
profile=${KILN_BENCH_PROFILE:-release}
target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --profile "$profile" --quiet --bin kiln
kiln=$target/$([ "$profile" = dev ] && echo debug || echo "$profile")/kiln
work=$(mktemp -d /var/tmp/kiln-market-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

seconds() { /usr/bin/time -f %e "$@" 2>&1 >/dev/null | tail -1; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- the server, embedded default (SQLite + blob directory) ---
token=$("$kiln" user add bench --role developer --data "$work/data")
"$kiln" serve --data "$work/data" --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.log" &
pids+=($!)
for _ in $(seq 1 100); do grep -q serving "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^kiln: serving on //p' "$work/serve.out")

# --- 10k entries (registered with external locations: metadata only) ---
python3 - "$url" "$token" "$entries" <<'PY'
import http.client, json, sys, urllib.parse
url, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
u = urllib.parse.urlparse(url)
c = http.client.HTTPConnection(u.hostname, u.port)
oses = ["debian", "ubuntu", "alma", "rocky", "alpine", "fedora", "opensuse", "freebsd"]
for i in range(n):
    os_ = oses[i % len(oses)]
    body = json.dumps({
        "title": f"{os_} cloud image build {i}",
        "description": f"A {os_} image for the benchmark, number {i}, with cloud-init and a small root disk.",
        "os": os_, "os_version": str(10 + i % 5), "arch": "x86_64" if i % 3 else "aarch64",
        "series": f"{os_}-{i % 50}", "tags": ["cloud", f"t{i % 20}"],
        "bytes": 1024, "checksums": {"sha256": "%064x" % i},
        "external_url": f"http://127.0.0.1:9/{i}.qcow2",
    })
    c.request("POST", "/api/v1/entries", body, {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 201, r.status
PY

echo "## Marketplace (benches/market.sh, $(date -u +%Y-%m-%d), $(nproc) cores, $profile profile, load average $(cut -d' ' -f1 /proc/loadavg) at start)"
echo
echo "### Search at $entries entries (wrk -t2 -c32 -d15s --timeout 10s, loopback, SQLite, anonymous)"
echo
echo "| query | requests/s | p50 | p90 | p99 |"
echo "|---|---|---|---|---|"
for q in "limit=20" "q=alpine&limit=20" "os=debian&arch=x86_64&tag=cloud&limit=20" "latest=true&os=ubuntu&limit=20" "status=all&sort=title&offset=5000&limit=50"; do
  out=$(wrk -t2 -c32 -d15s --timeout 10s --latency "$url/api/v1/entries?$q")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  pct() { awk -v p="$1" '$1 == p {print $2}' <<<"$out"; }
  errors=$(grep -E "Non-2xx|Socket errors" <<<"$out" || true)
  [ -z "$errors" ] || { echo "wrk reported errors for $q: $errors" >&2; exit 1; }
  echo "| \`$q\` | $rps | $(pct 50%) | $(pct 90%) | $(pct 99%) |"
done

# --- a ${gib} GiB image ---
img=$work/image.raw
head -c "${gib}G" /dev/urandom >"$img"
sync
nginx_port=$(port)
mkdir -p "$work/nginx/www" "$work/nginx/logs"
cp "$img" "$work/nginx/www/image.raw"
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  client_max_body_size 0;
  client_body_temp_path $work/nginx/tmp;
  proxy_temp_path $work/nginx/tmp; fastcgi_temp_path $work/nginx/tmp; uwsgi_temp_path $work/nginx/tmp; scgi_temp_path $work/nginx/tmp;
  server {
    listen 127.0.0.1:$nginx_port;
    root $work/nginx/www;
    location /upload/ { dav_methods PUT; create_full_put_path on; }
  }
}
CONF
mkdir -p "$work/nginx/tmp"
# nginx's workers drop root: let them read the image and write uploads.
chmod 755 "$work" && chmod -R a+rwX "$work/nginx"
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -g 'daemon off;' &
pids+=($!)
sleep 1

t_sha=$(seconds sha256sum "$img")
t_nginx_down=$(seconds curl -sf -o /dev/null "http://127.0.0.1:$nginx_port/image.raw")
t_nginx_up=$(seconds curl -sf -T "$img" "http://127.0.0.1:$nginx_port/upload/image.raw")
id=$(curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"title":"bench upload"}' "$url/api/v1/entries" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
t_kiln_put=$(seconds curl -sf -T "$img" -H "Authorization: Bearer $token" "$url/api/v1/entries/$id/file")
export XDG_STATE_HOME=$work/state
t_kiln_push=$(seconds "$kiln" push "$img" --title "bench push" --server "$url" --token "$token" --json)
t_kiln_down=$(seconds curl -sf -o /dev/null "$url/api/v1/entries/$id/file")
t_kiln_pull=$(seconds "$kiln" pull "$id" -o "$work/pulled.raw" --server "$url")
rm -f "$work/pulled.raw"

mib=$((gib * 1024))
rate() { python3 -c "print(f'{$mib / $1:.0f}' if $1 > 0 else 'inf')"; }
echo
echo "### A ${gib} GiB image (random data), loopback"
echo
echo "| operation | seconds | MiB/s |"
echo "|---|---|---|"
echo "| \`sha256sum\` of the file | $t_sha | $(rate "$t_sha") |"
echo "| nginx download (\`curl -o /dev/null\`) | $t_nginx_down | $(rate "$t_nginx_down") |"
echo "| nginx upload (WebDAV PUT, \`curl -T\`) | $t_nginx_up | $(rate "$t_nginx_up") |"
echo "| kiln upload, one request (\`curl -T\` to PUT /entries/{id}/file: spool + sha256 + sha512 + inspect + commit) | $t_kiln_put | $(rate "$t_kiln_put") |"
echo "| \`kiln push\` (hash locally, 64 MiB resumable chunks, server joins + hashes + inspects) | $t_kiln_push | $(rate "$t_kiln_push") |"
echo "| kiln download (\`curl -o /dev/null\`) | $t_kiln_down | $(rate "$t_kiln_down") |"
echo "| \`kiln pull\` (download + sha256 + sha512 verify + fsync + rename) | $t_kiln_pull | $(rate "$t_kiln_pull") |"
