//! Choosing the compute device by name, in builds with and without CUDA.

use candle_core::Device;

use crate::error::{ModelError, Result};

/// The device for `name`: `cpu`, `cuda` (GPU 0; needs a build with the `cuda` feature and a
/// GPU) or `cuda:N`. `wgpu` and anything else are errors saying why.
pub fn select_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "wgpu" | "vulkan" | "metal" => Err(ModelError::Device(format!(
            "candle has no {name} backend; use --device cpu or --device cuda"
        ))),
        _ => match name.strip_prefix("cuda") {
            Some(rest) => {
                let ordinal = match rest.strip_prefix(':') {
                    Some(n) => n.parse::<usize>().map_err(|_| {
                        ModelError::Device(format!("bad GPU number in {name:?} (expected cuda:N)"))
                    })?,
                    None if rest.is_empty() => 0,
                    None => return Err(ModelError::Device(format!("unknown device {name:?}"))),
                };
                cuda_device(ordinal)
            }
            None => Err(ModelError::Device(format!(
                "unknown device {name:?} (cpu or cuda)"
            ))),
        },
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal)
        .map_err(|e| ModelError::Device(format!("cannot open CUDA device {ordinal}: {e}")))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_ordinal: usize) -> Result<Device> {
    Err(ModelError::Device(
        "this oddcube was built without CUDA; rebuild with `cargo build --release --features cuda`"
            .into(),
    ))
}

/// Spin iterations candle's CPU worker pool waits before parking, unless the user sets
/// `CANDLE_BARRIER_POOL_SPIN_LIMIT`. candle's default (25 000) keeps its workers spinning
/// after every element-wise op, which on a small machine steals the cores the fused kernels'
/// rayon threads need (measured: ~9 % of a training step on 2 cores).
const CANDLE_SPIN_LIMIT: &str = "100";

/// Makes candle's CPU worker pool park soon after each op instead of spinning. Call it first
/// thing in `main`: it sets an environment variable, which is only sound while the process
/// has a single thread.
pub fn limit_candle_spinning() {
    const VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(VAR).is_none() {
        // SAFETY: called at the start of `main`, before any other thread exists, so nothing
        // can read the environment concurrently.
        unsafe { std::env::set_var(VAR, CANDLE_SPIN_LIMIT) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_devices_or_clear_errors() {
        assert!(select_device("cpu").unwrap().is_cpu());
        let wgpu = select_device("wgpu").unwrap_err().to_string();
        assert!(wgpu.contains("no wgpu backend"), "{wgpu}");
        assert!(select_device("tpu").is_err());
        assert!(select_device("cuda:x").is_err());
        #[cfg(not(feature = "cuda"))]
        assert!(
            select_device("cuda")
                .unwrap_err()
                .to_string()
                .contains("without CUDA")
        );
    }
}
