#!/usr/bin/env bash
# Build the documentation site into site/: run the example gallery in smoke mode (its pictures go
# to docs/gallery/, which the pages show), then `mkdocs build --strict` (any warning fails).
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
