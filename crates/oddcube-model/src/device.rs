//! Choosing the compute device by name, in builds with and without CUDA.

use candle_core::Device;

use crate::error::{ModelError, Result};

/// A compute device as named on the command line: `cpu`, `cuda` (GPU 0) or `cuda:N`. Parsing
/// checks the name only; [`DeviceSpec::open`] opens the device (and fails without CUDA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The CPU (oddcube's fused kernels).
    Cpu,
    /// CUDA GPU number N.
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = ModelError;

    /// `wgpu` and anything else are errors saying why.
    fn from_str(name: &str) -> Result<Self> {
        match name {
            "cpu" => Ok(DeviceSpec::Cpu),
            "wgpu" | "vulkan" | "metal" => Err(ModelError::Device(format!(
                "candle has no {name} backend; use --device cpu or --device cuda"
            ))),
            _ => match name.strip_prefix("cuda") {
                Some("") => Ok(DeviceSpec::Cuda(0)),
                Some(rest) => match rest.strip_prefix(':') {
                    Some(n) => n.parse::<usize>().map(DeviceSpec::Cuda).map_err(|_| {
                        ModelError::Device(format!("bad GPU number in {name:?} (expected cuda:N)"))
                    }),
                    None => Err(ModelError::Device(format!("unknown device {name:?}"))),
                },
                None => Err(ModelError::Device(format!(
                    "unknown device {name:?} (cpu or cuda)"
                ))),
            },
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Opens the device.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(ordinal) => cuda_device(ordinal),
        }
    }
}

/// The device for `name` (see [`DeviceSpec`]): parsed, then opened.
pub fn select_device(name: &str) -> Result<Device> {
    name.parse::<DeviceSpec>()?.open()
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

    #[test]
    fn names_round_trip_through_display() {
        for (name, spec) in [
            ("cpu", DeviceSpec::Cpu),
            ("cuda", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
        ] {
            let parsed: DeviceSpec = name.parse().unwrap();
            assert_eq!(parsed, spec);
            assert_eq!(parsed.to_string().parse::<DeviceSpec>().unwrap(), spec);
        }
        assert!("cudax".parse::<DeviceSpec>().is_err());
    }
}
