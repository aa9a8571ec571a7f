#!/usr/bin/env bash
# A PostgreSQL server on loopback for notebook 02's team-server run (Debian/Ubuntu, as root
# or with sudo).
#
#   .ci/postgres.sh start ENV_FILE   install (if needed) and start PostgreSQL, (re)create the
#                                    course's role and database with a new generated password,
#                                    and write `export COURSE_TEST_POSTGRES_URI=...` to ENV_FILE
#                                    (mode 600). Then: `source ENV_FILE`.
#   .ci/postgres.sh stop             stop the cluster again.
#
# The password goes only into ENV_FILE and, over psql's standard input, into PostgreSQL: it
# is never printed, never on a command line (where `ps` shows it), never in CI's log.
set -euo pipefail

ROLE=mlflow_course
DATABASE=mlflow_course
PORT=5432

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
cluster() { pg_lsclusters --no-header | awk 'NR == 1 { print $1, $2 }'; }

install() {
  if ! command -v pg_lsclusters >/dev/null || [ -z "$(cluster)" ]; then
    echo "installing PostgreSQL from the distribution's packages..."
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
  fi
}

start() {
  local env_file=${1:?usage: $0 start ENV_FILE}
  install
  read -r version name <<<"$(cluster)"
  as_root pg_ctlcluster "$version" "$name" start >/dev/null 2>&1 || true  # fine if it runs
  for _ in $(seq 30); do as_postgres pg_isready -q -p "$PORT" && break; sleep 1; done
  as_postgres pg_isready -q -p "$PORT" || { echo "error: PostgreSQL $version/$name did not start" >&2; exit 1; }

  # 48 hex digits: nothing to escape in SQL, in a URI or in the shell.
  local password
  password=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')

  # Role and database are created once and reused; the password changes on every start.
  as_postgres psql -p "$PORT" -q -v ON_ERROR_STOP=1 -d postgres >/dev/null <<SQL
SELECT 'CREATE ROLE $ROLE LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE')\gexec
ALTER ROLE $ROLE WITH LOGIN PASSWORD '$password';
SELECT 'CREATE DATABASE $DATABASE OWNER $ROLE' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DATABASE')\gexec
SQL

  mkdir -p "$(dirname "$env_file")"
  (umask 077 && printf 'export COURSE_TEST_POSTGRES_URI=postgresql://%s:%s@127.0.0.1:%s/%s\n' \
    "$ROLE" "$password" "$PORT" "$DATABASE" >"$env_file")
  echo "PostgreSQL $version/$name runs on 127.0.0.1:$PORT; role and database $DATABASE are ready."
  echo "wrote COURSE_TEST_POSTGRES_URI (with its password) to $env_file; run: source $env_file"
}

stop() {
  command -v pg_lsclusters >/dev/null || return 0
  read -r version name <<<"$(cluster)"
  [ -n "${version:-}" ] && as_root pg_ctlcluster "$version" "$name" stop >/dev/null 2>&1 || true
  echo "PostgreSQL stopped"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop ;;
  *) echo "usage: $0 start ENV_FILE | stop" >&2; exit 2 ;;
esac
