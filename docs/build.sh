#!/usr/bin/env bash
# Build the documentation site into site/: the example gallery's pictures in docs/gallery/ (kept from
# tests/test_examples.py, else made here by running each script in smoke mode), then
# `mkdocs build --strict` (any warning fails).
# Needs the docs extra: pip install ".[docs]"
set -euo pipefail
cd "$(dirname "$0")/.."
export SKBNN_EXAMPLE_SMOKE=1 SKBNN_EXAMPLE_OUTPUT=docs/gallery MPLBACKEND=agg
# Material for MkDocs prints an end-of-life notice on every build; it is not a build warning.
export NO_MKDOCS_2_WARNING=1
# One BLAS thread per script: the scikit-learn baselines are small and CI has two cores.
export OMP_NUM_THREADS=1
mkdir -p docs/gallery
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for script in examples/plot_*.py; do
    picture=docs/gallery/$(basename "$script" .py | sed 's/^plot_//').png
    # tests/test_examples.py leaves its pictures here; SKBNN_DOCS_RERUN=1 makes them anew.
    if [ -f "$picture" ] && [ -z "${SKBNN_DOCS_RERUN:-}" ]; then
        echo "docs/build.sh: $script (picture from the test run)"
        continue
    fi
    start=$SECONDS
    if ! python "$script" > "$log" 2>&1; then
        cat "$log"
        echo "docs/build.sh: $script failed" >&2
        exit 1
    fi
    echo "docs/build.sh: $script ($((SECONDS - start)) s)"
done
mkdocs build --strict --quiet
echo "docs/build.sh: site/ built"
