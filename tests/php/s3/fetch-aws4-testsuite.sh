#!/usr/bin/env bash
# Prints the directory holding AWS's Signature Version 4 test suite, taken from
# botocore's source distribution (the suite is not ours to copy into the repo).
# Downloaded once into tests/php/.cache/ (git-ignored); later runs reuse it.
#
#   tests/php/s3/fetch-aws4-testsuite.sh   -> .../tests/php/.cache/botocore-<v>/auth
#
# The directory has aws4_testsuite/ and botocore's test_sigv4.py (whose skip
# list our test mirrors). POSTBAG_PYTHON picks the interpreter whose pip is used.
set -euo pipefail

version=1.44.5
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
python="${POSTBAG_PYTHON:-$root/.venv/bin/python}"
cache="$(cd "$here/.." && pwd)/.cache"
target="$cache/botocore-$version/auth"

if [ ! -f "$target/test_sigv4.py" ]; then
    mkdir -p "$cache"
    work="$(mktemp -d "$cache/fetch.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    "$python" -m pip download --quiet --disable-pip-version-check \
        --no-binary :all: --no-deps "botocore==$version" -d "$work" >&2
    tar -xzf "$work/botocore-$version.tar.gz" -C "$work" "botocore-$version/tests/unit/auth"
    mkdir -p "$(dirname "$target")"
    # A rename, so a run that is interrupted never leaves half a suite behind.
    rm -rf "$target"
    mv "$work/botocore-$version/tests/unit/auth" "$target"
fi
echo "$target"
