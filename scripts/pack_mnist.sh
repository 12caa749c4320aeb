#!/usr/bin/env bash
# Pack MNIST's four raw files for scripts/gpu_check.py: build/gpu/mnist.tar.gz (about 11 MB), from GRLIB_DATA or
# ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${GRLIB_DATA:-../shared/data}"
mkdir -p build/gpu
tar -czf build/gpu/mnist.tar.gz -C "$root" MNIST/raw
ls -lh build/gpu/mnist.tar.gz
