#!/usr/bin/env bash
# Builds `oddcube` with candle's CUDA backend on a machine without a CUDA toolkit, from PyPI's
# NVIDIA wheels only:
#
#   examples/gpu/build-cuda.sh [COMPUTE_CAP]      # e.g. 90 for H100/H200, 80 for A100
#
# - nvcc, NVVM and the CUDA headers come from the CUDA 13.2 compiler wheels. They must share one
#   version: a newer NVVM emits PTX the older ptxas rejects ("Unsupported .version").
# - candle links cudart, cuBLAS(Lt), cuRAND, NVRTC and the driver (libcuda) dynamically. The
#   wheels ship only versioned libraries, so unversioned links go into a private directory.
# - Without a GPU driver on the build machine, a link-time stub of libcuda (what the CUDA
#   toolkit's stubs/libcuda.so is) stands in; the binary then needs the real driver at run time.
#
# Run the result with the wheels' libraries on the loader path (the script prints the line).
set -euo pipefail
cd "$(dirname "$0")/../.."

cap="${1:-${CUDA_COMPUTE_CAP:-}}"
python="${PYTHON:-python3}"
version=13.2.86
"$python" -m pip install -q "nvidia-cuda-nvcc==$version" "nvidia-nvvm==$version" \
    "nvidia-cuda-crt==$version" "nvidia-cuda-runtime==$version" nvidia-cublas "nvidia-curand<11"
cu="$("$python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
[ -x "$cu/bin/nvcc" ] || { echo "no nvcc under $cu/bin" >&2; exit 1; }

libs="${ODDCUBE_CUDA_LIBS:-$PWD/target/cuda-libs}"
mkdir -p "$libs"
# Set before the first build so the stub pass below does not rebuild everything.
export RUSTFLAGS="${RUSTFLAGS:-} -L $libs"
for lib in cudart nvrtc cublas cublasLt curand; do
    real="$(ls "$cu/lib/lib$lib.so."* 2>/dev/null | grep -v builtins | head -n 1)"
    [ -n "$real" ] || { echo "lib$lib.so.* not found in $cu/lib" >&2; exit 1; }
    ln -sf "$real" "$libs/lib$lib.so"
done

if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1'; then
    if [ -z "$cap" ]; then
        echo "no GPU driver here: pass the target's compute capability (e.g. 90)" >&2
        exit 2
    fi
    # Every driver entry point the CUDA crates reference, as a function that returns an error.
    echo "no libcuda.so.1 on this machine: linking against a driver stub"
    target="${CARGO_TARGET_DIR:-target}"
    # Compiles everything; only the final link fails, for want of libcuda.
    CUDA_COMPUTE_CAP="$cap" PATH="$cu/bin:$PATH" CUDA_HOME="$cu" CUDA_PATH="$cu" CUDA_ROOT="$cu" \
        cargo build --release --features cuda -p oddcube 2>/dev/null || true
    nm -u "$target"/release/deps/libcudarc-*.rlib 2>/dev/null | awk '{print $NF}' \
        | grep -E '^cu[A-Z]' | sort -u \
        | awk '{printf "int %s(void) { return 999; }\n", $1}' > "$libs/cuda-stub.c"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$libs/libcuda.so" "$libs/cuda-stub.c"
fi

export PATH="$cu/bin:$PATH" CUDA_HOME="$cu" CUDA_PATH="$cu" CUDA_ROOT="$cu"
[ -n "$cap" ] && export CUDA_COMPUTE_CAP="$cap"
cargo build --release --features cuda -p oddcube
echo "built; run with: LD_LIBRARY_PATH=$cu/lib:\$LD_LIBRARY_PATH ${CARGO_TARGET_DIR:-target}/release/oddcube bench --preset paper --device cuda"
