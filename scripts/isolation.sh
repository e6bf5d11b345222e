#!/usr/bin/env bash
# Run the pg_isolation_regress specs in tests/isolation against a scratch cluster
# (/tmp/data_sync_isolation, port 5495): scripts/regress.sh in its isolation mode.
#   scripts/isolation.sh                   every spec in tests/isolation/isolation_schedule
#   scripts/isolation.sh phone_vs_insert   only the named spec(s)
# Specs are tests/isolation/specs/NAME.spec, expected output tests/isolation/expected/NAME.out.
# Needs the extension installed first (`make isolation` does `cargo pgrx install`).
exec env DATA_SYNC_SUITE=isolation "$(dirname "${BASH_SOURCE[0]}")/regress.sh" "$@"
