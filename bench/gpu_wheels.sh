#!/usr/bin/env bash
# Prepare the wheel folder `make gpu-check` installs on an offline CUDA box that already has torch,
# transformers, accelerate and peft (and the usual scientific stack) but not trl, datasets,
# math-verify or deepspeed. Run it on a machine that reaches PyPI; see bench/gpu_check.md.
#
#   bash bench/gpu_wheels.sh [DIR] [PYTHON_VERSION]     # defaults: .gpu-wheels, 3.12 (the box's Python)
#   WITH_PYARROW=1 bash bench/gpu_wheels.sh             # also pyarrow (+~45 MB), if the box's is < 24
#
# The versions are the ones the CPU test-suite runs (pyproject.toml pins trl, math-verify and
# deepspeed; the rest are what they resolved to). The folder stays well under 64 MiB with the
# repository, so it can travel with it.
set -euo pipefail

dir=${1:-.gpu-wheels}
pyver=${2:-3.12}
py=${PYTHON:-python3}
mkdir -p "$dir"

# Wheels for the box (CPython $pyver, x86-64 Linux): binary ones must match its Python.
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
wheels=(
    trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19           # TRL and its datasets
    math-verify==0.9.0 latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2   # the grader
    hjson==3.1.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5   # deepspeed's
)
if [[ "${WITH_PYARROW:-0}" == 1 ]]; then
    wheels+=(pyarrow==26.0.1)
fi
"$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version "$pyver" \
    --implementation cp "${platforms[@]}" -d "$dir" "${wheels[@]}"

# DeepSpeed is published as a source archive only: build its pure-Python wheel here, without its
# CUDA ops (DS_BUILD_OPS=0; it JIT-compiles what it needs on the box). The build imports torch.
if ! ls "$dir"/deepspeed-0.19.8-*.whl >/dev/null 2>&1; then
    DS_BUILD_OPS=0 "$py" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation \
        -w "$dir" deepspeed==0.19.8
fi

ls -1 "$dir"
du -sh "$dir"
